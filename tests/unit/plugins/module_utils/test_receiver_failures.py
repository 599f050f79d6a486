# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 12: a receiver-side failure reaches the sender at once, with its cause;
the receiver's idle watchdog does not count the time before HELLO; the
receiver refuses at start what would only fail after the freeze."""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import subprocess
import threading
import time
import zlib

import pytest
from local_stream import send_local
from receiver_harness import install, popen

from ansible_collections.edgemig.migration.plugins.module_utils.receiver import receiver
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.receiver import (
    IdleWatchdog,
    Session,
    check_interface,
    serve,
)
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.tree_writer import TreeWriter
from ansible_collections.edgemig.migration.plugins.module_utils.sender import stream_sender
from ansible_collections.edgemig.migration.plugins.module_utils.wire import protocol as P

STALL = 30.0  # the sender's stall timeout in these tests: the error must come long before it


def big_tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(6 << 20))
    dest = tmp_path / "dest"
    dest.mkdir()
    return src, dest


def throttled_send(src, dest, **kw):
    """A sender that waits for acks after 64 KiB in flight (it is throttled when the writer stops)."""
    t0 = time.monotonic()
    with pytest.raises(P.ProtocolError) as info:
        send_local([("layer", str(src))], {"layer": str(dest)}, policy="fixed:none:0", workers=2,
                   chunk_size=64 << 10, min_inflight=64 << 10, stall_timeout=STALL, **kw)
    return str(info.value), time.monotonic() - t0


@contextlib.contextmanager
def installed_receiver(tmp_path, dest, stall_timeout: float):
    """The real receiver, as a target runs it: installed launcher, its own process, pipes."""
    inst = install(str(tmp_path / "host"), allowed=[str(os.path.dirname(dest))])
    # The ticket's stall timeout is the sender's: the receiver waits twice as long.
    tid = inst.issue({"layer": str(dest)}, stall_timeout=stall_timeout / 2)
    proc = popen(inst, inst.request(tid), cwd=str(tmp_path))
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()


def exit_and_replies(proc: subprocess.Popen) -> tuple[int, list[dict]]:
    rc = proc.wait(timeout=20)
    return rc, [json.loads(line) for line in proc.stdout.read().splitlines()]


def test_write_error_reaches_a_throttled_sender_at_once(tmp_path, monkeypatch):
    src, dest = big_tree(tmp_path)
    real = TreeWriter.chunk
    calls = [0]

    def chunk(self, ch, literal):
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, ch, literal)
    monkeypatch.setattr(TreeWriter, "chunk", chunk)
    msg, took = throttled_send(src, dest)
    assert "No space left on device" in msg and "stalled" not in msg, msg
    assert took < 5, f"the sender needed {took:.1f} s to learn of the receiver's failure"


def test_bad_crc_reaches_a_throttled_sender_at_once(tmp_path):
    src, dest = big_tree(tmp_path)
    count = [0]

    def flip(ch):
        count[0] += 1
        if count[0] == 4:
            data = bytearray(ch["data"])
            data[0] ^= 0xFF
            ch["data"] = bytes(data)
    msg, took = throttled_send(src, dest, corrupt_hook=flip)
    assert "checksum mismatch" in msg and "stalled" not in msg, msg
    assert took < 5


def test_receiver_process_answers_and_exits_while_the_sender_keeps_the_stream_open(tmp_path):
    """The real receiver (the installed launcher): a bad chunk -> one error line and exit, stdin still open."""
    dest = tmp_path / "dest"
    dest.mkdir()
    raw = b"x" * 8192
    frames = (P.json_frame(P.T_HELLO, {"version": P.VERSION, "roots": ["layer"]})
              + P.json_frame(P.T_ENTRY, {"root": "layer", "path": "f", "kind": "file", "id": 0,
                                         "size": 3 * len(raw), "mode": 0o644, "mtime_ns": 0})
              + P.chunk_frame(0, 0, "none", 0, len(raw), zlib.crc32(raw) ^ 1, raw, len(raw)))
    with installed_receiver(tmp_path, dest, stall_timeout=60) as proc:
        proc.stdin.write(frames)
        proc.stdin.flush()  # and keep it open: the sender is waiting for an ack
        rc, lines = exit_and_replies(proc)
    assert rc == 1
    errors = [m["error"] for m in lines if "error" in m]
    assert len(errors) == 1 and "checksum mismatch" in errors[0], lines


def test_in_process_receiver_answers_the_error_once(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    raw = b"y" * 100
    data = (P.json_frame(P.T_HELLO, {"version": P.VERSION, "roots": ["layer"]})
            + P.json_frame(P.T_ENTRY, {"root": "layer", "path": "f", "kind": "file", "id": 0, "size": 100})
            + P.chunk_frame(0, 0, "none", 0, 100, zlib.crc32(raw) ^ 1, raw, 100)
            + P.json_frame(P.T_END, {}))
    out = io.BytesIO()
    assert serve(Session(roots={"layer": str(dest)}), stdin=io.BytesIO(data), stdout=out) == 1
    errors = [json.loads(line)["error"] for line in out.getvalue().splitlines() if b"error" in line]
    assert len(errors) == 1 and "checksum mismatch" in errors[0]


# -- idle watchdog: HELLO starts the clock ------------------------------------
def _watch(timeout, start_timeout, progress=lambda: 0):
    fired: list[tuple[str, float]] = []
    done = threading.Event()
    t0 = time.monotonic()

    def on_stall(phase):
        fired.append((phase, time.monotonic() - t0))
        done.set()
    return IdleWatchdog(timeout, progress, on_stall, start_timeout=start_timeout), fired, done


def test_watchdog_does_not_count_the_checkpoint_before_hello():
    wd, fired, done = _watch(0.2, 0.0)
    try:
        assert not done.wait(0.8), f"fired before HELLO: {fired}"  # 4x the idle bound, no HELLO yet
        wd.start()
        assert done.wait(2.0)
        assert fired[0][0] == "idle" and fired[0][1] >= 0.8 + 0.2
    finally:
        wd.stop.set()


def test_watchdog_progress_after_hello_keeps_it_quiet():
    count = [0]

    def progress():
        count[0] += 1
        return count[0]
    wd, fired, done = _watch(0.2, 0.0, progress)
    try:
        wd.start()
        assert not done.wait(0.8), fired
    finally:
        wd.stop.set()


def test_watchdog_has_its_own_bound_before_hello():
    wd, fired, done = _watch(5.0, 0.3)
    try:
        assert done.wait(3.0)
        assert fired[0][0] == "hello"
    finally:
        wd.stop.set()


def test_keepalive_frames_hold_a_precopy_session_that_silence_ends(tmp_path):
    """The chaos soak's three unfaulted failures: the sender predicted the final round
    for longer than the receiver's 2 x stall_timeout, sending nothing, and the
    receiver gave up on a healthy session. KEEPALIVE frames feed its watchdog;
    when they stop, the watchdog still ends a session whose sender went silent."""
    dest = tmp_path / "dest"
    dest.mkdir()
    with installed_receiver(tmp_path, dest, stall_timeout=1.0) as proc:
        def send(data: bytes) -> None:
            proc.stdin.write(data)
            proc.stdin.flush()
        send(P.json_frame(P.T_HELLO, {"version": P.VERSION, "roots": ["layer"], "precopy": True}))
        with stream_sender.keepalive(send, 0.1):
            time.sleep(3.0)                     # 3 x the receiver's idle bound, 30 beats
        assert proc.poll() is None, proc.stdout.read()
        t_quiet = time.monotonic()
        rc, lines = exit_and_replies(proc)      # now silence: the watchdog fires
        waited = time.monotonic() - t_quiet
    assert rc == 3 and waited >= 0.9, (rc, waited)
    assert any("got no data for 1 s" in m.get("error", "") for m in lines), lines


def test_keepalive_is_refused_outside_a_precopy_session_and_must_be_empty(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    for version, beat, want in ((P.BASE_VERSION, P.frame(P.T_KEEPALIVE, b""), "unexpected frame type 8"),
                                (P.VERSION, P.frame(P.T_KEEPALIVE, b"x"), "KEEPALIVE frame of 1 bytes")):
        data = (P.json_frame(P.T_HELLO, {"version": version, "roots": ["layer"]}) + beat
                + P.json_frame(P.T_END, {}))
        out = io.BytesIO()
        assert serve(Session(roots={"layer": str(dest)}), stdin=io.BytesIO(data), stdout=out) == 1
        assert want in json.loads(out.getvalue().splitlines()[-1])["error"]


# -- pre-checks at the receiver's start (before the source freezes) -----------
def test_receiver_refuses_a_missing_target_interface_before_the_stream(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    spec = {"name": "apache", "checkpoint": "edgemig", "address": "10.213.0.101", "interface": "nosuch0"}
    out = io.BytesIO()
    inst = install(str(tmp_path / "host"))
    ckpt = os.path.join(inst.dump_dir, "apache.restore", "edgemig")
    os.makedirs(ckpt)
    tid = inst.issue({"checkpoint": ckpt}, service="apache",
                     restore={**spec, "container_id": "c" * 64})
    rc = receiver.main({"expect_version": "x", "ticket": tid, "commit": True},
                       {"dump_dir": inst.dump_dir, "allowed_roots": inst.allowed}, stdin=io.BytesIO(b""), stdout=out)
    assert rc == 3
    msg = json.loads(out.getvalue().splitlines()[-1])["error"]
    assert "'nosuch0'" in msg and "target.interface" in msg


def test_check_interface():
    check_interface({"address": "10.0.0.1", "interface": "lo"})
    check_interface({"address": None, "interface": "nosuch0"})  # no address moves: nothing to check
    with pytest.raises(P.ProtocolError, match="does not exist"):
        check_interface({"address": "10.0.0.1", "interface": "nosuch0"})
