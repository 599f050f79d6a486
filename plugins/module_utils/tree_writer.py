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
"""
from __future__ import annotations

import base64
import os
import stat
import zlib
from collections.abc import Callable

from ansible_collections.edgemig.migration.plugins.module_utils.protocol import (
    KINDS,
    MAX_ENTRIES,
    P_LITERAL,
    P_REF,
    P_ZERO,
    PAGE,
    REF,
    ProtocolError,
    check_relpath,
)


class TreeWriter:
    """Applies ENTRY and decoded CHUNK items to the destination roots, in order.

    ``roots`` maps a root name to a directory that must exist. Nothing is
    written outside those directories.
    """

    def __init__(self, roots: dict[str, str]):
        self.roots = {}
        for name, path in roots.items():
            self.roots[name] = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        self.files: dict[int, dict] = {}
        self.seen: set[tuple[str, str]] = set()
        self.dir_times: list[tuple[str, list[str], int]] = []
        self.entries = 0
        self.bytes_written = 0

    def close(self) -> None:
        for f in self.files.values():
            if f.get("fd") is not None:
                os.close(f["fd"])
                f["fd"] = None
        for fd in self.roots.values():
            os.close(fd)
        self.roots = {}

    # -- entries
    def entry(self, meta: dict) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise ProtocolError("too many entries")
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
        if not parts:
            if kind != "dir":
                raise ProtocolError(f"{root}: the root itself can only be a directory")
            dfd = os.dup(self.roots[root])
            try:
                self._apply_meta(dfd, meta, mode, uid, gid)
            finally:
                os.close(dfd)
            self.dir_times.append((root, [], mtime_ns))
            return
        pfd = open_parent(self.roots[root], parts)
        name = parts[-1]
        try:
            if kind == "dir":
                _remove_existing(pfd, name, keep_dir=True)
                try:
                    os.mkdir(name, 0o700, dir_fd=pfd)
                except FileExistsError:
                    pass
                dfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
                try:
                    self._apply_meta(dfd, meta, mode, uid, gid)
                finally:
                    os.close(dfd)
                self.dir_times.append((root, parts, mtime_ns))
            elif kind == "file":
                fid, size = meta.get("id"), meta.get("size")
                if not isinstance(fid, int) or not isinstance(size, int) or size < 0 or fid in self.files:
                    raise ProtocolError(f"{root}:{path}: bad or duplicate file id/size")
                _remove_existing(pfd, name, keep_dir=False)
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=pfd)
                os.ftruncate(fd, size)  # holes read back as zeros: zero pages cost nothing
                self.files[fid] = {"fd": fd, "size": size, "left": size, "next": 0, "meta": meta, "mode": mode,
                                   "uid": uid, "gid": gid, "mtime_ns": mtime_ns, "path": f"{root}:{path}"}
                if size == 0:
                    self._finish_file(fid)
            elif kind == "symlink":
                target = meta.get("target")
                if not isinstance(target, str) or not target or "\0" in target:
                    raise ProtocolError(f"{root}:{path}: bad symlink target")
                # The link itself is created, never followed: absolute targets are
                # normal inside a container file system.
                _remove_existing(pfd, name, keep_dir=False)
                os.symlink(target, name, dir_fd=pfd)
                os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
                self._set_xattrs(f"/proc/self/fd/{pfd}/{name}", meta, follow=False)
                os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
            elif kind == "hardlink":
                target = meta.get("target")
                tparts = check_relpath(target)
                if not tparts:
                    raise ProtocolError(f"{root}:{path}: bad hard link target")
                tfd = open_parent(self.roots[root], tparts, create=False)
                try:
                    _remove_existing(pfd, name, keep_dir=False)
                    os.link(tparts[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
                finally:
                    os.close(tfd)
            else:  # whiteout, fifo, chr, blk
                _remove_existing(pfd, name, keep_dir=False)
                if kind == "fifo":
                    os.mkfifo(name, mode, dir_fd=pfd)
                else:
                    rdev = 0 if kind == "whiteout" else int(meta.get("rdev", 0))
                    ftype = stat.S_IFBLK if kind == "blk" else stat.S_IFCHR
                    os.mknod(name, ftype | mode, rdev, dir_fd=pfd)
                os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
                os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
        except OSError as exc:
            raise ProtocolError(f"{root}:{path}: {exc.strerror or exc}") from None
        finally:
            os.close(pfd)

    def _apply_meta(self, fd: int, meta: dict, mode: int, uid: int, gid: int) -> None:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        self._set_xattrs(f"/proc/self/fd/{fd}", meta, follow=True)

    @staticmethod
    def _set_xattrs(path: str, meta: dict, follow: bool) -> None:
        xattrs = meta.get("xattrs") or {}
        if not isinstance(xattrs, dict):
            raise ProtocolError("xattrs must be an object")
        for key, value in xattrs.items():
            try:
                os.setxattr(path, key, base64.b64decode(value), follow_symlinks=follow)
            except (ValueError, TypeError):
                raise ProtocolError(f"bad xattr value for {key!r}") from None

    # -- data
    def chunk(self, ch: dict, literal: bytes) -> None:
        f = self.files.get(ch["id"])
        if f is None or f["fd"] is None:
            raise ProtocolError(f"chunk for unknown or finished file id {ch['id']}")
        raw_len, offset = ch["raw_len"], ch["offset"]
        if offset != f["next"]:
            # In order only: a duplicate, a reordered or a skipped chunk would
            # otherwise still add up to the right byte count (a duplicate plus
            # a missing chunk left a hole of zeros that END did not catch).
            raise ProtocolError(f"{f['path']} (file id {ch['id']}): chunk at offset {offset}, expected "
                                f"offset {f['next']} (duplicate, reordered or missing chunk)")
        if offset + raw_len > f["size"]:
            raise ProtocolError(f"{f['path']}: chunk at {offset}+{raw_len} beyond file size {f['size']}")
        if ch["pagemap"]:
            data = expand_pagemap(ch["pagemap"], literal, raw_len, self._read_ref,
                                  ch["id"], offset)
        else:
            data = literal
        if len(data) != raw_len:
            raise ProtocolError(f"{f['path']}: chunk decoded to {len(data)} bytes, expected {raw_len}")
        if zlib.crc32(data) != ch["crc"]:
            raise ProtocolError(f"{f['path']}: checksum mismatch in chunk at offset {offset} "
                                "(corrupted on the wire)")
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
        if f["fd"] is None:
            raise ProtocolError(f"page reference to a file that is not a page image: {f['path']}")
        return os.pread(f["fd"], size, offset)

    def _finish_file(self, fid: int) -> None:
        f = self.files[fid]
        fd = f["fd"]
        os.fchown(fd, f["uid"], f["gid"])
        os.fchmod(fd, f["mode"])  # after chown: chown clears setuid bits
        self._set_xattrs(f"/proc/self/fd/{fd}", f["meta"], follow=True)
        os.utime(fd, ns=(f["mtime_ns"], f["mtime_ns"]))
        # Page files stay open to the end: later chunks may reference their
        # pages. Others are closed now so a layer of many files needs few fds.
        if not f["meta"].get("pages"):
            os.close(fd)
            f["fd"] = None

    def finish(self, end: dict) -> dict:
        missing = [f["path"] for f in self.files.values() if f["left"] != 0]
        if missing:
            raise ProtocolError(f"stream ended with incomplete files: {', '.join(missing[:5])}")
        want_files = end.get("files")
        if want_files is not None and want_files != len(self.files):
            raise ProtocolError(f"sender announced {want_files} files, received {len(self.files)}")
        want_bytes = end.get("bytes")
        if want_bytes is not None and want_bytes != self.bytes_written:
            raise ProtocolError(f"sender announced {want_bytes} bytes, received {self.bytes_written}")
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
        self.close()
        return {"files": len(self.files), "entries": self.entries, "bytes": self.bytes_written}


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
                   self_id: int = -1, self_offset: int = 0) -> bytes:
    """Rebuild a chunk from its page map, literal pages and earlier pages.

    A reference into the chunk being rebuilt (an earlier page of the same
    chunk) is served from the buffer, others through ``read_ref`` from what
    was already written.
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
        else:
            raise ProtocolError(f"unknown page tag {tag}")
    if lit != len(literal) or pos != len(pagemap):
        raise ProtocolError("page map and literal data disagree")
    return bytes(out)
