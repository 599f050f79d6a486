# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pre-copy (issue 11): warm rounds and the final round, both ends in-process (bench/local_stream.LocalSession)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import time
import zlib

import pytest
from local_stream import LocalSession
from stream_fixtures import snapshot
from test_criu_images import f_varint, image, pagemap_entry

from ansible_collections.edgemig.migration.plugins.module_utils.receiver.stream_receiver import receive_stream
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.warm_store import WarmStore, fs_type
from ansible_collections.edgemig.migration.plugins.module_utils.sender import process_memory as pm
from ansible_collections.edgemig.migration.plugins.module_utils.sender.precopy import (
    BLOCK,
    WarmSession,
    WarmState,
    predict_final,
    refresh,
    warm_up,
)
from ansible_collections.edgemig.migration.plugins.module_utils.sender.stream_sender import AckState, StreamSender
from ansible_collections.edgemig.migration.plugins.module_utils.wire import criu_images as ci, protocol as P

MIB = 1 << 20


def make_source(base):
    layer = base / "src-layer"
    (layer / "etc" / "sub").mkdir(parents=True)
    (layer / "etc" / "small.conf").write_bytes(b"a=1\n" * 50)
    (layer / "etc" / "sub" / "gone.txt").write_bytes(b"bye" * 10)
    (layer / "olddir" / "x").mkdir(parents=True)
    (layer / "olddir" / "x" / "f").write_bytes(b"f")
    (layer / "typechange").mkdir()
    (layer / "typechange" / "child").write_bytes(b"c")
    os.symlink("etc/small.conf", layer / "link")
    vol = base / "src-vol"
    vol.mkdir()
    (vol / "append.log").write_bytes(os.urandom(2 * MIB + 1000))
    (vol / "table.ibd").write_bytes(os.urandom(3 * MIB))
    (vol / "chmod.bin").write_bytes(os.urandom(MIB + 5))
    return layer, vol


def mutate(layer, vol):
    (layer / "etc" / "small.conf").write_bytes(b"a=2\n" * 51)                 # modified small file
    with open(vol / "append.log", "ab") as fh:                                  # appended large file
        fh.write(os.urandom(100_000))
    with open(vol / "table.ibd", "r+b") as fh:                                   # block in the middle
        fh.seek(MIB + 12345)
        fh.write(b"Z" * 100)
    os.unlink(layer / "etc" / "sub" / "gone.txt")                               # deleted file
    (layer / "etc" / "new.txt").write_bytes(b"new")                             # new file
    os.chmod(vol / "chmod.bin", 0o600)                                          # metadata only
    (layer / "olddir" / "x" / "f").unlink()                                     # deleted tree
    (layer / "olddir" / "x").rmdir()
    (layer / "olddir").rmdir()
    (layer / "typechange" / "child").unlink()                                   # dir -> file
    (layer / "typechange").rmdir()
    (layer / "typechange").write_bytes(b"now a file")
    os.setxattr(layer / "etc", "user.edgemig", b"v2")                          # dir xattr


def dir_times(root):
    out = {}
    for dirpath, dirs, _files in os.walk(root):
        for name in dirs:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = os.lstat(full).st_mtime_ns
    out["."] = os.lstat(root).st_mtime_ns
    return out


def dests(base, names=("layer", "volume/data", "checkpoint", "warm")):
    out = {}
    for name in names:
        d = base / ("dst-" + name.replace("/", "-"))
        d.mkdir()
        out[name] = str(d)
    return out


def session_trees(base):
    """(layer, volume, checkpoint dir, the receiver's roots, the warm roots) of a pre-copy session."""
    layer, vol = make_source(base)
    ck = base / "src-ck"
    ck.mkdir()
    (ck / "core-1.img").write_bytes(b"core" * 100)
    return layer, vol, ck, dests(base), [("layer", str(layer)), ("volume/data", str(vol))]


