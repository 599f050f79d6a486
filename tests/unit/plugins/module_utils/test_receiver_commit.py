# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 12: the target's half of the commit point. After END the receiver answers ``verified``
and restores only on COMMIT; without it (EOF, ABORT, timeout) it keeps the checkpoint and records
``in_doubt``; a failed restore fences the target before the answer. The sender's CommitAcks."""
from __future__ import annotations

import io
import json
import os
import threading
import time

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.common.migration_state import read_state
from ansible_collections.edgemig.migration.plugins.module_utils.docker.switchover import SwitchoverError
from ansible_collections.edgemig.migration.plugins.module_utils.receiver import receiver
from ansible_collections.edgemig.migration.plugins.module_utils.sender.ssh_stream import CommitAcks
from ansible_collections.edgemig.migration.plugins.module_utils.wire import protocol as P

HELLO = P.json_frame(P.T_HELLO, {"version": P.VERSION, "roots": ["layer"]})
END = P.json_frame(P.T_END, {})
COMMIT = P.json_frame(P.T_COMMIT, {"migration": "m1"})


@pytest.fixture
def target(tmp_path, monkeypatch):
    calls = []
    # Docker is not asked here (the restore is a fake): the receiver's DockerReady is a marker,
    # and the fake restore notes whether it was handed that very one.
    monkeypatch.setattr(receiver, "DockerReady", lambda spec: ("ready", spec["name"]))

    def restore(spec, ready=None):
        calls.append(("restore", spec["name"]))
        if ready != ("ready", spec["name"]):
            calls.append(("not ready", ready))
        return {"restore_s": 0.1}
    monkeypatch.setattr(receiver, "restore_and_switch", restore)
    monkeypatch.setattr(receiver, "fence", lambda spec: calls.append(("fence", spec["name"])) or True)
    monkeypatch.setattr(receiver, "give_back_prepared", lambda spec: calls.append(("give back", spec["name"])))
    dest = tmp_path / "dest"
    dest.mkdir()
    spec = {"name": "mysql", "state_dir": str(tmp_path / "dumps"), "migration": "m1"}
    return calls, dest, spec, str(tmp_path / "dumps")


def receive(dest, spec, stdin, timeout=1.0) -> tuple[int, list[dict]]:
    out = io.BytesIO()
    rc = receiver.serve(receiver.Session(roots={"layer": str(dest)}, then_restore=spec, commit_timeout=timeout),
                        stdin=stdin, stdout=out)
    return rc, [json.loads(line) for line in out.getvalue().splitlines()]


def test_commit_then_restore(target):
    calls, dest, spec, dumps = target
    rc, replies = receive(dest, spec, io.BytesIO(HELLO + END + COMMIT))
    assert rc == 0 and calls == [("restore", "mysql")]
    kinds = [next(iter(r)) for r in replies]
    assert any(r.get("verified") for r in replies) and {"committed": True} in replies and replies[-1]["ok"]
    assert kinds.index("committed") > [i for i, r in enumerate(replies) if r.get("verified")][0]
    assert read_state(dumps, "mysql") is None            # serving: no record left


@pytest.mark.parametrize("after_end, why", [(b"", "lost"), (P.json_frame(P.T_ABORT, {"reason": "rollback"}), "abort")])
def test_no_commit_no_restore(target, after_end, why):
    calls, dest, spec, dumps = target
    rc, replies = receive(dest, spec, io.BytesIO(HELLO + END + after_end))
    assert rc == 4 and calls == []
    assert replies[-1]["in_doubt"] and "not restored, checkpoint kept" in replies[-1]["error"]
    rec = read_state(dumps, "mysql")
    assert rec["phase"] == "in_doubt" and rec["role"] == "target" and rec["why"].startswith(why)


def test_commit_wait_is_bounded(target):
    """A dropped link leaves stdin open: the wait for COMMIT ends on its timer."""
    calls, dest, spec, dumps = target
    rfd, wfd = os.pipe()
    os.write(wfd, HELLO + END)
    t0 = time.monotonic()
    with os.fdopen(rfd, "rb") as stdin:
        rc, replies = receive(dest, spec, stdin, timeout=0.5)
        os.close(wfd)  # only now: the commit reader still waits on it (closing ours first would block)
    assert rc == 4 and calls == [] and time.monotonic() - t0 < 5
    assert "timeout" in read_state(dumps, "mysql")["why"]


