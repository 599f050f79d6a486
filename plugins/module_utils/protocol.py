# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The edgemig stream protocol: frames, path rules, and the receiving side.

A migration stream carries several *roots* (``checkpoint``, ``layer``,
``volume/<name>``), each a tree of entries (dirs, files, symlinks, whiteouts,
hard links) and file data in chunks. Every frame is

    magic "EMF1" | type (u8) | payload length (u32)   -- network byte order

Sender -> receiver frames: HELLO (json), ENTRY (json), CHUNK (binary), END
(json), ABORT (json), and before HELLO any number of PROBE frames (filler the
receiver discards and answers with ``{"probe": <bytes>}``: the sender times
them to estimate the link before the service is frozen). Receiver -> sender:
one JSON object per line (acks, probe answers, final ``ok`` or ``error``).

Chunks name their codec and level, so the level can change from one chunk to
the next; they carry the raw length and a CRC32 of the raw bytes, so a
corrupted chunk is detected before anything is restored from it. Memory-page
chunks may carry a page map: a page is either literal (in the compressed
payload), zero, or a reference to a page sent earlier (dedup beyond any
codec window).

The receiver trusts nothing: each path is relative, has no ``..`` and is
written without following symlinks; sizes and offsets are bounded; a bad
frame aborts the transfer with a message that says what was wrong.