def test_rounds_over_a_changing_tree_end_identical(tmp_path):
    layer, vol, ck, dst, roots = session_trees(tmp_path)
    sess = LocalSession(dst, workers=2, warm_on_disk=True)
    r1 = sess.warm_round(roots)
    assert r1["round"] == 1 and r1["files_sent"] == 7 and r1["receiver"]["round"] == 1
    assert snapshot(dst["layer"]) == snapshot(layer) and snapshot(dst["volume/data"]) == snapshot(vol)
    assert "ok" not in (r1["receiver"] or {})  # a warm round finishes nothing

    mutate(layer, vol)
    assert predict_final(sess.warm, roots=roots) < 2 * BLOCK + 100_000 + 1000
    r2 = sess.warm_round(roots)
    assert r2["round"] == 2
    assert r2["files_patched"] == 3          # append.log, table.ibd, chmod.bin
    assert r2["files_deleted"] == 3          # gone.txt, olddir (recursive), typechange (dir -> file)
    assert r2["files_sent"] == 3             # small.conf, new.txt, typechange
    # The patches carry blocks, not files: append = old last block + the tail, middle = 1 block.
    assert r2["bytes_raw"] < 4 * BLOCK + 100_000 + 1000
    assert snapshot(dst["layer"]) == snapshot(layer) and snapshot(dst["volume/data"]) == snapshot(vol)

    r3 = sess.warm_round(roots)              # nothing changed
    assert r3["bytes_raw"] == 0 and r3["files"] == 0 and r3["unchanged"] > 10

    with open(vol / "table.ibd", "r+b") as fh:   # changed while "frozen"... then the final round
        fh.seek(0)
        fh.write(b"head")
    final = sess.stream([("checkpoint", str(ck))] + roots)
    assert final["receiver"]["ok"] and final["files_patched"] == 1 and final["bytes_raw"] == BLOCK + 400
    for name, src in [("layer", layer), ("volume/data", vol), ("checkpoint", ck)]:
        assert snapshot(dst[name]) == snapshot(src), name
        assert dir_times(dst[name]) == dir_times(src), name
    assert [r["round"] for r in sess.warm.rounds] == [1, 2, 3]


def test_a_parked_session_refreshes_between_keepalives_and_the_final_round_carries_only_what_came_after(tmp_path):
    """A move parked ahead (issue 26): warm, then parked (KEEPALIVE frames), a refresh round takes what
    changed meanwhile, parked again; the final round carries only what changed after the last refresh."""
    layer, vol, ck, dst, roots = session_trees(tmp_path)
    sess = LocalSession(dst, workers=2, warm_on_disk=True, keepalive_s=0.01)
    rep = warm_up(sess, roots, None, downtime_target=60.0, max_rounds=1)
    assert rep["rounds"][0]["files_sent"] == 7
    with sess.keepalive():                        # parked: beats cross, nothing else
        time.sleep(0.1)
    mutate(layer, vol)
    entry = refresh(sess, roots, None)
    assert entry["files_patched"] == 3 and entry["files_deleted"] == 3 and entry["files_sent"] == 3
    assert 0 < entry["bytes_raw"] < 4 * BLOCK + 100_000 + 1000 and entry["seconds"] > 0
    assert snapshot(dst["layer"]) == snapshot(layer) and snapshot(dst["volume/data"]) == snapshot(vol)
    with sess.keepalive():
        time.sleep(0.1)
    assert refresh(sess, roots, None)["bytes_raw"] == 0      # nothing changed since
    (layer / "etc" / "small.conf").write_bytes(b"a=3\n" * 52)  # changed after the last refresh
    final = sess.stream([("checkpoint", str(ck))] + roots)
    assert final["receiver"]["ok"] and final["files_sent"] == 2      # small.conf and the checkpoint's image
    assert final["files_patched"] == 0 and final["bytes_raw"] == 4 * 52 + 400
    for name, src in [("layer", layer), ("volume/data", vol), ("checkpoint", ck)]:
        assert snapshot(dst[name]) == snapshot(src), name
    assert [r["round"] for r in sess.warm.rounds] == [1, 2, 3]


