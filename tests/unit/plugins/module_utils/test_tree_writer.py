# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TreeWriter: nothing lands outside the roots, files are complete and checked."""
from __future__ import annotations

import io
import os
import stat
import zlib

import pytest
from stream_fixtures import END, entry, run, stream

from ansible_collections.edgemig.migration.plugins.module_utils.receiver.stream_receiver import receive_stream
from ansible_collections.edgemig.migration.plugins.module_utils.wire import protocol as P


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", "", "a/./b", "x\0y"])
def test_traversal_rejected(tmp_path, path):
    with pytest.raises(P.ProtocolError, match="bad path"):
        run(tmp_path, stream(entry(path), END))
    assert not (tmp_path / "x").exists()


def test_symlink_escape_rejected(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    frames = [entry("ln", "symlink", target=str(outside)), entry("ln/pwned", size=0)]
    with pytest.raises(P.ProtocolError, match="not a directory"):
        run(tmp_path, stream(*frames, END))
    assert list(outside.iterdir()) == []


def test_preexisting_symlink_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "d")
    os.symlink(outside / "f", dest / "f")
    with pytest.raises(P.ProtocolError):
        run(tmp_path, stream(entry("d/x", size=0), END))
    run(tmp_path, stream(entry("f", size=0), END))   # replaces the link, never writes through it
    assert not (outside / "f").exists() and (dest / "f").is_file()


def test_duplicate_entry_rejected(tmp_path):
    with pytest.raises(P.ProtocolError, match="duplicate"):
        run(tmp_path, stream(entry("a", id=0), entry("a", id=1), END))


def test_chunk_beyond_file_size(tmp_path):
    raw = b"A" * 100
    first = P.chunk_frame(0, 0, "none", 0, 50, zlib.crc32(raw[:50]), raw[:50], 50)
    ch = P.chunk_frame(0, 50, "none", 0, len(raw), zlib.crc32(raw), raw, len(raw))
    with pytest.raises(P.ProtocolError, match="beyond file size"):
        run(tmp_path, stream(entry("a", size=149), first, ch, END))


def _ch(offset, raw, fid=0):
    return P.chunk_frame(fid, offset, "none", 0, len(raw), zlib.crc32(raw), raw, len(raw))


def test_duplicate_plus_missing_chunk_rejected(tmp_path):
    """Issue 12: the byte count adds up, but the second half would be zeros."""
    a = b"a" * 4096
    with pytest.raises(P.ProtocolError, match=r"a \(file id 0\): chunk at offset 0, expected offset 4096"):
        run(tmp_path, stream(entry("a", size=8192), _ch(0, a), _ch(0, a), END))
    assert not (tmp_path / "dest" / "a").exists() or (tmp_path / "dest" / "a").read_bytes() != a + a


def test_reordered_chunks_rejected(tmp_path):
    a, b = b"a" * 4096, b"b" * 4096
    with pytest.raises(P.ProtocolError, match="chunk at offset 4096, expected offset 0"):
        run(tmp_path, stream(entry("a", size=8192), _ch(4096, b), _ch(0, a), END))


def test_skipped_chunk_rejected(tmp_path):
    a = b"a" * 4096
    with pytest.raises(P.ProtocolError, match="chunk at offset 8192, expected offset 4096"):
        run(tmp_path, stream(entry("a", size=12288), _ch(0, a), _ch(8192, a), END))


def test_chunks_in_order_accepted(tmp_path):
    a, b = b"a" * 4096, b"b" * 100
    run(tmp_path, stream(entry("a", size=4196), _ch(0, a), _ch(4096, b), END))
    assert (tmp_path / "dest" / "a").read_bytes() == a + b


def test_incomplete_file_at_end(tmp_path):
    with pytest.raises(P.ProtocolError, match="incomplete"):
        run(tmp_path, stream(entry("a", size=100), END))


# ---- per-root rules for special files (issue 13, docs/security.md)

def run_roots(tmp_path, *frames):
    roots = {"checkpoint": tmp_path / "ck", "layer": tmp_path / "layer", "volume/v": tmp_path / "vol"}
    for d in roots.values():
        d.mkdir(exist_ok=True)
    hello = P.json_frame(P.T_HELLO, {"version": P.VERSION, "roots": list(roots)})
    data = io.BytesIO(hello + b"".join(frames) + END)
    receive_stream(data.read, lambda m: None, {k: str(v) for k, v in roots.items()}, workers=1)
    return roots


def at(root, path, kind="file", **kw):
    meta = {"root": root, "path": path, "kind": kind, "mode": kw.pop("mode", 0o644), "uid": 0, "gid": 0,
            "mtime_ns": 0}
    if kind == "file":
        meta.update({"id": kw.pop("id", 0), "size": 0})
    meta.update(kw)
    return P.json_frame(P.T_ENTRY, meta)


@pytest.mark.parametrize("kind, extra", [("symlink", {"target": "/etc/shadow"}), ("fifo", {}),
                                         ("whiteout", {}), ("chr", {"rdev": 0x0103}), ("blk", {"rdev": 0x0801})])
def test_the_checkpoint_root_takes_regular_files_only(tmp_path, kind, extra):
    with pytest.raises(P.ProtocolError, match="checkpoint root takes regular files"):
        run_roots(tmp_path, at("checkpoint", "x", kind, **extra))


@pytest.mark.parametrize("root", ["layer", "volume/v"])
@pytest.mark.parametrize("kind, rdev", [("chr", 0x0103), ("blk", 0x0801)])
def test_no_device_nodes_in_layer_or_volumes(tmp_path, root, kind, rdev):
    with pytest.raises(P.ProtocolError, match="device nodes are not accepted"):
        run_roots(tmp_path, at(root, "dev", kind, rdev=rdev))
    assert not os.path.lexists(tmp_path / ("layer" if root == "layer" else "vol") / "dev")


def test_whiteouts_and_fifos_keep_their_modes(tmp_path):
    old = os.umask(0o077)                    # the receiver's umask must not decide the modes
    try:
        roots = run_roots(tmp_path, at("layer", "gone", "whiteout", mode=0o000), at("layer", "pipe", "fifo", mode=0o666))
    finally:
        os.umask(old)
    st = os.lstat(roots["layer"] / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert stat.S_IMODE(os.lstat(roots["layer"] / "pipe").st_mode) == 0o666


def test_setuid_and_capabilities_stay_out_of_volumes_and_roots(tmp_path):
    caps = {"security.capability": "AQAAAgAgAAAAAAAAAAAAAAAAAAA=", "user.note": "aGk="}
    roots = run_roots(tmp_path,
                      at("volume/v", "suid", mode=0o4755, id=0, xattrs=caps),
                      at("layer", "suid", mode=0o4755, id=1),                        # the container's own files
                      at("volume/v", ".", "dir", mode=0o6777),
                      at("checkpoint", "core-1.img", mode=0o4644, id=2, xattrs={"user.x": "eA=="}))
    assert stat.S_IMODE(os.stat(roots["volume/v"] / "suid").st_mode) == 0o755
    assert "security.capability" not in os.listxattr(roots["volume/v"] / "suid")
    assert stat.S_IMODE(os.stat(roots["layer"] / "suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(roots["volume/v"]).st_mode) == 0o777                 # a root never setuid/setgid
    assert stat.S_IMODE(os.stat(roots["checkpoint"] / "core-1.img").st_mode) == 0o644
