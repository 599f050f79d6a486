# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stream protocol: round trips, corruption, and hostile frames."""
from __future__ import annotations

import io
import json
import os
import stat
import zlib

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils import protocol as P
from ansible_collections.edgemig.migration.plugins.module_utils.pipeline import receive_stream
from ansible_collections.edgemig.migration.plugins.module_utils.transfer import send_local


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
            entry["xattrs"] = P.read_xattrs(full)
            out[rel] = entry
    return out


@pytest.mark.parametrize("policy", ["fixed:none:0", "fixed:lz4:1", "fixed:lz4:9", "fixed:zstd:3", "model", "paper"])
@pytest.mark.parametrize("pipelined", [True, False])
def test_round_trip(tmp_path, policy, pipelined):
    ck, layer, pages = make_tree(tmp_path)
    d_ck, d_layer = tmp_path / "dck", tmp_path / "dlayer"
    d_ck.mkdir()
    d_layer.mkdir()
    res = send_local([("checkpoint", str(ck)), ("layer", str(layer))],
                     {"checkpoint": str(d_ck), "layer": str(d_layer)}, policy=policy,
                     chunk_size=64 * 1024, pipelined=pipelined)
    assert res["receiver"]["ok"]
    assert snapshot(ck) == snapshot(d_ck)
    assert snapshot(layer) == snapshot(d_layer)
    assert res["bytes_raw"] == sum(len(e.get("data", b"")) for e in snapshot(ck).values()) + \
        sum(len(e.get("data", b"")) for e in snapshot(layer).values())
    assert res["zero_pages"] > 0 and res["dup_pages"] > 0
    if policy != "fixed:none:0":
        assert res["bytes_wire"] < res["bytes_raw"] * 0.5


def test_dedup_off_still_round_trips(tmp_path):
    ck, layer, pages = make_tree(tmp_path)
    d = tmp_path / "d"
    d.mkdir()
    res = send_local([("checkpoint", str(ck))], {"checkpoint": str(d)}, policy="fixed:none:0", dedup=False)
    assert (d / "pages-1.img").read_bytes() == pages
    assert res["dup_pages"] == 0


def test_corrupted_chunk_is_detected(tmp_path):
    ck, layer, pages = make_tree(tmp_path)
    d = tmp_path / "d"
    d.mkdir()

    def flip(ch):
        data = bytearray(ch["data"])
        data[len(data) // 2] ^= 0x01
        ch["data"] = bytes(data)
    with pytest.raises(P.ProtocolError, match="checksum|decompress|receiver failed"):
        send_local([("checkpoint", str(ck))], {"checkpoint": str(d)}, policy="fixed:none:0",
                   corrupt_hook=flip)


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


def test_truncated_stream(tmp_path):
    data = stream(entry("a", size=10)).getvalue()[:-3]
    with pytest.raises(P.ProtocolError, match="truncated"):
        run(tmp_path, io.BytesIO(data))


def test_oversized_frame(tmp_path):
    bad = P.HEADER.pack(P.MAGIC, P.T_ENTRY, P.MAX_FRAME + 1)
    with pytest.raises(P.ProtocolError, match="exceeds"):
        run(tmp_path, stream(bad))


def test_bad_magic(tmp_path):
    with pytest.raises(P.ProtocolError, match="magic"):
        run(tmp_path, io.BytesIO(b"GARBAGEGARBAGE"))


def test_chunk_beyond_file_size(tmp_path):
    raw = b"A" * 100
    ch = P.chunk_frame(0, 50, "none", 0, len(raw), zlib.crc32(raw), raw, len(raw))
    with pytest.raises(P.ProtocolError, match="beyond file size"):
        run(tmp_path, stream(entry("a", size=100), ch, END))


def test_incomplete_file_at_end(tmp_path):
    with pytest.raises(P.ProtocolError, match="incomplete"):
        run(tmp_path, stream(entry("a", size=100), END))


def test_unknown_root_rejected(tmp_path):
    hello = P.json_frame(P.T_HELLO, {"version": P.VERSION, "roots": ["evil"]})
    with pytest.raises(P.ProtocolError, match="roots"):
        run(tmp_path, io.BytesIO(hello))


def test_abort_frame(tmp_path):
    with pytest.raises(P.ProtocolError, match="sender aborted"):
        run(tmp_path, stream(P.json_frame(P.T_ABORT, {"reason": "boom"})))


def test_receiver_main_reports_error_line(tmp_path):
    from ansible_collections.edgemig.migration.plugins.module_utils.receiver import main
    out = io.BytesIO()
    dest = tmp_path / "d"
    dest.mkdir()
    rc = main(["--root", f"layer={dest}"], stdin=io.BytesIO(b"nonsense-garbage"), stdout=out)
    assert rc == 1
    msg = json.loads(out.getvalue().splitlines()[-1])
    assert "magic" in msg["error"]


def test_bundle_contains_receiver_sources():
    from ansible_collections.edgemig.migration.plugins.module_utils.transfer import receiver_bundle
    data = receiver_bundle()
    bundle = json.loads(data[4:])
    assert any(k.endswith(".receiver") for k in bundle)
    assert all("def " in v for v in bundle.values())


def test_unix_sockets_are_skipped(tmp_path):
    import socket
    layer = tmp_path / "layer"
    (layer / "run").mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(layer / "run" / "mysqld.sock"))
    (layer / "run" / "pid").write_text("1")
    dest = tmp_path / "dest"
    dest.mkdir()
    try:
        res = send_local([("layer", str(layer))], {"layer": str(dest)}, policy="fixed:none:0")
    finally:
        sock.close()
    assert res["receiver"]["ok"]
    assert (dest / "run" / "pid").read_text() == "1"
    assert not (dest / "run" / "mysqld.sock").exists()