def test_stop_and_copy_says_version_1(tmp_path):
    layer, _vol = make_source(tmp_path)
    out = io.BytesIO()
    acks = AckState()
    sender = StreamSender([("layer", str(layer))], _Ctl(), out.write, acks, workers=1, pipelined=False)
    acks.result = {"ok": True}
    acks.done.set()
    sender.run()
    ftype, payload = P.FrameReader(io.BytesIO(out.getvalue()).read).next()
    assert ftype == P.T_HELLO and payload == b'{"version":1,"roots":["layer"]}'


class _Ctl:
    def wants_sample(self):
        return False

    def current(self):
        return "none", 0

    def observe_chunk(self, *a):
        pass

    def observe_network(self, *a):
        pass

    def describe(self):
        return "fixed"


# --- memory --------------------------------------------------------------------------

CHILD = r"""
import ctypes, mmap, sys
buf = mmap.mmap(-1, 64 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
for i in range(64):
    ctypes.memmove(addr + i * 4096, bytes([i + 1]) * 4096, 4096)
print(hex(addr), flush=True)
for line in sys.stdin:
    i = int(line)
    ctypes.memmove(addr + i * 4096, b"\xee" * 4096, 4096)
    print("ok", flush=True)
"""


@pytest.fixture
def child():
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        addr = int(p.stdout.readline(), 16)
        try:
            os.close(os.open(f"/proc/{p.pid}/mem", os.O_RDONLY))
        except PermissionError:
            pytest.skip("cannot read another process's memory here (ptrace restrictions)")
        yield p, addr
    finally:
        p.kill()
        p.wait()


def write_dump(d, pid: int, pages: list[tuple[int, bytes]]) -> bytes:
    """A synthetic CRIU dump of ``pages`` [(vaddr, content)] for namespace pid ``pid``."""
    entries = [f_varint(1, 1)] + [pagemap_entry(va, 1, ci.PE_PRESENT | ci.PE_LAZY) for va, _c in pages]
    (d / f"pagemap-{pid}.img").write_bytes(image(ci.PAGEMAP_MAGIC, entries))
    data = b"".join(c for _va, c in pages)
    (d / "pages-1.img").write_bytes(data)
    (d / "inventory.img").write_bytes(b"")
    return data


