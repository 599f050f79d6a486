# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The target's store of warm memory pages in a pre-copy session (issue 11).

Warm rounds send each process's pages while it runs, keyed by (namespace
pid, vaddr); the final round's page images refer to them (protocol.P_WARM)
instead of carrying them again. Layout, in the session's ``warm`` root (a
directory of the target's dump tmpfs):

    mem-<ns pid>.pages   4 KiB slots, appended in arrival order (mode 0600)

and, in the receiving process's memory only, per pid a dict vaddr -> slot. A
page sent again in a later round overwrites its slot. The store lives as long
as the receiving process: ``discard`` (called when the session ends, well or
not) unlinks the files. Memory is secret, so the root must be a memory file
system (tmpfs/ramfs): it is refused otherwise (``on_disk_ok`` exists for the
unit tests only).

Shipped to the target with the receiver: standard library and protocol only.
"""
from __future__ import annotations

import os

from ansible_collections.edgemig.migration.plugins.module_utils.wire.protocol import PAGE, ProtocolError

MEMORY_FS = ("tmpfs", "ramfs")
MAX_PIDS = 65536
MAX_PAGES = 64 << 20  # 256 GiB of pages: the index stays a bounded dict


def fs_type(fd: int) -> str | None:
    """File system type of the mount ``fd`` is on (fdinfo's mnt_id -> mountinfo), None if unknown."""
    mnt_id = None
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("mnt_id:"):
                    mnt_id = line.split()[1]
        if mnt_id is None:
            return None
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                pre, _sep, post = line.partition(" - ")
                if pre.split(" ", 1)[0] == mnt_id and post:
                    return post.split()[0]
    except OSError:
        return None
    return None


class WarmStore:
    """Pages by (namespace pid, vaddr), in files under a directory fd we do not own."""

    def __init__(self, root_fd: int, on_disk_ok: bool = False):
        kind = fs_type(root_fd)
        if kind not in MEMORY_FS and not on_disk_ok:
            raise ProtocolError(f"the warm root is on {kind or 'an unknown file system'}, not tmpfs: "
                                "process memory is never written to persistent disk")
        self._dir = os.dup(root_fd)
        self._fds: dict[int, int] = {}
        self._index: dict[int, dict[int, int]] = {}
        self.pages = 0

    def _fd(self, pid: int) -> int:
        fd = self._fds.get(pid)
        if fd is None:
            if len(self._fds) >= MAX_PIDS:
                raise ProtocolError(f"warm store: more than {MAX_PIDS} processes")
            name = f"mem-{pid}.pages"
            try:
                os.unlink(name, dir_fd=self._dir)  # a leftover of an earlier session
            except FileNotFoundError:
                pass
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=self._dir)
            self._fds[pid] = fd
            self._index[pid] = {}
        return fd

    def put(self, pid: int, vaddr: int, page: bytes) -> None:
        if len(page) != PAGE:
            raise ProtocolError("warm store: a page is 4096 bytes")
        fd = self._fd(pid)
        index = self._index[pid]
        slot = index.get(vaddr)
        if slot is None:
            if self.pages >= MAX_PAGES:
                raise ProtocolError(f"warm store: more than {MAX_PAGES} pages")
            slot = len(index)
            index[vaddr] = slot
            self.pages += 1
        os.pwrite(fd, page, slot * PAGE)

    def get(self, pid: int, vaddr: int) -> bytes | None:
        slot = self._index.get(pid, {}).get(vaddr)
        if slot is None:
            return None
        data = os.pread(self._fds[pid], PAGE, slot * PAGE)
        return data if len(data) == PAGE else None

    def holds(self, pid: int, vaddr: int) -> bool:
        return vaddr in self._index.get(pid, {})

    def discard(self) -> None:
        """Close and unlink every pages file (the session is over, whatever its outcome)."""
        for pid, fd in self._fds.items():
            try:
                os.close(fd)
            finally:
                try:
                    os.unlink(f"mem-{pid}.pages", dir_fd=self._dir)
                except OSError:
                    pass
        self._fds, self._index, self.pages = {}, {}, 0
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None
