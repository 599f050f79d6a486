# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The sender's first step: walk the source roots and describe each object as an ENTRY.

``walk_roots`` yields every object parents first (a directory must exist on
the receiver before its children); ``entry_meta`` turns one into the ENTRY
frame's JSON (kind, mode, owner, times, xattrs, and for a file its id, size
and whether it is a CRIU page image). stream_sender.StreamSender reads the
file data itself, chunk by chunk. tree_writer.TreeWriter is the mirror
image on the target.
"""
from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator

from ansible_collections.edgemig.migration.plugins.module_utils.wire.protocol import ProtocolError


def walk_roots(roots: list[tuple[str, str]], live: bool = False) -> Iterator[tuple[str, str, str, os.stat_result]]:
    """(root, relative path, full path, lstat) for every object, parents first.

    The root directory itself comes first as ``"."`` so its owner and mode
    travel too (a MariaDB volume's data dir belongs to mysql, not root).
    ``live``: the tree belongs to a running service (pre-copy's warm rounds):
    an object that vanishes while we walk is skipped (it counts as deleted),
    never an error.
    """
    for name, top in roots:
        yield name, ".", top, os.lstat(top)
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, top)
            for entry in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, entry)
                rel = entry if rel_dir == "." else f"{rel_dir}/{entry}"
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    if not live:
                        raise
                    continue
                yield name, rel, full, st


class ChangedDuringWalk(OSError):
    """The object at a walked path is no longer the one the walk saw."""


def open_walked(full: str, st: os.stat_result) -> int:
    """A read-only fd of the regular file the walk saw at ``full`` (its lstat ``st``).

    The path is only a hint: a container sharing the volume may swap the file
    for a symlink (or a parent directory for one) between the walk's lstat and
    this open. O_NOFOLLOW refuses a symlink as the last component, and the
    fd's own fstat must show the walked object (device, inode, regular file),
    so whatever a swapped parent leads to is refused too: the sender never
    streams a file other than the one in the tree (a host file, a key).
    """
    fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fst = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise ChangedDuringWalk(f"{full} changed during the walk (now device {fst.st_dev} inode {fst.st_ino}, "
                                f"mode {stat.filemode(fst.st_mode)}; walked {st.st_dev}/{st.st_ino}): "
                                "another process swapped it; not streamed")
    return fd


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