def test_memory_warm_then_final_by_reference(tmp_path, child):
    proc, addr = child
    ns_pid = 1
    dst = dests(tmp_path, ("checkpoint", "warm"))
    sess = LocalSession(dst, workers=2, warm_on_disk=True)
    r1 = sess.warm_round([], {proc.pid: ns_pid})
    assert r1["pages_sent"] >= 64 and r1["receiver"]["round"] == 1
    held = sess.warm.pages[ns_pid]
    assert all(addr + i * 4096 in held for i in range(64))
    assert len(os.listdir(dst["warm"])) == 1  # mem-1.pages

    proc.stdin.write("5\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "ok\n"
    r2 = sess.warm_round([], {proc.pid: ns_pid})
    # page 5, and the few pages the interpreter touched (stack, heap): not everything again
    assert 1 <= r2["pages_sent"] < r1["pages_sent"] // 4
    assert held[addr + 5 * 4096] == hashlib.sha256(b"\xee" * 4096).digest()

    proc.stdin.write("9\n")  # dirtied after the last warm round: must travel literally
    proc.stdin.flush()
    assert proc.stdout.readline() == "ok\n"
    with pm.ProcessMemory(proc.pid) as m:
        current = {}
        for va, data in m.read_runs():
            for i in range(0, len(data), 4096):
                current[va + i] = bytes(data[i:i + 4096])
    pages = [(addr + i * 4096, current[addr + i * 4096]) for i in range(64)]
    pages.append((0x10000, os.urandom(4096)))  # a page the warm rounds never saw
    ck = tmp_path / "src-ck"
    ck.mkdir()
    data = write_dump(ck, ns_pid, pages)
    final = sess.stream([("checkpoint", str(ck))])
    assert final["receiver"]["ok"]
    assert final["pages_referenced"] == 63 and final["pages_literal"] == 2
    assert (tmp_path / "dst-checkpoint" / "pages-1.img").read_bytes() == data
    assert final["bytes_wire"] < len(data) // 4
    assert os.listdir(dst["warm"]) == []  # the warm store is gone with the session


# --- receiver: warm references and the store ------------------------------------------

def v2(*frames) -> io.BytesIO:
    return io.BytesIO(P.json_frame(P.T_HELLO, {"version": 2, "roots": ["checkpoint"], "precopy": True})
                      + b"".join(frames))


def page_chunk(fid, pagemap, raw_len=4096, literal=b""):
    return P.chunk_frame(fid, 0, "none", 0, raw_len, zlib.crc32(bytes(raw_len) if not literal else literal),
                         literal, len(literal), pagemap)


def pages_entry(fid=0, size=4096):
    return P.json_frame(P.T_ENTRY, {"root": "checkpoint", "path": "pages-1.img", "kind": "file", "id": fid,
                                    "size": size, "pages": True, "mode": 0o600, "uid": 0, "gid": 0,
                                    "mtime_ns": 0})


def receive(tmp_path, data):
    dst = {"checkpoint": str(tmp_path / "ck"), "warm": str(tmp_path / "warm")}
    for d in dst.values():
        os.makedirs(d, exist_ok=True)
    return receive_stream(data.read, lambda m: None, dst, workers=1, warm_on_disk=True)


def test_reference_to_a_page_not_held_is_refused(tmp_path):
    ref = bytes([P.P_WARM]) + P.REF.pack(1, 0x1000)
    with pytest.raises(P.ProtocolError, match="does not hold"):
        receive(tmp_path, v2(pages_entry(), page_chunk(0, ref), P.json_frame(P.T_END, {})))


def test_warm_page_reference_round_trip(tmp_path):
    page = os.urandom(4096)
    mem = P.json_frame(P.T_ENTRY, {"root": "warm", "kind": "mem", "id": 0, "pid": 1, "runs": [[0x1000, 1]]})
    warm = P.chunk_frame(0, 0, "none", 0, 4096, zlib.crc32(page), page, 4096)
    rend = P.json_frame(P.T_ROUND_END, {"round": 1, "files": 1, "bytes": 4096})
    ref = bytes([P.P_WARM]) + P.REF.pack(1, 0x1000)
    final = P.chunk_frame(0, 0, "none", 0, 4096, zlib.crc32(page), b"", 0, ref)
    out = receive(tmp_path, v2(mem, warm, rend, pages_entry(), final, P.json_frame(P.T_END, {"files": 1})))
    assert out["files"] == 1
    assert (tmp_path / "ck" / "pages-1.img").read_bytes() == page


def test_version_1_refuses_pre_copy_frames(tmp_path):
    v1 = P.json_frame(P.T_HELLO, {"version": 1, "roots": ["checkpoint"]})
    ref = bytes([P.P_WARM]) + P.REF.pack(1, 0x1000)
    for tail in (P.json_frame(P.T_ROUND_END, {"round": 1}),
                 P.json_frame(P.T_ENTRY, {"root": "checkpoint", "path": "x", "kind": "delete"}),
                 pages_entry() + page_chunk(0, ref)):
        with pytest.raises(P.ProtocolError):
            receive(tmp_path, io.BytesIO(v1 + tail + P.json_frame(P.T_END, {})))


def test_patch_chunks_strictly_increase(tmp_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "f").write_bytes(b"0" * 100)
    patch = P.json_frame(P.T_ENTRY, {"root": "checkpoint", "path": "f", "kind": "file", "id": 0, "size": 120,
                                     "patch": True, "patch_bytes": 20, "mode": 0o644, "uid": 0, "gid": 0,
                                     "mtime_ns": 0})

    def ch(off, data):
        return P.chunk_frame(0, off, "none", 0, len(data), zlib.crc32(data), data, len(data))
    with pytest.raises(P.ProtocolError, match="patch chunk"):
        receive(tmp_path, v2(patch, ch(50, b"b" * 10), ch(55, b"c" * 10), P.json_frame(P.T_END, {})))
    (tmp_path / "ck" / "f").write_bytes(b"0" * 100)
    receive(tmp_path, v2(patch, ch(10, b"a" * 10), ch(110, b"z" * 10), P.json_frame(P.T_END, {"bytes": 20})))
    assert (tmp_path / "ck" / "f").read_bytes() == b"0" * 10 + b"a" * 10 + b"0" * 80 + bytes(10) + b"z" * 10


def test_warm_store_refuses_persistent_disk(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if fs_type(fd) in ("tmpfs", "ramfs"):
            pytest.skip("tmp_path is on tmpfs here")
        with pytest.raises(P.ProtocolError, match="not tmpfs"):
            WarmStore(fd)
    finally:
        os.close(fd)
    if os.path.isdir("/dev/shm"):
        shm = os.open("/dev/shm", os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert fs_type(shm) == "tmpfs"
        finally:
            os.close(shm)


def test_failed_round_breaks_the_state(tmp_path):
    layer, _vol = make_source(tmp_path)
    dst = dests(tmp_path, ("layer",))
    sess = LocalSession(dst, workers=1, warm_on_disk=True)
    sess.warm_round([("layer", str(layer))])
    os.unlink(os.path.join(dst["layer"], "etc", "small.conf"))  # the target lost it: a patch would fail
    (layer / "etc" / "small.conf").write_bytes(b"x" * (2 * MIB))
    sess.warm.files[("layer", "etc/small.conf")].blocks = []
    with pytest.raises(P.ProtocolError):
        sess.warm_round([("layer", str(layer))])
    assert sess.warm.broken
    with pytest.raises(RuntimeError, match="unusable"):
        sess.warm_round([("layer", str(layer))])
    sess.close()


class CountingWriter:
    """The session's pipe, counting the KEEPALIVE frames that go through it."""

    def __init__(self, inner):
        self.inner, self.beats = inner, 0

    def write(self, data):
        if data == P.frame(P.T_KEEPALIVE, b""):
            self.beats += 1
        return self.inner.write(data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("pipelined", [True, False])
def test_a_round_with_nothing_to_send_for_a_while_keeps_the_receiver_fed(tmp_path, monkeypatch, pipelined):
    """A later warm round re-reads memory and volumes and may find nothing changed for many
    seconds; the receiver's watchdog counts from HELLO: KEEPALIVE frames must cross meanwhile,
    and the session goes on (the receiver accepts them)."""
    from ansible_collections.edgemig.migration.plugins.module_utils.sender import stream_sender
    layer, _vol = make_source(tmp_path)
    dst = dests(tmp_path, ("layer", "checkpoint", "warm"))
    sess = LocalSession(dst, workers=1, warm_on_disk=True)
    sess._writer = CountingWriter(sess._writer)
    sess.warm_round([("layer", str(layer))], stall_timeout=1.0, pipelined=pipelined)
    assert sess._writer.beats == 0                     # data flowed all along
    real = stream_sender.StreamSender._items

    def slow_items(self):
        time.sleep(2.6)                                # 5 beats of 0.5 s with nothing to send (>= 2 asked: load)
        yield from real(self)
    monkeypatch.setattr(stream_sender.StreamSender, "_items", slow_items)
    r2 = sess.warm_round([("layer", str(layer))], stall_timeout=1.0, pipelined=pipelined)
    assert r2["receiver"]["round"] == 2 and sess._writer.beats >= 2
    with sess.keepalive():                             # between rounds (prediction, checkpoint: 0.05 s beats)
        time.sleep(0.5)
    final = sess.stream([("layer", str(layer))], stall_timeout=1.0)
    assert final["receiver"]["ok"] and sess._writer.beats >= 4
    assert snapshot(dst["layer"]) == snapshot(layer)


def test_warm_state_defaults():
    st = WarmState()
    assert st.files == {} and st.pages == {} and not st.started and st.broken is None


def test_every_session_follows_the_warm_session_contract(tmp_path):
    """SshStream, LocalSession and the tests' stand-ins are all precopy.WarmSession, with the same
    defaults: a WarmState from the start (nothing sent yet), the model policy, keepalive() a no-op
    before HELLO."""
    import inspect

    from ansible_collections.edgemig.migration.plugins.module_utils.sender.ssh_stream import HAS_PARAMIKO, SshStream
    sessions = [LocalSession(dests(tmp_path, ("layer",)), workers=1, warm_on_disk=True), ScriptedConn(tmp_path, 0)]
    if HAS_PARAMIKO:   # no connection before open()
        sessions.append(SshStream("0" * 32, host="192.0.2.1", key_file="k", known_hosts="kh"))
    try:
        for sess in sessions:
            assert isinstance(sess, WarmSession), type(sess).__name__
            assert isinstance(sess.warm, WarmState) and not sess.warm.started and sess.warm.rounds == []
            assert inspect.signature(sess.warm_round).parameters["policy"].default == "model"
            with sess.keepalive():
                pass
    finally:
        sessions[0].close()


class ScriptedConn:
    """A stand-in for SshStream: warm rounds whose changes the test scripts."""

    def __init__(self, tmp_path, churn):
        from ansible_collections.edgemig.migration.plugins.module_utils.sender.precopy import WarmState
        self.warm = WarmState()
        self.tmp = tmp_path
        self.churn = churn       # bytes the service rewrites between rounds
        self.calls = 0
        self.kept_alive = 0

    def keepalive(self):
        self.kept_alive += 1
        return contextlib.nullcontext()

    def warm_round(self, roots, memory_pids=None, *, policy="model", **kwargs):
        self.calls += 1
        f = self.tmp / "f.bin"
        sent = f.stat().st_size if self.calls == 1 else self.churn
        with open(f, "r+b") as fh:            # the service keeps writing
            fh.write(os.urandom(self.churn))
        os.utime(f, ns=(self.calls * 10**9, self.calls * 10**9))
        self.warm.files.clear()               # the target holds an older copy: all of f differs
        return {"round": self.calls, "bytes_raw": sent, "bytes_wire": sent, "seconds": sent / 10e6}


def test_warm_up_stops_when_the_final_round_fits_the_budget(tmp_path):
    from ansible_collections.edgemig.migration.plugins.module_utils.sender.precopy import warm_up
    (tmp_path / "f.bin").write_bytes(os.urandom(4 << 20))
    conn = ScriptedConn(tmp_path, churn=1 << 20)
    rep = warm_up(conn, [("layer", str(tmp_path))], None, downtime_target=1.0, max_rounds=4)
    # 4 MiB file, 10 MB/s measured: the whole file (4 MiB) predicted in 0.42 s <= 1 s.
    assert rep["reason"] == "converged" and len(rep["rounds"]) == 1
    assert conn.kept_alive == 1        # the prediction ran with the receiver kept fed
    assert rep["rounds"][0]["predicted_final_bytes"] == 4 << 20 and rep["predicted_final_s"] < 1.0


def test_warm_up_gives_up_when_a_round_does_not_halve_the_rest(tmp_path):
    from ansible_collections.edgemig.migration.plugins.module_utils.sender.precopy import warm_up
    (tmp_path / "f.bin").write_bytes(os.urandom(4 << 20))
    conn = ScriptedConn(tmp_path, churn=1 << 20)
    rep = warm_up(conn, [("layer", str(tmp_path))], None, downtime_target=0.01, max_rounds=5)
    assert rep["reason"].startswith("not converging") and len(rep["rounds"]) == 2
    assert all(r["pause_s"] == 0.0 for r in rep["rounds"])    # reading a running service never pauses it
