# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The receiver's last step: apply ENTRY items and decoded chunks to the destination roots.

stream_receiver.receive_stream hands every item here in stream order, from
its single writer thread: ``TreeWriter.entry`` creates the object,
``TreeWriter.chunk`` accepts a file's chunks only in order (each at the
offset where the previous one ended), rebuilds it from its page map
(``expand_pagemap``), checks its CRC32 and writes it with ``pwrite``; ``TreeWriter.finish`` checks
the END totals and sets directory times last.

Nothing is written outside the roots: every path passes
protocol.check_relpath, and ``open_parent`` walks to it without following
symlinks. Shipped to the target with the receiver (standard library only).

A pre-copy session (``precopy=True``, HELLO version 2) has rounds:
``end_round`` checks a warm round's totals and starts the next one (ids and
paths may be used again; the roots are *not* cleared again). In such a session
an ENTRY may also be a ``delete`` (recursive, never through a symlink), a
``mem`` batch of warm pages for the warm store (warm_store.WarmStore), or a
file with ``"patch": true``: the existing file is kept, truncated or extended
to ``size``, and only ``patch_bytes`` bytes follow, in chunks at strictly
increasing offsets (gaps are the unchanged blocks). Directories whose entry
is not re-sent in a round get their times back after a child changed.
"""
from __future__ import annotations

import base64
import os
import shutil
import stat
import zlib
from collections.abc import Callable
from typing import NamedTuple

from ansible_collections.edgemig.migration.plugins.module_utils.receiver.warm_store import WarmStore
from ansible_collections.edgemig.migration.plugins.module_utils.wire.protocol import (
    KINDS,
    MAX_ENTRIES,
    MAX_MEM_ENTRY_PAGES,
    P_LITERAL,
    P_REF,
    P_WARM,
    P_ZERO,
    PAGE,
    PRECOPY_KINDS,
    REF,
    WARM_ROOT,
    ProtocolError,
    check_relpath,
)


class _Entry(NamedTuple):
    """One checked ENTRY: where it goes, what it is, and the metadata to give it."""

    root: str
    path: str
    parts: list[str]
    kind: str
    meta: dict
    mode: int
    uid: int
    gid: int
    mtime_ns: int

    @property
    def where(self) -> str:
        return f"{self.root}:{self.path}"


class TreeWriter:
    """Applies ENTRY and decoded CHUNK items to the destination roots, in order.

    ``roots`` maps a root name to a directory that must exist. Nothing is
    written outside those directories.
    """

    def __init__(self, roots: dict[str, str], precopy: bool = False, warm_on_disk: bool = False):
        self.roots = {}
        for name, path in roots.items():
            self.roots[name] = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        self.files: dict[int, dict] = {}
        self.seen: set[tuple[str, str]] = set()
        self.dir_times: list[tuple[str, list[str], int]] = []
        self.entries = 0
        self.bytes_written = 0
        self.precopy = precopy
        self.warm_on_disk = warm_on_disk
        self.warm: WarmStore | None = None
        self.round = 1
        self.round_base = 0  # bytes_written when this round began (acks stay cumulative)
        self.deleted: set[tuple[str, str]] = set()
        self.deletes = 0
        self._dir_keys: set[tuple[str, tuple[str, ...]]] = set()

    def _close_files(self) -> None:
        for f in self.files.values():
            if f.get("fd") is not None:
                os.close(f["fd"])
                f["fd"] = None

    def close(self) -> None:
        self._close_files()
        for fd in self.roots.values():
            os.close(fd)
        self.roots = {}
        if self.warm is not None:
            # The session is over (verified or failed): warm memory goes now.
            self.warm.discard()
            self.warm = None

    # -- entries
    def entry(self, meta: dict) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise ProtocolError("too many entries")
        if self._precopy_entry(meta):
            return
        e = self._checked_entry(meta)
        if not e.parts:
            self._root_entry(e)
            return
        pfd = open_parent(self.roots[e.root], e.parts)
        try:
            if self.precopy and e.kind != "dir":
                self._keep_parent_time(e.root, e.parts, pfd)
            self._make(e, pfd, e.parts[-1])
        except OSError as exc:
            raise ProtocolError(f"{e.where}: {exc.strerror or exc}") from None
        finally:
            os.close(pfd)

    def _precopy_entry(self, meta: dict) -> bool:
        """Apply a pre-copy session's mem or delete entry (True); refuse pre-copy entries outside one."""
        kind = meta.get("kind")
        if kind not in PRECOPY_KINDS and not meta.get("patch"):
            return False
        if not self.precopy:
            raise ProtocolError(f"entry kind {kind!r} (patch: {bool(meta.get('patch'))}) "
                                "needs a pre-copy session (HELLO version 2)")
        if kind == "mem":
            self._mem_entry(meta)
            return True
        if kind == "delete":
            self._delete_entry(meta)
            return True
        return False  # a patch: a file entry like the others

    def _checked_entry(self, meta: dict) -> _Entry:
        """An entry's root, path, kind and metadata, checked, with its root's rules applied."""
        root = meta.get("root")
        if root not in self.roots:
            raise ProtocolError(f"entry for unknown root {root!r}")
        path = meta.get("path")
        parts = check_relpath(path)
        key = (root, path)
        if key in self.seen:
            raise ProtocolError(f"duplicate entry {root}:{path}")
        self.seen.add(key)
        kind = meta.get("kind")
        if kind not in KINDS:
            raise ProtocolError(f"{root}:{path}: unknown entry kind {kind!r}")
        try:
            mode = int(meta.get("mode", 0o644)) & 0o7777
            uid, gid = int(meta.get("uid", 0)), int(meta.get("gid", 0))
            mtime_ns = int(meta.get("mtime_ns", 0))
        except (TypeError, ValueError):
            raise ProtocolError(f"{root}:{path}: bad mode/uid/gid/mtime") from None
        mode, meta = root_rules(root, path, parts, kind, mode, meta)
        return _Entry(root, path, parts, kind, meta, mode, uid, gid, mtime_ns)

    def _root_entry(self, e: _Entry) -> None:
        """The entry of a root directory itself: its metadata, and its time set at the end."""
        if e.kind != "dir":
            raise ProtocolError(f"{e.root}: the root itself can only be a directory")
        if e.root != "checkpoint":  # Docker's own checkpoint dir keeps its owner and mode
            dfd = os.dup(self.roots[e.root])
            try:
                self._apply_meta(dfd, e.meta, e.mode, e.uid, e.gid)
            finally:
                os.close(dfd)
        self._dir_time(e.root, [], e.mtime_ns)

    def _make(self, e: _Entry, pfd: int, name: str) -> None:
        """Create (or, for a patch, open) the object ``name`` in the directory ``pfd``."""
        if e.kind == "file" and e.meta.get("patch"):
            self._patch_entry(e, pfd, name)
        elif e.kind == "dir":
            self._make_dir(e, pfd, name)
        elif e.kind == "file":
            self._make_file(e, pfd, name)
        elif e.kind == "symlink":
            self._make_symlink(e, pfd, name)
        elif e.kind == "hardlink":
            self._make_hardlink(e, pfd, name)
        else:  # whiteout, fifo, chr, blk
            self._make_node(e, pfd, name)

    def _make_dir(self, e: _Entry, pfd: int, name: str) -> None:
        _remove_existing(pfd, name, keep_dir=True)
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            pass
        dfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
        try:
            self._apply_meta(dfd, e.meta, e.mode, e.uid, e.gid)
        finally:
            os.close(dfd)
        self._dir_time(e.root, e.parts, e.mtime_ns)

    def _make_file(self, e: _Entry, pfd: int, name: str) -> None:
        fid, size = e.meta.get("id"), e.meta.get("size")
        if not isinstance(fid, int) or not isinstance(size, int) or size < 0 or fid in self.files:
            raise ProtocolError(f"{e.where}: bad or duplicate file id/size")
        _remove_existing(pfd, name, keep_dir=False)
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=pfd)
        os.ftruncate(fd, size)  # holes read back as zeros: zero pages cost nothing
        self.files[fid] = {"fd": fd, "size": size, "left": size, "next": 0, "meta": e.meta, "mode": e.mode,
                           "uid": e.uid, "gid": e.gid, "mtime_ns": e.mtime_ns, "path": e.where}
        if size == 0:
            self._finish_file(fid)

    def _make_symlink(self, e: _Entry, pfd: int, name: str) -> None:
        target = e.meta.get("target")
        if not isinstance(target, str) or not target or "\0" in target:
            raise ProtocolError(f"{e.where}: bad symlink target")
        # The link itself is created, never followed: absolute targets are
        # normal inside a container file system.
        _remove_existing(pfd, name, keep_dir=False)
        os.symlink(target, name, dir_fd=pfd)
        os.chown(name, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
        self._set_xattrs(f"/proc/self/fd/{pfd}/{name}", e.meta, follow=False)
        os.utime(name, ns=(e.mtime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _make_hardlink(self, e: _Entry, pfd: int, name: str) -> None:
        tparts = check_relpath(e.meta.get("target"))
        if not tparts:
            raise ProtocolError(f"{e.where}: bad hard link target")
        tfd = open_parent(self.roots[e.root], tparts, create=False)
        try:
            _remove_existing(pfd, name, keep_dir=False)
            os.link(tparts[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _make_node(self, e: _Entry, pfd: int, name: str) -> None:
        """A whiteout, fifo or device node (root_rules let devices through only as whiteouts)."""
        _remove_existing(pfd, name, keep_dir=False)
        if e.kind == "fifo":
            os.mkfifo(name, e.mode, dir_fd=pfd)
        else:
            rdev = 0 if e.kind == "whiteout" else int(e.meta.get("rdev", 0))
            ftype = stat.S_IFBLK if e.kind == "blk" else stat.S_IFCHR
            os.mknod(name, ftype | e.mode, rdev, dir_fd=pfd)
        os.chown(name, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(name, e.mode, dir_fd=pfd)  # the source's mode, not ours less the umask
        os.utime(name, ns=(e.mtime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _dir_time(self, root: str, parts: list[str], mtime_ns: int) -> None:
        key = (root, tuple(parts))
        if key in self._dir_keys:
            # Kept from an earlier child of this round: the entry's time wins.
            self.dir_times = [d for d in self.dir_times if (d[0], tuple(d[1])) != key]
        self._dir_keys.add(key)
        self.dir_times.append((root, parts, mtime_ns))

    def _keep_parent_time(self, root: str, parts: list[str], pfd: int) -> None:
        """A later round changes a child of a directory whose entry it did not re-send
        (a file rewritten in place leaves the source directory's mtime alone, replacing it
        here does not): put the directory's time back at the end of the round."""
        key = (root, tuple(parts[:-1]))
        if key not in self._dir_keys:
            self._dir_keys.add(key)
            self.dir_times.append((root, parts[:-1], os.fstat(pfd).st_mtime_ns))

    def _apply_meta(self, fd: int, meta: dict, mode: int, uid: int, gid: int) -> None:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        self._set_xattrs(f"/proc/self/fd/{fd}", meta, follow=True, exact=self.precopy)

    @staticmethod
    def _set_xattrs(path: str, meta: dict, follow: bool, exact: bool = False) -> None:
        xattrs = meta.get("xattrs") or {}
        if not isinstance(xattrs, dict):
            raise ProtocolError("xattrs must be an object")
        if exact:
            # An object kept from an earlier round may carry xattrs the source
            # removed since (user.* and trusted.*: overlay's opaque marker).
            try:
                have = os.listxattr(path, follow_symlinks=follow)
            except OSError:
                have = []
            for key in have:
                if key not in xattrs and key.startswith(("user.", "trusted.")):
                    try:
                        os.removexattr(path, key, follow_symlinks=follow)
                    except OSError:
                        pass
        for key, value in xattrs.items():
            try:
                os.setxattr(path, key, base64.b64decode(value), follow_symlinks=follow)
            except (ValueError, TypeError):
                raise ProtocolError(f"bad xattr value for {key!r}") from None

    # -- pre-copy entries
    def _new_id(self, meta: dict, what: str) -> int:
        fid = meta.get("id")
        if not isinstance(fid, int) or isinstance(fid, bool) or fid < 0 or fid in self.files:
            raise ProtocolError(f"{what}: bad or duplicate file id")
        return fid

    def _patch_entry(self, e: _Entry, pfd: int, name: str) -> None:
        path = e.where
        fid = self._new_id(e.meta, path)
        size, patch_bytes = e.meta.get("size"), e.meta.get("patch_bytes")
        if (not isinstance(size, int) or not isinstance(patch_bytes, int) or size < 0
                or not 0 <= patch_bytes <= size):
            raise ProtocolError(f"{path}: bad size/patch_bytes of a patch entry")
        try:
            fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=pfd)
        except FileNotFoundError:
            raise ProtocolError(f"{path}: patch of a file the receiver does not hold") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ProtocolError(f"{path}: patch of something that is not a regular file")
        os.ftruncate(fd, size)
        self.files[fid] = {"fd": fd, "size": size, "left": patch_bytes, "next": 0, "meta": e.meta, "mode": e.mode,
                           "uid": e.uid, "gid": e.gid, "mtime_ns": e.mtime_ns, "path": path, "patch": True}
        if patch_bytes == 0:
            self._finish_file(fid)

    def _delete_entry(self, meta: dict) -> None:
        root, path = meta.get("root"), meta.get("path")
        if root not in self.roots:
            raise ProtocolError(f"delete in unknown root {root!r}")
        parts = check_relpath(path)
        if not parts:
            raise ProtocolError(f"{root}: the root itself can not be deleted")
        key = (root, path)
        if key in self.seen or key in self.deleted:
            raise ProtocolError(f"{root}:{path}: deleted after it was written or deleted in this round")
        self.deleted.add(key)
        self.deletes += 1
        try:
            pfd = open_parent(self.roots[root], parts, create=False)
        except FileNotFoundError:
            raise ProtocolError(f"{root}:{path}: delete of something the receiver does not hold") from None
        try:
            self._keep_parent_time(root, parts, pfd)
            try:
                st = os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                raise ProtocolError(f"{root}:{path}: delete of something the receiver does not hold") from None
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(parts[-1], dir_fd=pfd)  # fd-based: never follows a symlink
            else:
                os.unlink(parts[-1], dir_fd=pfd)
        except OSError as exc:
            raise ProtocolError(f"{root}:{path}: delete failed: {exc.strerror or exc}") from None
        finally:
            os.close(pfd)

    def _warm_store(self) -> WarmStore:
        if self.warm is None:
            if WARM_ROOT not in self.roots:
                raise ProtocolError(f"warm memory sent, but the receiver has no {WARM_ROOT!r} root")
            self.warm = WarmStore(self.roots[WARM_ROOT], on_disk_ok=self.warm_on_disk)
        return self.warm

    def _mem_entry(self, meta: dict) -> None:
        """Warm pages of one process: ``runs`` [[vaddr, npages], ...], then chunks of them in order."""
        fid = self._new_id(meta, "mem entry")
        pid, runs = meta.get("pid"), meta.get("runs")
        if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 1 << 32:
            raise ProtocolError(f"mem entry: bad pid {pid!r}")
        if not isinstance(runs, list) or not runs:
            raise ProtocolError("mem entry: runs must be a non-empty list")
        vaddrs: list[int] = []
        for run in runs:
            if (not isinstance(run, list) or len(run) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in run)):
                raise ProtocolError("mem entry: a run is [vaddr, npages]")
            start, n = run
            if start < 0 or start % PAGE or n < 1 or len(vaddrs) + n > MAX_MEM_ENTRY_PAGES \
                    or start + n * PAGE > 1 << 64:
                raise ProtocolError(f"mem entry: bad run {run!r}")
            vaddrs.extend(range(start, start + n * PAGE, PAGE))
        self._warm_store()
        size = len(vaddrs) * PAGE
        self.files[fid] = {"fd": None, "size": size, "left": size, "next": 0, "meta": meta,
                           "path": f"{WARM_ROOT}:pid {pid}", "mem": pid, "vaddrs": vaddrs}

    def _read_warm(self, pid: int, vaddr: int) -> bytes:
        data = self.warm.get(pid, vaddr) if self.warm is not None else None
        if data is None:
            raise ProtocolError(f"warm page reference to pid {pid} vaddr {vaddr:#x}, "
                                "which the receiver does not hold")
        return data

    # -- data
    def chunk(self, ch: dict, literal: bytes) -> None:
        f = self.files.get(ch["id"])
        if f is None or (f["fd"] is None and "mem" not in f) or f["left"] == 0:
            raise ProtocolError(f"chunk for unknown or finished file id {ch['id']}")
        raw_len, offset = ch["raw_len"], ch["offset"]
        if f.get("patch"):
            # A patch skips the unchanged blocks, but never goes back: a
            # duplicate or overlapping chunk is refused as in a whole file.
            if offset < f["next"] or raw_len == 0:
                raise ProtocolError(f"{f['path']} (file id {ch['id']}): patch chunk at offset {offset}, "
                                    f"expected offset >= {f['next']} (duplicate, overlapping or reordered)")
        elif offset != f["next"]:
            # In order only: a duplicate, a reordered or a skipped chunk would
            # otherwise still add up to the right byte count (a duplicate plus
            # a missing chunk left a hole of zeros that END did not catch).
            raise ProtocolError(f"{f['path']} (file id {ch['id']}): chunk at offset {offset}, expected "
                                f"offset {f['next']} (duplicate, reordered or missing chunk)")
        if offset + raw_len > f["size"] or raw_len > f["left"]:
            raise ProtocolError(f"{f['path']}: chunk at {offset}+{raw_len} beyond file size {f['size']} "
                                "or beyond what the entry announced")
        if "mem" in f and raw_len % PAGE:
            raise ProtocolError(f"{f['path']}: warm pages come in whole pages")
        if ch["pagemap"]:
            data = expand_pagemap(ch["pagemap"], literal, raw_len, self._read_ref,
                                  ch["id"], offset, self._read_warm if self.precopy else None)
        else:
            data = literal
        if len(data) != raw_len:
            raise ProtocolError(f"{f['path']}: chunk decoded to {len(data)} bytes, expected {raw_len}")
        if zlib.crc32(data) != ch["crc"]:
            raise ProtocolError(f"{f['path']}: checksum mismatch in chunk at offset {offset} "
                                "(corrupted on the wire)")
        if "mem" in f:
            store, pid, vaddrs = self.warm, f["mem"], f["vaddrs"]
            first = offset // PAGE
            for i in range(raw_len // PAGE):
                store.put(pid, vaddrs[first + i], data[i * PAGE:(i + 1) * PAGE])
        else:
            os.pwrite(f["fd"], data, offset)
        f["next"] = offset + raw_len
        f["left"] -= raw_len
        self.bytes_written += raw_len
        if f["left"] < 0:
            raise ProtocolError(f"{f['path']}: more data than its size")
        if f["left"] == 0:
            self._finish_file(ch["id"])

    def _read_ref(self, fid: int, offset: int, size: int) -> bytes:
        f = self.files.get(fid)
        if f is None:
            raise ProtocolError(f"page reference to unknown file id {fid}")
        if offset + size > f["size"]:
            raise ProtocolError(f"page reference beyond the end of {f['path']}")
        if "mem" in f:
            if offset % PAGE or size != PAGE or offset + size > f["next"]:
                raise ProtocolError(f"page reference into warm pages not written yet: {f['path']}")
            return self.warm.get(f["mem"], f["vaddrs"][offset // PAGE]) or b""
        if f["fd"] is None:
            raise ProtocolError(f"page reference to a file that is not a page image: {f['path']}")
        return os.pread(f["fd"], size, offset)

    def _finish_file(self, fid: int) -> None:
        f = self.files[fid]
        if "mem" in f:
            return
        fd = f["fd"]
        os.fchown(fd, f["uid"], f["gid"])
        os.fchmod(fd, f["mode"])  # after chown: chown clears setuid bits
        self._set_xattrs(f"/proc/self/fd/{fd}", f["meta"], follow=True, exact=bool(f.get("patch")))
        os.utime(fd, ns=(f["mtime_ns"], f["mtime_ns"]))
        # Page files stay open to the end: later chunks may reference their
        # pages. Others are closed now so a layer of many files needs few fds.
        if not f["meta"].get("pages"):
            os.close(fd)
            f["fd"] = None

    def _check_totals(self, end: dict, what: str) -> int:
        missing = [f["path"] for f in self.files.values() if f["left"] != 0]
        if missing:
            raise ProtocolError(f"{what} with incomplete files: {', '.join(missing[:5])}")
        want_files = end.get("files")
        if want_files is not None and want_files != len(self.files):
            raise ProtocolError(f"sender announced {want_files} files, received {len(self.files)}")
        got = self.bytes_written - self.round_base
        want_bytes = end.get("bytes")
        if want_bytes is not None and want_bytes != got:
            raise ProtocolError(f"sender announced {want_bytes} bytes, received {got}")
        if self.precopy and end.get("deleted") is not None and end.get("deleted") != self.deletes:
            raise ProtocolError(f"sender announced {end.get('deleted')} deletions, received {self.deletes}")
        self._set_dir_times()
        return got

    def end_round(self, end: dict) -> dict:
        """A warm round is complete: check its totals, then start the next round.

        Nothing is finished: the roots stay open, the warm store stays, and
        the same paths and file ids may come again.
        """
        if not self.precopy:
            raise ProtocolError("ROUND_END outside a pre-copy session")
        if end.get("round") != self.round:
            raise ProtocolError(f"ROUND_END for round {end.get('round')!r}, this is round {self.round}")
        got = self._check_totals(end, f"round {self.round} ended")
        out = {"round": self.round, "files": len(self.files), "bytes": got, "deleted": self.deletes}
        self._close_files()
        self.files, self.seen, self.deleted, self._dir_keys = {}, set(), set(), set()
        self.deletes = 0
        self.round += 1
        self.round_base = self.bytes_written
        return out

    def finish(self, end: dict) -> dict:
        self._check_totals(end, "stream ended")
        self.close()
        return {"files": len(self.files), "entries": self.entries, "bytes": self.bytes_written}

    def _set_dir_times(self) -> None:
        # Directory times last: creating children changed them.
        for root, parts, mtime_ns in reversed(self.dir_times):
            if not parts:
                os.utime(self.roots[root], ns=(mtime_ns, mtime_ns))
                continue
            pfd = open_parent(self.roots[root], parts, create=False)
            try:
                os.utime(parts[-1], ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(pfd)
        self.dir_times = []


def root_rules(root: str, path: str, parts: list[str], kind: str, mode: int, meta: dict) -> tuple[int, dict]:
    """What each root may receive (docs/security.md); returns the mode and meta to apply.

    ``checkpoint`` (CRIU's images): regular files and directories only, plain
    permission bits, no xattrs. The writable layer and volumes: what overlayfs
    and a service hold, but no device nodes (a device in a container's files
    opens the host's device) except overlayfs's whiteouts (char 0:0). Volumes
    are data shared with the host: no setuid/setgid bits, no file
    capabilities. A root directory itself never becomes setuid/setgid.
    """
    if root == "checkpoint":
        if kind not in ("file", "dir"):
            raise ProtocolError(f"{root}:{path}: the checkpoint root takes regular files and directories only, "
                                f"not {kind}")
        return mode & 0o777, {k: v for k, v in meta.items() if k != "xattrs"}
    if kind in ("chr", "blk"):
        raise ProtocolError(f"{root}:{path}: device nodes are not accepted (only overlayfs whiteouts, char 0:0)")
    if not parts:
        mode &= 0o1777
    if root.startswith("volume/"):
        mode &= ~0o6000
        xattrs = meta.get("xattrs")
        if isinstance(xattrs, dict) and "security.capability" in xattrs:
            meta = dict(meta, xattrs={k: v for k, v in xattrs.items() if k != "security.capability"})
    return mode, meta


def open_parent(root_fd: int, parts: list[str], create: bool = True) -> int:
    """fd of the directory that will hold ``parts[-1]``, walked without following symlinks.

    Every component is opened with O_NOFOLLOW|O_DIRECTORY relative to the
    previous one, so a symlink planted anywhere on the way (by this stream or
    already on disk) can not redirect a write outside the root.
    """
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise ProtocolError(f"path component {part!r} is not a directory "
                                    f"(symlink or file): {exc.strerror}") from None
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _remove_existing(dir_fd: int, name: str, keep_dir: bool) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return
        raise ProtocolError(f"{name!r} exists as a directory on the receiver")
    os.unlink(name, dir_fd=dir_fd)


def expand_pagemap(pagemap: bytes, literal: bytes, raw_len: int,
                   read_ref: Callable[[int, int, int], bytes],
                   self_id: int = -1, self_offset: int = 0,
                   read_warm: Callable[[int, int], bytes] | None = None) -> bytes:
    """Rebuild a chunk from its page map, literal pages and earlier pages.

    A reference into the chunk being rebuilt (an earlier page of the same
    chunk) is served from the buffer, others through ``read_ref`` from what
    was already written; a warm reference (pre-copy sessions only) through
    ``read_warm(pid, vaddr)`` from the warm store.
    """
    out = bytearray(raw_len)
    npages = (raw_len + PAGE - 1) // PAGE
    pos = lit = 0
    for i in range(npages):
        if pos >= len(pagemap):
            raise ProtocolError("page map shorter than the chunk")
        tag = pagemap[pos]
        pos += 1
        start = i * PAGE
        size = min(PAGE, raw_len - start)
        if tag == P_LITERAL:
            if lit + size > len(literal):
                raise ProtocolError("page map asks for more literal pages than sent")
            out[start:start + size] = literal[lit:lit + size]
            lit += size
        elif tag == P_ZERO:
            pass  # bytearray is zero already
        elif tag == P_REF:
            if pos + REF.size > len(pagemap):
                raise ProtocolError("truncated page reference")
            fid, off = REF.unpack_from(pagemap, pos)
            pos += REF.size
            if fid == self_id and self_offset <= off < self_offset + start:
                rel = off - self_offset
                if rel + size > start:
                    raise ProtocolError("page reference overlaps the page being rebuilt")
                data = bytes(out[rel:rel + size])
            else:
                data = read_ref(fid, off, size)
            if len(data) != size:
                raise ProtocolError(f"page reference to file {fid} offset {off} not available")
            out[start:start + size] = data
        elif tag == P_WARM and read_warm is not None:
            if pos + REF.size > len(pagemap):
                raise ProtocolError("truncated warm page reference")
            pid, vaddr = REF.unpack_from(pagemap, pos)
            pos += REF.size
            if size != PAGE:
                raise ProtocolError("warm page reference for a partial page")
            out[start:start + size] = read_warm(pid, vaddr)
        else:
            raise ProtocolError(f"unknown page tag {tag}")
    if lit != len(literal) or pos != len(pagemap):
        raise ProtocolError("page map and literal data disagree")
    return bytes(out)