@pytest.mark.parametrize("policy", ["fixed:none:0", "model"])
def test_round_trip_with_tight_in_flight_limit(tmp_path, policy):
    """The sender waits for acks once 64 KiB are in flight: no deadlock, same bytes."""
    ck, layer, pages = make_tree(tmp_path)
    d = tmp_path / "d"
    d.mkdir()
    res = send_local([("checkpoint", str(ck))], {"checkpoint": str(d)}, policy=policy,
                     chunk_size=16 * 1024, min_inflight=64 * 1024)
    assert res["receiver"]["ok"]
    assert (d / "pages-1.img").read_bytes() == pages


# -- link probe (PROBE frames before HELLO) ----------------------------------

def test_probe_frames_are_answered_and_discarded(tmp_path):
    probes = P.frame(P.T_PROBE, b"") + P.frame(P.T_PROBE, bytes(70_000))
    hello = P.json_frame(P.T_HELLO, {"version": P.VERSION, "roots": ["layer"]})
    replies = []
    dest = tmp_path / "dest"
    dest.mkdir()
    receive_stream(io.BytesIO(probes + hello + END).read, replies.append, {"layer": str(dest)}, workers=1)
    assert replies[:2] == [{"probe": 0}, {"probe": 70_000}]
    assert list(dest.iterdir()) == []


def test_too_many_probe_frames_rejected(tmp_path):
    flood = P.frame(P.T_PROBE, b"x") * (P.MAX_PROBES + 1)
    with pytest.raises(P.ProtocolError, match="PROBE"):
        run(tmp_path, io.BytesIO(flood))


def test_probe_after_hello_rejected(tmp_path):
    with pytest.raises(P.ProtocolError, match="unexpected frame type"):
        run(tmp_path, stream(P.frame(P.T_PROBE, b"x"), END))


def test_probe_link_measures_a_throttled_pipe():
    """probe_link against a receiver behind a pipe throttled to ~4 MB/s."""
    import threading
    import time

    from ansible_collections.edgemig.migration.plugins.module_utils.pipeline import AckState, probe_link

    rate = 4e6
    rfd, wfd = os.pipe()
    reader, writer = os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb", buffering=0)
    acks = AckState()

    def slow_read(n):
        data = reader.read(min(n, 65536)) if n else b""
        time.sleep(len(data) / rate)
        return data if len(data) == n or not data else data + slow_read(n - len(data))

    def receiver():
        try:
            receive_stream(slow_read, lambda m: acks.feed_line(json.dumps(m).encode()), {}, workers=1)
        except P.ProtocolError:
            pass

    t = threading.Thread(target=receiver, daemon=True)
    t.start()
    try:
        out = probe_link(writer.write, acks, min_seconds=0.1, budget_s=3.0)
    finally:
        writer.write(P.json_frame(P.T_ABORT, {"reason": "test over"}))
        writer.close()
        t.join(5)
        reader.close()
    assert out["rtt_s"] is not None and out["bytes"] >= 64 << 10
    assert rate / 3 < out["rate_Bps"] < rate * 3


def test_probe_link_without_receiver_gives_no_rate():
    from ansible_collections.edgemig.migration.plugins.module_utils.pipeline import AckState, probe_link

    out = probe_link(lambda b: None, AckState(), budget_s=0.2)
    assert out["rate_Bps"] is None and out["rtt_s"] is None


def test_probe_link_ready_only_sends_one_ping():
    from ansible_collections.edgemig.migration.plugins.module_utils.pipeline import AckState, probe_link

    acks, sent = AckState(), []

    def send(data):
        sent.append(len(data))
        acks.feed_line(json.dumps({"probe": len(data) - P.HEADER.size}).encode())

    out = probe_link(send, acks, measure=False)
    assert len(sent) == 1 and out["rate_Bps"] is None and out["bytes"] == 0