def test_failed_restore_fences_before_answering(target, monkeypatch):
    calls, dest, spec, dumps = target

    def broken(spec, ready=None):
        calls.append(("restore", spec["name"]))
        raise SwitchoverError("'mysql' was restored but its health check failed: exit 1")
    monkeypatch.setattr(receiver, "restore_and_switch", broken)
    rc, replies = receive(dest, spec, io.BytesIO(HELLO + END + COMMIT))
    assert rc == 1 and calls == [("restore", "mysql"), ("fence", "mysql")]
    assert replies[-1]["fenced"] is True and "health check failed" in replies[-1]["error"]
    assert read_state(dumps, "mysql")["phase"] == "fenced"


def test_a_gone_sender_does_not_stop_a_committed_restore(target):
    """Past COMMIT the replies go nowhere (session killed): the restore happens anyway."""
    calls, dest, spec, _dumps = target

    class Gone(io.BytesIO):
        def write(self, data):
            if b"committed" in data or b"ok" in data:
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(data)
    rc = receiver.serve(receiver.Session(roots={"layer": str(dest)}, then_restore=spec),
                        stdin=io.BytesIO(HELLO + END + COMMIT), stdout=Gone())
    assert rc == 0 and calls == [("restore", "mysql")]


def test_commit_frame_mid_stream_is_refused(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    out = io.BytesIO()
    rc = receiver.serve(receiver.Session(roots={"layer": str(dest)}), stdin=io.BytesIO(HELLO + COMMIT + END), stdout=out)
    assert rc == 1 and "unexpected frame type 16" in out.getvalue().decode()


def test_commit_acks_end_the_stream_at_verified_and_wait_for_the_final_answer():
    acks = CommitAcks(two_phase=True)
    acks.feed_line(b'{"ack": 10}')
    assert not acks.done.is_set()
    acks.feed_line(b'{"ack": 20, "verified": true}')
    assert acks.done.is_set() and acks.verified.is_set() and not acks.final.is_set() and acks.acked == 20
    heard = acks.heard
    time.sleep(0.01)
    acks.feed_line(b'{"restoring": 2.0}')
    assert acks.heard > heard and not acks.final.is_set()
    acks.feed_line(b'{"error": "x", "fenced": true}')
    assert acks.final.is_set() and acks.final_msg["fenced"]
    one = CommitAcks(two_phase=False)
    one.feed_line(b'{"ack": 20, "verified": true}')
    assert not one.done.is_set()                        # checkpoint_transfer: waits for ok as before
    one.eof()
    assert one.final.is_set() and one.closed


def test_outcome_is_bounded_by_silence():
    from ansible_collections.edgemig.migration.plugins.module_utils.sender import ssh_stream
    s = ssh_stream.SshStream.__new__(ssh_stream.SshStream)
    s.host, s.acks = "10.213.0.12", CommitAcks(True)
    t0 = time.monotonic()
    with pytest.raises(ssh_stream.OutcomeUnknown, match="silent"):
        s.outcome(limit=30, silence=0.3)
    assert time.monotonic() - t0 < 2
    s.acks = CommitAcks(True)
    threading.Timer(0.1, s.acks.feed_line, args=(b'{"ok": true, "switchover": {}}',)).start()
    assert s.outcome(limit=5, silence=1)["ok"]
    s.acks = CommitAcks(True)
    s.acks.eof()
    with pytest.raises(ssh_stream.OutcomeUnknown, match="closed the channel"):
        s.outcome(limit=5, silence=1)


def test_a_stream_that_ends_before_verified_gives_back_the_prepared_container(target):
    """The sender gone before END (a parked move whose controller died, its edge rebooted): the
    container prepared for this ticket goes; at or after verified it is kept (in doubt, or restored)."""
    calls, dest, spec, _dumps = target
    rc, replies = receive(dest, spec, io.BytesIO(HELLO))
    assert rc == 1 and calls == [("give back", "mysql")] and "error" in replies[-1]
    calls.clear()
    rc, _replies = receive(dest, spec, io.BytesIO(HELLO + END))          # verified, then no COMMIT
    assert rc == 4 and calls == []
