# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Trees and hand-made streams shared by the stream engine's tests."""
from __future__ import annotations

import io
import os
import stat

from ansible_collections.edgemig.migration.plugins.module_utils.receiver.stream_receiver import receive_stream
from ansible_collections.edgemig.migration.plugins.module_utils.sender.tree_reader import read_xattrs
from ansible_collections.edgemig.migration.plugins.module_utils.wire import protocol as P


def make_tree(base):
    """A checkpoint-like dir and an overlay-like layer with every kind of entry."""
    ck = base / "ck"
    ck.mkdir()
    rnd = os.urandom(3 * 4096)
    pages = bytearray()
    pages += bytes(4096)              # zero page
    pages += rnd                      # 3 literal pages
    pages += rnd[:4096]               # duplicate of an earlier page
    pages += bytes(8192)              # 2 zero pages
    pages += b"x" * 100 + bytes(3996)
    pages = bytes(pages) * 70         # > 1 chunk, duplicates across chunks
    (ck / "pages-1.img").write_bytes(pages)
    (ck / "pagemap-1.img").write_bytes(b"pm" * 1000)
    (ck / "inventory.img").write_bytes(b"")
    layer = base / "layer"
    (layer / "etc" / "deep").mkdir(parents=True)
    (layer / "etc" / "deep" / "f.txt").write_bytes(b"hello" * 1000)
    os.chmod(layer / "etc" / "deep" / "f.txt", 0o4750)
    os.symlink("/etc/passwd", layer / "abs-link")
    os.symlink("deep/f.txt", layer / "etc" / "rel-link")
    os.link(layer / "etc" / "deep" / "f.txt", layer / "hard")
    os.mknod(layer / "deleted", stat.S_IFCHR | 0o000, 0)   # overlay whiteout
    os.mkfifo(layer / "fifo")
    (layer / "opaque").mkdir()
    os.setxattr(layer / "opaque", "trusted.overlay.opaque", b"y")
    return ck, layer, pages


def snapshot(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            entry = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISREG(st.st_mode):
                entry["data"] = open(full, "rb").read()
                entry["mtime"] = st.st_mtime_ns
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(full)
            elif stat.S_ISCHR(st.st_mode):
                entry["rdev"] = st.st_rdev
            entry["xattrs"] = read_xattrs(full)
            out[rel] = entry
    return out


def stream(*frames):
    hello = P.json_frame(P.T_HELLO, {"version": P.VERSION, "roots": ["layer"]})
    return io.BytesIO(hello + b"".join(frames))


def run(tmp_path, data):
    dest = tmp_path / "dest"
    dest.mkdir(exist_ok=True)
    return receive_stream(data.read, lambda m: None, {"layer": str(dest)}, workers=1)


def entry(path, kind="file", **kw):
    meta = {"root": "layer", "path": path, "kind": kind, "mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": 0}
    if kind == "file":
        meta.update({"id": kw.pop("id", 0), "size": kw.pop("size", 0)})
    meta.update(kw)
    return P.json_frame(P.T_ENTRY, meta)


END = P.json_frame(P.T_END, {})