This file is also shipped to the target host and run there by the receiver
bootstrap (see transfer.py), so it imports only the standard library and
sibling module_utils.
"""
from __future__ import annotations

import base64
import json
import os
import stat
import struct
import zlib
from collections.abc import Callable, Iterable

from ansible_collections.edgemig.migration.plugins.module_utils.codecs import (
    CODECS, CodecError, decompress,
)

MAGIC = b"EMF1"
VERSION = 1
HEADER = struct.Struct("!4sBI")
CHUNK_HEAD = struct.Struct("!IQBbBIIII")  # file_id offset codec level flags raw_len comp_len literal_len crc
REF = struct.Struct("!IQ")

T_HELLO, T_ENTRY, T_CHUNK, T_END, T_ABORT, T_PROBE = 1, 2, 3, 4, 5, 6
F_PAGEMAP = 1

PAGE = 4096
P_LITERAL, P_ZERO, P_REF = 0, 1, 2
ZERO_PAGE = bytes(PAGE)

# Bounds the receiver enforces (a peer can not make it allocate more).
MAX_FRAME = 64 << 20
MAX_CHUNK = 16 << 20
MAX_JSON = 1 << 20
MAX_PATH = 4096
MAX_ENTRIES = 2_000_000
MAX_PROBES = 64
MAX_PROBE_FRAME = 8 << 20

CODEC_NAMES = {v: k for k, v in CODECS.items()}
KINDS = ("dir", "file", "symlink", "hardlink", "whiteout", "fifo", "chr", "blk")


class ProtocolError(Exception):
    """The stream is malformed, corrupted, or asks for something not allowed."""


# ---------------------------------------------------------------- encoding
def frame(ftype: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, ftype, len(payload)) + payload


def json_frame(ftype: int, obj: dict) -> bytes:
    return frame(ftype, json.dumps(obj, separators=(",", ":")).encode())


def chunk_frame(file_id: int, offset: int, codec: str, level: int, raw_len: int, crc: int,
                payload: bytes, literal_len: int, pagemap: bytes = b"") -> bytes:
    """One CHUNK frame. ``crc`` is the CRC32 of the full raw chunk (after page-map expansion)."""
    flags = F_PAGEMAP if pagemap else 0
    head = CHUNK_HEAD.pack(file_id, offset, CODECS[codec], level, flags, raw_len,
                           len(payload), literal_len, crc)
    parts = [head]
    if pagemap:
        parts.append(struct.pack("!I", len(pagemap)))
        parts.append(pagemap)
    parts.append(payload)
    body = b"".join(parts)
    return HEADER.pack(MAGIC, T_CHUNK, len(body)) + body


def entry_meta(root: str, rel: str, full: str, st: os.stat_result, file_id: int | None,
               link_target: str | None = None, pages: bool = False) -> dict:
    """The ENTRY description of a local file system object."""
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        kind = "dir"
    elif stat.S_ISREG(mode):
        kind = "hardlink" if link_target is not None else "file"
    elif stat.S_ISLNK(mode):
        kind = "symlink"
        link_target = os.readlink(full)
    elif stat.S_ISCHR(mode):
        kind = "whiteout" if st.st_rdev == 0 else "chr"
    elif stat.S_ISBLK(mode):
        kind = "blk"
    elif stat.S_ISFIFO(mode):
        kind = "fifo"
    else:
        raise ProtocolError(f"{full}: unsupported file type (socket?)")
    meta = {"root": root, "path": rel, "kind": kind, "mode": stat.S_IMODE(mode),
            "uid": st.st_uid, "gid": st.st_gid, "mtime_ns": st.st_mtime_ns}
    if kind == "file":
        meta["id"] = file_id
        meta["size"] = st.st_size
        if pages:
            meta["pages"] = True
    if link_target is not None:
        meta["target"] = link_target
    if kind in ("chr", "blk"):
        meta["rdev"] = st.st_rdev
    xattrs = read_xattrs(full)
    if xattrs:
        meta["xattrs"] = xattrs
    return meta


def read_xattrs(path: str) -> dict:
    """xattrs of ``path`` (not following symlinks), base64 values.

    Overlay's ``trusted.overlay.opaque`` marks a directory that hides the
    lower layers: losing it would resurrect deleted files on the target.
    """
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in names:
        try:
            out[name] = base64.b64encode(os.getxattr(path, name, follow_symlinks=False)).decode()
        except OSError:
            continue
    return out


# ---------------------------------------------------------------- path rules
def check_relpath(path: str) -> list[str]:
    """Split a frame's path into components, refusing anything that could escape.

    ``"."`` is the root itself. Absolute paths, ``..``, empty components, NUL
    bytes and over-long paths are refused.
    """
    if not isinstance(path, str) or not path:
        raise ProtocolError(f"bad path {path!r}: empty or not a string")
    if len(path) > MAX_PATH or "\0" in path:
        raise ProtocolError(f"bad path {path[:80]!r}: too long or contains NUL")
    if path == ".":
        return []
    if path.startswith("/"):
        raise ProtocolError(f"bad path {path!r}: absolute paths are not allowed")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ProtocolError(f"bad path {path!r}: '..', '.' or empty components are not allowed")
    return parts


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


# ---------------------------------------------------------------- receiving
class FrameReader:
    """Reads frames from a blocking ``read(n)`` callable (e.g. stdin)."""

    def __init__(self, read: Callable[[int], bytes]):
        self._read = read
        self.bytes_in = 0

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            piece = self._read(n - len(buf))
            if not piece:
                raise ProtocolError(f"stream truncated: wanted {n} bytes, got {len(buf)}")
            buf += piece
        self.bytes_in += n
        return bytes(buf)

    def next(self) -> tuple[int, bytes]:
        magic, ftype, length = HEADER.unpack(self._exact(HEADER.size))
        if magic != MAGIC:
            raise ProtocolError(f"bad frame magic {magic!r}: not an edgemig stream or corrupted")
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME} limit")
        if ftype not in (T_HELLO, T_ENTRY, T_CHUNK, T_END, T_ABORT, T_PROBE):
            raise ProtocolError(f"unknown frame type {ftype}")
        if ftype == T_PROBE and length > MAX_PROBE_FRAME:
            raise ProtocolError(f"PROBE frame of {length} bytes exceeds the {MAX_PROBE_FRAME} limit")
        return ftype, self._exact(length)


def parse_json(payload: bytes, what: str) -> dict:
    if len(payload) > MAX_JSON:
        raise ProtocolError(f"{what} frame too large")
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"{what} frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} frame is not a JSON object")
    return obj


def parse_chunk(payload: bytes) -> dict:
    if len(payload) < CHUNK_HEAD.size:
        raise ProtocolError("chunk frame shorter than its header")
    (fid, offset, codec_id, level, flags, raw_len, comp_len, literal_len,
     crc) = CHUNK_HEAD.unpack_from(payload)
    pos = CHUNK_HEAD.size
    if codec_id not in CODEC_NAMES:
        raise ProtocolError(f"chunk uses unknown codec id {codec_id}")
    if raw_len > MAX_CHUNK or literal_len > raw_len:
        raise ProtocolError(f"chunk raw length {raw_len} (literal {literal_len}) out of bounds")
    pagemap = b""
    if flags & F_PAGEMAP:
        if pos + 4 > len(payload):
            raise ProtocolError("truncated page map length")
        (mlen,) = struct.unpack_from("!I", payload, pos)
        pos += 4
        if pos + mlen > len(payload):
            raise ProtocolError("truncated page map")
        pagemap = payload[pos:pos + mlen]
        pos += mlen
    elif literal_len != raw_len:
        raise ProtocolError("chunk without page map must carry all its bytes")
    data = payload[pos:]
    if len(data) != comp_len:
        raise ProtocolError(f"chunk payload is {len(data)} bytes, header says {comp_len}")
    return {"id": fid, "offset": offset, "codec": CODEC_NAMES[codec_id], "level": level,
            "raw_len": raw_len, "literal_len": literal_len, "crc": crc, "pagemap": pagemap,
            "data": data}


def decode_chunk(ch: dict) -> bytes:
    """Decompress a parsed chunk's literal bytes (runs on a worker thread)."""
    try:
        return decompress(ch["codec"], ch["level"], ch["data"], ch["literal_len"])
    except CodecError as exc:
        raise ProtocolError(f"chunk of file {ch['id']} at offset {ch['offset']}: {exc}") from None
    except Exception as exc:  # a codec library may raise its own errors on garbage
        raise ProtocolError(f"chunk of file {ch['id']} at offset {ch['offset']} "
                            f"does not decompress: {exc}") from None


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
                self.files[fid] = {"fd": fd, "size": size, "left": size, "meta": meta, "mode": mode,
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


def parse_roots(specs: Iterable[str]) -> dict[str, str]:
    """``name=/abs/dir`` pairs from the receiver's command line."""
    roots = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not os.path.isabs(path):
            raise ProtocolError(f"bad root spec {spec!r}: expected name=/absolute/dir")
        roots[name] = path
    return roots
