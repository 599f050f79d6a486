# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 12: the migration driver's phases, its one rollback, the commit point, and the
recovery's decision table - with a fake Docker (the source) and a fake link + target.

The property every scenario ends with: exactly one side believes it serves
(after the recovery, for the cases where the driver cannot know).
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import pytest
from fakes import CriuDocker, container

from ansible_collections.edgemig.migration.plugins.module_utils.common import timeouts
from ansible_collections.edgemig.migration.plugins.module_utils.common.migration_state import (
    read_held,
    read_state,
    write_held,
    write_state,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.checkpoint import (
    CheckpointError,
    RestartPolicyError,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.driver import migration_driver as drv, park, recovery
from ansible_collections.edgemig.migration.plugins.module_utils.sender.precopy import WarmState
from ansible_collections.edgemig.migration.plugins.module_utils.sender.ssh_stream import (
    OutcomeUnknown,
    SshStream,
    TransferError,
)


class Target:
    """What the target believes, driven by what reaches it (the receiver's rules)."""

    def __init__(self):
        self.phase = "prepared"     # -> verified -> in_doubt | committed -> serving | fenced
        self.serving = False
        self.has_checkpoint = False


class Link:
    """A fake SshStream to ``Target``; ``fault`` picks where it breaks.

    open | stream | stream_crash | verified_lost | commit_lost | final_lost | restore_fails | unfenced
    """

    def __init__(self, target: Target, fault: str | None):
        self.target, self.fault = target, fault
        self.connect_s, self.closed, self.aborted, self.sent_commit = 0.01, False, None, False

    def __call__(self, dest, **kw):   # used as the stream factory
        self.dest, self.kw = dest, kw
        return self

    def open(self):
        if self.fault == "open":
            raise TransferError("cannot reach 10.213.0.12:22")
        return self

    def stream(self, roots, **kw):
        if self.fault == "stream":
            raise TransferError("transfer stalled: the receiver acknowledged nothing for 8 s")
        if self.fault == "stream_crash":
            raise KeyError("bug in the stream")      # not a TransferError: must roll back all the same
        self.target.phase, self.target.has_checkpoint = "verified", True
        if self.fault == "verified_lost":
            # The receiver said verified; the sender never heard it (link down).
            self.target.phase = "in_doubt"
            raise TransferError("receiver did not confirm the stream in time")
        return {"bytes_raw": 4096, "receiver": None, "timeline": []}

    def commit(self, migration=""):
        self.sent_commit = True
        if self.fault == "commit_lost":
            self.target.phase = "in_doubt"        # no COMMIT came: checkpoint kept, not restored
            return
        self.target.phase = "committed"
        if self.fault in ("restore_fails", "unfenced"):
            self.target.phase = "fenced" if self.fault == "restore_fails" else "committed"
            return
        self.target.phase, self.target.serving = "serving", True

    def abort(self, reason):
        self.aborted = reason
        if self.target.phase == "verified":
            self.target.phase = "in_doubt"

    def outcome(self, limit, silence):
        assert limit <= timeouts.RESTORE_TIMEOUT_S + 60 and silence <= 60, "every wait after COMMIT is bounded"
        if self.fault in ("commit_lost", "final_lost"):
            raise OutcomeUnknown("receiver silent for 16 s after COMMIT (link or session lost)")
        if self.fault == "restore_fails":
            err = TransferError("receiver failed: 'mysql' was restored but its health check failed")
            err.fenced = True
            raise err
        if self.fault == "unfenced":
            raise TransferError("receiver failed: restore failed and fencing failed")
        return {"ok": True, "switchover": {"restore_s": 0.1, "health_s": 0.1, "switch_s": 0.01}}

    def keepalive(self):
        return contextlib.nullcontext()

    def close(self):
        self.closed = True


@pytest.fixture
def world(monkeypatch, tmp_path):
    addr = {"source": True}
    # The driver takes the address off; the rollback (recovery.bring_up) puts it back.
    for owner in (drv, recovery):
        monkeypatch.setattr(owner, "set_address", lambda iface, a, present, *x, **kw: addr.update(source=present))
    monkeypatch.setattr(drv, "interface_exists", lambda name: True)
    (tmp_path / "docker").mkdir()
    api = CriuDocker(containers={"mysql": container("mysql")}, info={"DockerRootDir": str(tmp_path / "docker")})
    api.container_dir("mysql")
    return api, addr, tmp_path


def params(tmp_path, **kw):
    return dict({"name": "mysql", "dump_dir": str(tmp_path / "dumps"), "checkpoint": "edgemig",
                 "target": {"host": "10.213.0.12", "name": "edge2", "ticket": "t-0123", "checkpoint_dir": "/t/ck",
                            "upper_dir": "/t/up", "dump_dir": "/t/dumps", "interface": "eth0"},
                 "address": "10.213.0.102", "interface": "eth0", "health": None, "policy": "model",
                 "dedup": True, "pipelined": True, "stall_timeout": 8}, **kw)


def run(api, tmp_path, fault, target=None, **kw):
    target = target or Target()
    link = Link(target, fault)
    d = drv.MigrationDriver(api, params(tmp_path), stream_factory=link, poke=lambda *a: 1, **kw)
    try:
        return d, link, target, d.run(), None
    except drv.MigrationFailed as exc:
        return d, link, target, None, exc


def source_serves(api, addr) -> bool:
    return "mysql" in api.containers and api.containers["mysql"]["State"]["Running"] and addr["source"]


def test_success_walks_every_phase(world):
    api, addr, tmp_path = world
    d, link, target, res, exc = run(api, tmp_path, None)
    assert exc is None and d.phase == "cleaned" and link.sent_commit and link.closed
    assert target.serving and not source_serves(api, addr)
    # the stopped source copy is gone once the target serves
    assert "mysql" not in api.containers and res["source_removed"] is True
    assert {"checkpoint_s", "connect_s", "downtime_s", "transfer_s", "restore_s", "health_s",
            "switch_s"} <= set(res["durations"])
    assert res["clients_reset"] == 0 and res["stats"]["receiver"]["ok"]
    assert read_state(str(tmp_path / "dumps"), "mysql") is None
    assert os.listdir(tmp_path / "dumps") == [".edgemig-state"]


def test_criu_share_of_the_restore_is_reported_apart_from_the_stages(world):
    api, _addr, tmp_path = world

    class CriuLink(Link):
        def outcome(self, limit, silence):
            out = super().outcome(limit, silence)
            out["switchover"]["criu_restore"] = {"restore_s": 0.06, "total_s": 0.08, "pages_restored": 12}
            return out
    link = CriuLink(Target(), None)
    res = drv.MigrationDriver(api, params(tmp_path), stream_factory=link, poke=lambda *a: 1,
                              clock=lambda: 10.0).run()
    dur = res["durations"]
    assert dur["criu_restore_s"] == 0.08 and dur["criu_restore_stage_s"] == 0.06
    # transfer = time after the freeze less restore + health + switch (0.21 s of a stopped clock);
    # CRIU's share lies inside restore_s and is not taken off twice
    assert dur["transfer_s"] == -0.21


def test_commit_is_recorded_before_commit_is_sent(world, monkeypatch):
    api, _addr, tmp_path = world
    seen = []
    real = Link.commit

    def commit(self, migration=""):
        seen.append(read_state(str(tmp_path / "dumps"), "mysql")["phase"])
        real(self, migration)
    monkeypatch.setattr(Link, "commit", commit)
    run(api, tmp_path, None)
    assert seen == ["committed"]


@pytest.mark.parametrize("fault, phase, how", [
    ("open", "prepare", "not_needed"),
    ("stream", "stream", "checkpoint"),
    ("stream_crash", "stream", "checkpoint"),
    ("verified_lost", "stream", "checkpoint"),
    ("restore_fails", "committed", "checkpoint"),
])
def test_failures_the_source_wins(world, fault, phase, how):
    api, addr, tmp_path = world
    _d, link, target, _res, exc = run(api, tmp_path, fault)
    assert exc is not None and exc.result["phase"] == phase and exc.result["rolled_back"] == how, exc
    assert source_serves(api, addr) and not target.serving
    assert read_state(str(tmp_path / "dumps"), "mysql") is None      # source serves: nothing in doubt
    if how == "checkpoint":
        # Restored from its dump on the tmpfs, through Docker's own dir; then every image is gone.
        assert api.restored_from == [["pages-1.img"]]
        assert os.listdir(tmp_path / "dumps") == [".edgemig-state"]
        assert os.listdir(tmp_path / "docker" / "containers" / api.containers["mysql"]["Id"]) == []
    if fault == "restore_fails":
        assert "fenced itself" in str(exc)


def test_freeze_failures_roll_back_whatever_the_exception(world, monkeypatch):
    api, addr, tmp_path = world

    def broken(api_, name, *a, **kw):
        api_.containers[name]["State"]["Running"] = False        # frozen, then something unexpected
        raise RuntimeError("unexpected")
    monkeypatch.setattr(drv, "create", broken)
    _d, _link, target, _res, exc = run(api, tmp_path, None)
    assert exc.result["rolled_back"] == "fresh_start" and exc.result["phase"] == "freeze"
    assert source_serves(api, addr) and not target.serving


def test_checkpoint_error_keeps_the_service_running(world, monkeypatch):
    api, addr, tmp_path = world
    monkeypatch.setattr(drv, "create", lambda *a, **kw: (_x for _x in ()).throw(CheckpointError("criu says no")))
    _d, link, _target, _res, exc = run(api, tmp_path, None)
    assert exc.result["rolled_back"] == "not_needed" and "criu says no" in str(exc) and link.closed
    assert source_serves(api, addr)


def test_failure_between_verified_and_commit_aborts_the_receiver(world, monkeypatch):
    """The commit record cannot be written: before the commit point, so the source wins and the
    receiver is told not to restore (ABORT), instead of waiting for a COMMIT that never comes."""
    api, addr, tmp_path = world
    real = drv.MigrationDriver._record

    def record(self, phase, **kw):
        if phase == "committed":
            raise OSError(28, "No space left on device")
        real(self, phase, **kw)
    monkeypatch.setattr(drv.MigrationDriver, "_record", record)
    _d, link, target, _res, exc = run(api, tmp_path, None)
    assert exc.result["phase"] == "verified" and link.aborted and not link.sent_commit
    assert source_serves(api, addr) and not target.serving and target.phase == "in_doubt"


@pytest.mark.parametrize("fault", ["commit_lost", "final_lost", "unfenced"])
def test_after_the_commit_point_the_source_never_rolls_back(world, fault):
    api, addr, tmp_path = world
    _d, _link, target, _res, exc = run(api, tmp_path, fault)
    assert exc.result["rolled_back"] == "no" and exc.result["outcome"] == "unknown"
    assert not source_serves(api, addr)
    rec = read_state(str(tmp_path / "dumps"), "mysql")
    assert rec["phase"] == "committed" and rec["target_name"] == "edge2" and os.path.isdir(rec["checkpoint_dir"])
    # The recovery then decides on what each edge reports.
    src_facts = {"record": rec, "exists": True, "running": False, "has_checkpoint": False,
                 "checkpoint": rec["checkpoint_dir"], "address_here": False}
    tgt_facts = {"record": {"role": "target", "phase": target.phase}, "exists": target.phase != "fenced",
                 "running": target.serving, "has_checkpoint": target.has_checkpoint and target.phase != "fenced",
                 "checkpoint": None, "address_here": target.serving}
    decision = recovery.decide({"edge1": src_facts, "edge2": tgt_facts})
    assert decision["winner"] == "edge2" and decision["complete"]
    assert decision["actions"] == {"edge1": "stop", "edge2": "serve"}   # removed once edge2 serves
    serving = [target.serving or decision["actions"]["edge2"] == "serve",
               source_serves(api, addr) or decision["actions"]["edge1"] == "serve"]
    assert serving.count(True) == 1


def test_bounded_waits(world):
    api, _addr, tmp_path = world
    waits = {}

    class Timed(Link):
        def stream(self, roots, **kw):
            waits["stream"] = kw["timeout"]
            return super().stream(roots, **kw)

        def outcome(self, limit, silence):
            waits["outcome"] = (limit, silence)
            return super().outcome(limit, silence)
    target = Target()
    d = drv.MigrationDriver(api, params(tmp_path), stream_factory=Timed(target, None), poke=lambda *a: 0)
    d.run()
    assert waits["stream"] == 60.0 and waits["outcome"] == (timeouts.RESTORE_TIMEOUT_S + 30 + 30, 16.0)


def test_the_sender_names_the_ticket_and_nothing_of_the_targets_side(world):
    """Target faults travel in the ticket the controller had the target write, never from the sender."""
    api, _addr, tmp_path = world
    faults = drv.read_faults({"EDGEMIG_FAULTS": '{"health": true, "pause_restore": 4}'})
    target = Target()
    link = Link(target, None)
    drv.MigrationDriver(api, params(tmp_path), faults, stream_factory=link, poke=lambda *a: 0).run()
    assert link.dest == "t-0123" and link.kw["commit"] is True
    assert set(link.kw) == {"host", "port", "user", "key_file", "known_hosts", "receiver_dir", "commit",
                            "stall_timeout", "link_share"}
    with pytest.raises(ValueError):
        drv.read_faults({"EDGEMIG_FAULTS": '{"bogus": 1}'})


# ---------------------------------------------------------------- recovery decision table
def facts(record=None, exists=True, running=False, ckpt=False, src_ckpt=None, addr=False, held=None):
    return {"record": record, "exists": exists, "running": running, "has_checkpoint": ckpt,
            "checkpoint": src_ckpt, "address_here": addr, "held": held}


HELD = {"service": "mysql", "container": "mysql-id", "restart_policy": {"Name": "always", "MaximumRetryCount": 0}}


SRC_COMMITTED = {"role": "source", "phase": "committed", "target_name": "edge2"}
SRC_FROZEN = {"role": "source", "phase": "frozen"}
TGT_IN_DOUBT = {"role": "target", "phase": "in_doubt"}
TGT_COMMITTED = {"role": "target", "phase": "committed"}
TGT_FENCED = {"role": "target", "phase": "fenced"}


@pytest.mark.parametrize("e1, e2, winner, actions, complete", [
    # committed: the target wins, running or restored from the checkpoint it kept
    # (the source only stops: it is removed once the target serves)
    (facts(SRC_COMMITTED, src_ckpt="/d"), facts(running=True, addr=True), "edge2",
     {"edge1": "stop", "edge2": "serve"}, True),
    (facts(SRC_COMMITTED, src_ckpt="/d"), facts(TGT_IN_DOUBT, ckpt=True), "edge2",
     {"edge1": "stop", "edge2": "serve"}, True),
    # committed, but the target fenced itself (or holds nothing): the source wins back
    (facts(SRC_COMMITTED, src_ckpt="/d"), facts(TGT_FENCED, exists=False), "edge1",
     {"edge1": "serve", "edge2": "stand_down"}, True),
    # committed, target unreachable: the source stops (keeps its copy), the rest waits
    (facts(SRC_COMMITTED, src_ckpt="/d"), None, "edge2", {"edge1": "stop", "edge2": "wait"}, False),
    # never committed: the source wins, the target copy goes (even holding a checkpoint)
    (facts(SRC_FROZEN, src_ckpt="/d"), facts(TGT_IN_DOUBT, ckpt=True), "edge1",
     {"edge1": "serve", "edge2": "stand_down"}, True),
    (facts(SRC_FROZEN), None, "edge1", {"edge1": "serve", "edge2": "wait"}, False),
    # source unreachable: a target that received COMMIT wins; one in doubt waits
    (None, facts(TGT_COMMITTED, running=True), "edge2", {"edge1": "wait", "edge2": "serve"}, False),
    (None, facts(TGT_IN_DOUBT, ckpt=True), None, {"edge1": "none", "edge2": "none"}, False),
    # no record at all: the one running copy stays, leftovers go
    (facts(running=True, addr=True), facts(), "edge1", {"edge1": "serve", "edge2": "stand_down"}, True),
    (facts(running=True), facts(exists=False), "edge1", {"edge1": "serve", "edge2": "none"}, True),
    (facts(running=True), facts(running=True), None, {"edge1": "none", "edge2": "none"}, False),
    (facts(exists=False), facts(exists=False), None, {"edge1": "none", "edge2": "none"}, True),
    # a copy a checkpoint stopped (held record) and no record left (the reboot emptied the tmpfs):
    # it serves again when nothing runs anywhere and no target got COMMIT ...
    (facts(held=HELD), facts(), "edge1", {"edge1": "serve", "edge2": "stand_down"}, True),
    (facts(held=HELD), facts(exists=False), "edge1", {"edge1": "serve", "edge2": "none"}, True),
    (facts(held=HELD), facts(TGT_IN_DOUBT, ckpt=True), "edge1", {"edge1": "serve", "edge2": "stand_down"}, True),
    # ... never while an edge that may serve is unseen ...
    (facts(held=HELD), None, None, {"edge1": "none", "edge2": "none"}, False),
    # ... and a copy that runs, or a target that got COMMIT, wins: the held copy goes
    (facts(held=HELD), facts(running=True, addr=True), "edge2", {"edge1": "stand_down", "edge2": "serve"}, True),
    (facts(held=HELD), facts(TGT_COMMITTED), "edge2", {"edge1": "stand_down", "edge2": "serve"}, True),
    # a held copy that runs (its give-back was refused) serves: the policy comes back
    (facts(running=True, held=HELD), facts(exists=False), "edge1", {"edge1": "serve", "edge2": "none"}, True),
    # held with a record that survived (no reboot): the record decides, as before
    (facts(SRC_FROZEN, held=HELD), facts(TGT_IN_DOUBT, ckpt=True), "edge1",
     {"edge1": "serve", "edge2": "stand_down"}, True),
    (facts(SRC_COMMITTED, held=HELD), facts(running=True), "edge2", {"edge1": "stop", "edge2": "serve"}, True),
    # two stopped held copies: not guessed
    (facts(held=HELD), facts(held=HELD), None, {"edge1": "none", "edge2": "none"}, False),
])
def test_recovery_decision_table(e1, e2, winner, actions, complete):
    decision = recovery.decide({"edge1": e1, "edge2": e2})
    assert (decision["winner"], decision["actions"], decision["complete"]) == (winner, actions, complete), decision
    assert list(decision["actions"].values()).count("serve") <= 1


def test_never_removes_a_copy_past_the_commit_point():
    """Whatever the target reports, with a committed source record a target that runs or holds the
    checkpoint is never stood down."""
    for running in (False, True):
        for record in (None, TGT_IN_DOUBT, TGT_COMMITTED):
            d = recovery.decide({"edge1": facts(SRC_COMMITTED), "edge2": facts(record, running=running, ckpt=True)})
            assert d["actions"]["edge2"] == "serve", d


PARKED_NOTE = {"service": "mysql", "pid": 4242, "started": 99, "target": "edge2", "job": "/tmp/edgemig-job-1"}


def test_a_parked_migration_is_left_alone():
    """Parked: the source runs, the target holds the container its prepare made (never started), no
    record anywhere. The recovery of a run beside it must not stand that target down under it."""
    src = {**facts(running=True, addr=True), "parked": PARKED_NOTE}
    d = recovery.decide({"edge1": src, "edge2": facts()})
    assert d["parked"] == "edge1" and d["winner"] is None and d["complete"] is True
    assert d["actions"] == {"edge1": "none", "edge2": "none"}
    assert "parked on edge1 (to edge2)" in d["reason"] and "nothing to recover" in d["reason"]
    # Without the note (the module gone: read_parked says None) the one running copy stays, as before.
    d = recovery.decide({"edge1": {**src, "parked": None}, "edge2": facts()})
    assert (d["winner"], d["actions"]) == ("edge1", {"edge1": "serve", "edge2": "stand_down"})
    # A record beside a note (a later migration's): the record decides.
    d = recovery.decide({"edge1": {**facts(SRC_FROZEN), "parked": PARKED_NOTE}, "edge2": facts(TGT_IN_DOUBT, ckpt=True)})
    assert "parked" not in d and d["winner"] == "edge1"


def test_the_park_notes_itself_for_the_recovery_and_takes_the_note_away(parked):
    api, _addr, tmp_path, gate, _froze = parked
    link = WarmLink(Target())
    dumps = str(tmp_path / "dumps")
    seen = []

    def ready():
        note = recovery.read_parked(dumps, "mysql")
        if note:
            seen.append(note)
        return bool(note)
    t = release_when(gate, "nogo", ready)
    res = drv.MigrationDriver(api, park_params(tmp_path, gate), stream_factory=link, poke=lambda *a: 1).run()
    t.join()
    assert res["parked"]["released"] is False and seen
    assert seen[0]["pid"] == os.getpid() and seen[0]["job"] == str(gate)
    assert recovery.read_parked(dumps, "mysql") is None and not os.listdir(os.path.join(dumps, ".edgemig-state"))
    assert recovery.local_facts(api, "mysql", dumps)["parked"] is None


def test_a_park_note_counts_only_while_the_process_that_wrote_it_runs(tmp_path):
    from ansible_collections.edgemig.migration.plugins.module_utils.common import migration_state as ms
    dumps = str(tmp_path)
    note = ms.write_parked(dumps, "mysql", target="edge2")
    assert ms.read_parked(dumps, "mysql") == note and note["started"] == ms.process_start(os.getpid())
    assert ms.parked_path(dumps, "mysql") != ms.state_path(dumps, "mysql")
    assert ms.read_state(dumps, "mysql") is None                       # a note is no record
    # Another process under the same pid (started at another time), a pid gone, or a note that is
    # not one: no parked migration.
    for bad in ({**note, "started": note["started"] + 1}, {**note, "pid": 2 ** 22 + 1}, {**note, "pid": True},
                {**note, "started": None}, []):
        with open(ms.parked_path(dumps, "mysql"), "w") as fh:
            json.dump(bad, fh)
        assert ms.read_parked(dumps, "mysql") is None, bad
    ms.clear_parked(dumps, "mysql")
    ms.clear_parked(dumps, "mysql")                                    # twice: nothing there, no error
    assert ms.read_parked(dumps, "mysql") is None


def test_bring_up_and_stand_down(world, tmp_path):
    api, addr, _tmp = world
    api.containers["mysql"]["State"]["Running"] = False
    ck = tmp_path / "dumps" / "w" / "edgemig"
    ck.mkdir(parents=True)
    (ck / "pages-1.img").write_bytes(b"x")
    assert recovery.bring_up(api, "mysql", str(ck), address="10.213.0.102", interface="eth0") == "checkpoint"
    assert addr["source"] and api.containers["mysql"]["State"]["Running"]
    assert api.restored_from == [["pages-1.img"]] and not ck.exists()
    assert recovery.bring_up(api, "mysql", str(ck)) == "not_needed"
    assert recovery.stand_down(api, "mysql", address="10.213.0.102", interface="eth0", remove=False) == \
        ["container stopped"] and not addr["source"]
    assert recovery.bring_up(api, "mysql", str(ck)) == "fresh_start"      # its images are gone: started fresh
    assert recovery.stand_down(api, "mysql") == ["container removed"] and "mysql" not in api.containers
    with pytest.raises(drv.DockerAPIError):
        recovery.bring_up(api, "mysql", str(ck))


def test_local_facts_reads_the_record_and_the_kept_checkpoint(world, tmp_path):
    api, _addr, _tmp = world
    dumps = str(tmp_path / "dumps")
    ck = tmp_path / "dumps" / "mysql.restore" / "edgemig"
    ck.mkdir(parents=True)
    write_state(dumps, "mysql", "target", "in_doubt", checkpoint_dir=str(ck))
    assert recovery.local_facts(api, "mysql", dumps)["has_checkpoint"] is False      # an empty dir holds nothing
    (ck / "pages-1.img").write_bytes(b"x")
    f = recovery.local_facts(api, "mysql", dumps)
    assert f["record"]["phase"] == "in_doubt" and f["has_checkpoint"] and f["running"]
    assert f["checkpoint"] == str(ck)
    write_state(dumps, "mysql", "source", "committed", checkpoint_dir=str(ck))
    f = recovery.local_facts(api, "mysql", dumps)
    assert f["checkpoint"] == str(ck) and not f["has_checkpoint"]               # a source's dump


def test_receiver_running_finds_the_tag(monkeypatch, tmp_path):
    assert recovery.receiver_running("no-such-service-here") is False


@pytest.mark.parametrize("fault, held_after", [("stream", "unless-stopped"), (None, None)])
def test_the_restart_policy_is_held_from_the_freeze_and_given_back_by_the_rollback(world, fault, held_after):
    """A source with a restart policy must not be started again by Docker when the checkpoint stops it
    (two copies); the rollback gives the policy back, a success leaves the stopped source at ``no``."""
    api, addr, tmp_path = world
    api.containers["mysql"]["HostConfig"]["RestartPolicy"] = {"Name": "unless-stopped", "MaximumRetryCount": 0}
    seen = []
    real = Link.commit

    def commit(self, migration=""):
        seen.append(read_state(str(tmp_path / "dumps"), "mysql")["restart_policy"])
        real(self, migration)
    Link.commit, restore = commit, Link.commit
    try:
        _d, _link, target, res, exc = run(api, tmp_path, fault)
    finally:
        Link.commit = restore
    if fault:
        assert exc.result["rolled_back"] == "checkpoint" and source_serves(api, addr)
        assert api.containers["mysql"]["HostConfig"]["RestartPolicy"]["Name"] == held_after
    else:
        # the stopped source (at "no" from the freeze on) is removed once the target serves
        assert exc is None and target.serving and "mysql" not in api.containers
        # the record a recovery reads names the policy to give back
        assert seen == [{"Name": "unless-stopped", "MaximumRetryCount": 0}]


def test_bring_up_gives_the_restart_policy_back(world, tmp_path):
    api, _addr, _tmp = world
    api.containers["mysql"]["State"]["Running"] = False
    api.containers["mysql"]["HostConfig"]["RestartPolicy"] = {"Name": "no"}
    assert recovery.bring_up(api, "mysql", None, restart_policy={"Name": "always", "MaximumRetryCount": 0}) \
        == "fresh_start"
    assert api.containers["mysql"]["HostConfig"]["RestartPolicy"]["Name"] == "always"


# ---------------------------------------------------------------- the held record (issue 23, item 5)
def stopped_held(api, tmp_path, policy="always"):
    """The source as a checkpoint leaves it: stopped, policy ``no``, its held record beside the dumps."""
    api.containers["mysql"]["State"]["Running"] = False
    api.containers["mysql"]["HostConfig"]["RestartPolicy"] = {"Name": "no"}
    held_dir = str(tmp_path / "held")
    write_held(held_dir, "mysql", api.containers["mysql"]["Id"], {"Name": policy, "MaximumRetryCount": 0})
    return held_dir


def test_bring_up_gives_back_the_held_policy_and_drops_the_record(world, tmp_path):
    api, addr, _tmp = world
    held_dir = stopped_held(api, tmp_path)
    assert recovery.bring_up(api, "mysql", None, address="10.213.0.102", interface="eth0", held_dir=held_dir) \
        == "fresh_start"
    assert api.containers["mysql"]["HostConfig"]["RestartPolicy"]["Name"] == "always" and addr["source"]
    assert read_held(held_dir, "mysql") is None


def test_bring_up_finds_the_held_record_beside_the_dump_it_restores(world, tmp_path):
    api, _addr, _tmp = world
    held_dir = stopped_held(api, tmp_path, "unless-stopped")
    ck = tmp_path / "dumps" / "mysql-1" / "edgemig"
    ck.mkdir(parents=True)
    (ck / "pages-1.img").write_bytes(b"x")
    assert recovery.bring_up(api, "mysql", str(ck)) == "checkpoint"      # the driver's rollback passes no held_dir
    assert api.containers["mysql"]["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert read_held(held_dir, "mysql") is None


def test_a_held_record_of_another_container_is_neither_used_nor_dropped(world, tmp_path):
    api, _addr, _tmp = world
    held_dir = stopped_held(api, tmp_path)
    write_held(held_dir, "mysql", "an-older-mysql", {"Name": "always", "MaximumRetryCount": 0})
    recovery.bring_up(api, "mysql", None, held_dir=held_dir)
    assert api.containers["mysql"]["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert read_held(held_dir, "mysql")["container"] == "an-older-mysql"


def test_a_refused_give_back_in_bring_up_is_an_error_that_says_so(world, tmp_path):
    api, addr, _tmp = world
    held_dir = stopped_held(api, tmp_path, "unless-stopped")
    real = api.update_container

    def refuse(name, body):
        raise DockerAPIError(500, "daemon is shutting down")
    api.update_container = refuse
    with pytest.raises(RestartPolicyError, match="could not be given back: it was 'unless-stopped'.*shutting down"):
        recovery.bring_up(api, "mysql", None, address="10.213.0.102", interface="eth0", held_dir=held_dir)
    assert api.containers["mysql"]["State"]["Running"] and addr["source"]   # it serves, only the policy is missing
    assert read_held(held_dir, "mysql") is not None                         # kept: the recovery tries again
    api.update_container = real
    assert recovery.bring_up(api, "mysql", None, held_dir=held_dir) == "not_needed"
    assert api.containers["mysql"]["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert read_held(held_dir, "mysql") is None


def test_a_refused_give_back_and_a_failed_health_check_are_both_named(world, tmp_path, monkeypatch):
    api, _addr, _tmp = world
    held_dir = stopped_held(api, tmp_path)
    api.fail["update_container"] = DockerAPIError(500, "no")
    monkeypatch.setattr(recovery, "wait_healthy", lambda *a: (False, 1.0, "connection refused"))
    with pytest.raises(DockerAPIError, match="health check failed: connection refused; the restart policy"):
        recovery.bring_up(api, "mysql", None, health={"type": "tcp", "port": 1}, held_dir=held_dir)


def test_stand_down_drops_the_held_record_only_with_the_container(world, tmp_path):
    api, _addr, _tmp = world
    held_dir = stopped_held(api, tmp_path)
    assert recovery.stand_down(api, "mysql", remove=False, held_dir=held_dir) == []
    assert read_held(held_dir, "mysql") is not None
    assert recovery.stand_down(api, "mysql", held_dir=held_dir) == ["container removed", "held restart policy dropped"]
    assert read_held(held_dir, "mysql") is None


def test_local_facts_reports_the_held_record_and_sweeps_a_stale_one(world, tmp_path):
    api, _addr, _tmp = world
    dumps = str(tmp_path / "dumps")
    held_dir = stopped_held(api, tmp_path)
    f = recovery.local_facts(api, "mysql", dumps)          # held_dir: beside the dumps by default
    assert f["held"]["restart_policy"]["Name"] == "always" and f["record"] is None and not f["running"]
    assert f["checkpoint"] is None                    # its dump went with the reboot
    # the dump is still there (the process died before its "frozen" record): restore from it
    ck = tmp_path / "dumps" / "mysql-1" / "edgemig"
    ck.mkdir(parents=True)
    (ck / "pages-1.img").write_bytes(b"x")
    write_held(held_dir, "mysql", api.containers["mysql"]["Id"], None, checkpoint_dir=str(ck))
    assert recovery.local_facts(api, "mysql", dumps)["checkpoint"] == str(ck)
    # a record of a container that still exists under another name is not this one's and stays
    api.containers["old"] = dict(api.containers["mysql"], Id="old-id")
    write_held(held_dir, "mysql", "old-id", None)
    assert recovery.local_facts(api, "mysql", dumps)["held"] is None and read_held(held_dir, "mysql")
    # once that container is gone (the migration succeeded and the copy was removed) it is swept
    del api.containers["old"]
    assert recovery.local_facts(api, "mysql", dumps)["held"] is None and read_held(held_dir, "mysql") is None


def test_rollback_gives_the_policy_back_and_a_success_drops_the_record_with_the_copy(world):
    api, addr, tmp_path = world
    api.containers["mysql"]["HostConfig"]["RestartPolicy"] = {"Name": "always", "MaximumRetryCount": 0}
    held_dir = str(tmp_path / "held")
    _d, _link, _target, _res, exc = run(api, tmp_path, "stream")
    assert exc.result["rolled_back"] == "checkpoint" and source_serves(api, addr)
    assert api.containers["mysql"]["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert read_held(held_dir, "mysql") is None
    _d, _link, target, res, exc = run(api, tmp_path, None)
    assert exc is None and target.serving
    # once the target serves, the stopped source goes and its held record with it
    assert res["source_removed"] is True and "mysql" not in api.containers
    assert read_held(held_dir, "mysql") is None
    assert recovery.local_facts(api, "mysql", str(tmp_path / "dumps"))["held"] is None


def test_a_source_copy_that_is_not_the_one_stopped_stays_and_a_failed_removal_is_said(world, monkeypatch):
    api, _addr, tmp_path = world
    real_remove = api.remove_container

    def busy(*_args, **_kw):
        raise OSError("busy")
    monkeypatch.setattr(api, "remove_container", busy)
    _d, _link, target, res, exc = run(api, tmp_path, None)
    assert exc is None and target.serving and "busy" in res["source_removed"] and "mysql" in api.containers
    monkeypatch.setattr(api, "remove_container", real_remove)
    d = drv.MigrationDriver(api, params(tmp_path), stream_factory=Link(Target(), None), poke=lambda *a: 1)
    d.ck = {"container_id": "someone-else"}                    # a copy by that name this run did not stop
    assert d.remove_source() is False and "mysql" in api.containers


# ---------------------------------------------------------------- issue 29: CRIU's preflight
def with_pid(api, monkeypatch, pids=(4242, 4243)):
    api.containers["mysql"]["State"]["Pid"] = pids[0]
    monkeypatch.setattr(drv, "container_processes", lambda pid: dict.fromkeys(pids, 1))


def test_what_criu_cannot_dump_is_refused_before_anything_freezes_or_connects(world, monkeypatch):
    from ansible_collections.edgemig.migration.plugins.module_utils.docker import criu_preflight as cp
    api, addr, tmp_path = world
    with_pid(api, monkeypatch)
    seen = {}
    ring = cp.Finding(4243, "mariadbd", 7, "io_uring", cp.REFUSE, "holds an io_uring instance",
                      "CRIU cannot checkpoint io_uring", "disable io_uring (MariaDB --innodb-use-native-aio=0)")

    def check(inspect, pids):
        seen["pids"] = pids
        cp.settle([ring], {})
        return {"processes": len(pids), "findings": [ring.as_dict()], "refused": True}, [ring]
    d, link, _target, res, exc = run(api, tmp_path, None, criu_check=check)
    assert res is None and seen["pids"] == [4242, 4243]
    assert exc.result["rolled_back"] == "not_needed" and exc.result["phase"] == "prepare"
    assert str(exc).startswith("CRIU could not checkpoint this service: process 4243 (mariadbd) holds an io_uring "
                               "instance (fd 7): CRIU cannot checkpoint io_uring")
    assert exc.result["preflight"]["findings"][0]["done"] == "refused before the freeze"
    assert not hasattr(link, "dest")                               # the target was never contacted
    assert not [c for c in api.calls if c[0] in ("checkpoint", "update")] and source_serves(api, addr)


def test_findings_runc_conf_handles_let_the_migration_go_on_and_are_reported(world, monkeypatch):
    from ansible_collections.edgemig.migration.plugins.module_utils.docker import criu_preflight as cp
    api, _addr, tmp_path = world
    with_pid(api, monkeypatch)
    lock = cp.Finding(4242, "mariadbd", 9, "file_lock", cp.WITH_OPTION, "holds a file lock", "needs file-locks",
                      "nothing", option="file-locks")

    def check(inspect, pids):
        refusing = cp.settle([lock], {"file-locks": ""})
        return {"processes": 2, "findings": [lock.as_dict()], "refused": False}, refusing
    _d, _link, _target, res, exc = run(api, tmp_path, None, criu_check=check)
    assert exc is None and res["preflight"]["checked"] and res["preflight"]["processes"] == 2
    assert res["preflight"]["findings"][0]["done"].startswith("handled: /etc/criu/runc.conf has 'file-locks'")


def test_without_a_pid_the_preflight_says_it_did_not_check(world):
    api, _addr, tmp_path = world
    _d, _link, _target, res, exc = run(api, tmp_path, None)
    assert exc is None and res["preflight"] == {"checked": False,
                                                "notes": ["no process id in Docker's inspect: not checked"]}


# ---------------------------------------------------------------- a move parked ahead (issue 26)
class WarmLink(Link):
    """A Link with a pre-copy session: warm rounds counted (never inside a keepalive: frames must not
    interleave), the keepalive's holding seen, ``dead`` what broken() says; ``fail_round`` makes that
    round raise as a dropped link would; ``on_open`` is called when it connects."""

    def __init__(self, target, fault=None, fail_round=None, on_open=None):
        super().__init__(target, fault)
        self.warm = WarmState()
        self.rounds, self.fail_round, self.on_open = 0, fail_round, on_open
        self.keepalives, self.in_keepalive, self.dead = 0, False, None

    def open(self):
        if self.on_open:
            self.on_open()
        return super().open()

    def warm_round(self, roots, memory_pids=None, *, policy="model", **kw):
        assert not self.in_keepalive, "a round while KEEPALIVE frames go out"
        self.rounds += 1
        if self.rounds == self.fail_round:
            raise TransferError("transfer stalled: the receiver acknowledged nothing for 8 s")
        return {"bytes_raw": 100, "seconds": 0.001, "pages_sent": 1}

    @contextlib.contextmanager
    def keepalive(self):
        self.keepalives += 1
        self.in_keepalive = True
        try:
            yield
        finally:
            self.in_keepalive = False

    def broken(self):
        return self.dead


@pytest.fixture
def parked(world, monkeypatch):
    """The world with a gate directory (0700), one warm round before the park, and a checkpoint that
    notes what the gate held when it froze the service."""
    api, addr, tmp_path = world
    gate = tmp_path / "gate"
    gate.mkdir(mode=0o700)
    froze = []

    def warm_up(conn, live, pids, **kw):
        conn.warm_round(live, pids)
        return {"rounds": [{"round": 1}], "reason": "converged", "predicted_final_s": 0.1}

    def create(api_, name, *a, **kw):
        froze.append(sorted(os.listdir(gate)))
        return real_create(api_, name, *a, **kw)
    real_create = drv.create
    monkeypatch.setattr(drv, "warm_up", warm_up)
    monkeypatch.setattr(drv, "create", create)
    return api, addr, tmp_path, gate, froze


def park_params(tmp_path, gate, **park):
    return params(tmp_path, precopy=True, park=dict({"dir": str(gate), "timeout": 60.0, "refresh_s": 0.0}, **park))


def release_when(gate, name: str, ready, seconds: float = 30.0) -> threading.Thread:
    """A thread that writes ``name`` into the gate once ``ready()`` holds (or after ``seconds``, so a
    broken driver fails the test instead of hanging it)."""
    def run_():
        deadline = time.monotonic() + seconds
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.005)
        (gate / name).touch()
    t = threading.Thread(target=run_, daemon=True)
    t.start()
    return t


def progress_phase(path) -> str:
    try:
        return json.loads(path.read_text()).get("phase", "")
    except (OSError, ValueError):
        return ""


def test_parked_then_go_freezes_only_after_the_go_and_refreshes_while_parked(parked):
    api, addr, tmp_path, gate, froze = parked
    link = WarmLink(Target())
    prog = tmp_path / "progress.json"
    running_at_go = []

    def ready():
        if link.rounds >= 4 and progress_phase(prog).startswith("parked"):   # the warm round + 3 refreshes
            running_at_go.append(source_serves(api, addr))
            return True
        return False
    t = release_when(gate, "go", ready)
    d = drv.MigrationDriver(api, park_params(tmp_path, gate, refresh_s=0.01), stream_factory=link,
                            poke=lambda *a: 1, progress=drv.ProgressFile(str(prog)))
    res = d.run()
    t.join()
    assert running_at_go == [True]                         # parked with the service running
    assert froze == [["go"]]                               # the one freeze came after the go
    assert res["changed"] is True and target_serves(link) and not source_serves(api, addr)
    assert res["parked"]["released"] is True and res["parked"]["refresh_rounds"] >= 3
    assert len(res["precopy"]["refresh"]) == res["parked"]["refresh_rounds"] == link.rounds - 1
    assert res["precopy"]["refresh"][0]["bytes_raw"] == 100 and res["parked"]["waited_s"] >= 0
    assert link.keepalives >= res["parked"]["refresh_rounds"]   # fed between the rounds
    assert read_state(str(tmp_path / "dumps"), "mysql") is None and not prog.exists()


def target_serves(link) -> bool:
    return link.target.serving


def test_the_receiver_is_fed_all_the_time_it_is_parked(parked):
    api, _addr, tmp_path, gate, froze = parked
    link = WarmLink(Target())
    held = []
    t = release_when(gate, "go", lambda: link.in_keepalive and not held.append(True))
    res = drv.MigrationDriver(api, park_params(tmp_path, gate), stream_factory=link, poke=lambda *a: 1).run()
    t.join()
    assert held and res["parked"]["released"] and res["parked"]["refresh_rounds"] == 0 and link.rounds == 1
    assert froze == [["go"]] and not link.in_keepalive


def test_parked_then_no_go_freezes_nothing_and_changes_nothing(parked):
    api, addr, tmp_path, gate, froze = parked
    link = WarmLink(Target())
    prog = tmp_path / "progress.json"
    t = release_when(gate, "nogo", lambda: progress_phase(prog).startswith("parked"))
    p = park_params(tmp_path, gate, refresh_s=0.01)
    d = drv.MigrationDriver(api, p, stream_factory=link, poke=lambda *a: 1, progress=drv.ProgressFile(str(prog)))
    res = d.run()
    t.join()
    assert res["changed"] is False and "failed" not in res
    assert res["parked"]["released"] is False and res["parked"]["why"] == "no-go at the gate"
    assert froze == [] and source_serves(api, addr) and not link.target.serving and not link.sent_commit
    assert link.closed and not prog.exists()
    assert read_state(str(tmp_path / "dumps"), "mysql") is None   # nothing for a recovery to read


def test_a_park_nobody_releases_gives_up_at_its_timeout(parked):
    api, addr, tmp_path, gate, froze = parked
    link = WarmLink(Target())
    res = drv.MigrationDriver(api, park_params(tmp_path, gate, timeout=0.2), stream_factory=link,
                              poke=lambda *a: 1).run()
    assert res["changed"] is False and res["parked"]["why"] == "park timeout (0.2 s)"
    assert res["parked"]["released"] is False and res["parked"]["waited_s"] >= 0.2
    assert froze == [] and source_serves(api, addr) and link.closed and not link.sent_commit


def test_a_refresh_round_that_fails_while_parked_freezes_nothing(parked):
    api, addr, tmp_path, gate, froze = parked
    link = WarmLink(Target(), fail_round=3)
    with pytest.raises(drv.MigrationFailed) as info:
        drv.MigrationDriver(api, park_params(tmp_path, gate, refresh_s=0.01), stream_factory=link,
                            poke=lambda *a: 1).run()
    res = info.value.result
    assert res["rolled_back"] == "not_needed" and res["phase"] == "parked"
    assert "parked migration failed" in str(info.value) and "nothing was frozen" in str(info.value)
    assert res["parked"]["released"] is False and res["parked"]["refresh_rounds"] == 1
    assert froze == [] and source_serves(api, addr) and link.closed


def test_a_receiver_that_died_while_parked_ends_the_park_not_a_freeze_later(parked, monkeypatch):
    api, addr, tmp_path, gate, froze = parked
    monkeypatch.setattr(park, "CHECK_S", 0.02)
    link = WarmLink(Target())
    link.dead = "receiver on 10.213.0.12 closed the channel"
    with pytest.raises(drv.MigrationFailed) as info:
        drv.MigrationDriver(api, park_params(tmp_path, gate), stream_factory=link, poke=lambda *a: 1).run()
    assert info.value.result["rolled_back"] == "not_needed" and "closed the channel" in str(info.value)
    assert froze == [] and source_serves(api, addr) and link.closed


def test_a_park_whose_lease_is_not_renewed_gives_up_and_one_renewed_stays(parked, monkeypatch):
    """The controller renews a gated park (touches ``lease``); a controller that died renews nothing:
    the park ends within about lease_s, nothing frozen, however long its timeout."""
    api, addr, tmp_path, gate, froze = parked
    monkeypatch.setattr(park, "CHECK_S", 0.02)
    link = WarmLink(Target())
    t0 = time.monotonic()
    res = drv.MigrationDriver(api, park_params(tmp_path, gate, lease_s=0.3), stream_factory=link,
                              poke=lambda *a: 1).run()
    assert res["changed"] is False and res["parked"]["released"] is False
    assert "stopped renewing the park" in res["parked"]["why"] and time.monotonic() - t0 < 30
    assert froze == [] and source_serves(api, addr) and link.closed and not link.sent_commit

    # Renewed (a touch every 0.05 s) for well past lease_s: still parked, then the go freezes.
    froze.clear()
    link = WarmLink(Target())
    renewing = threading.Event()

    def renew():
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            (gate / park.LEASE).touch()
            time.sleep(0.05)
        renewing.set()
    threading.Thread(target=renew, daemon=True).start()
    t = release_when(gate, "go", renewing.is_set)
    res = drv.MigrationDriver(api, park_params(tmp_path, gate, lease_s=0.3), stream_factory=link,
                              poke=lambda *a: 1).run()
    t.join()
    assert res["parked"]["released"] is True and res["parked"]["waited_s"] >= 0.9 and froze == [["go", "lease"]]


def test_check_lease_counts_from_the_park_start_or_the_last_touch(tmp_path):
    park.check_lease(str(tmp_path), since=100.0, lease_s=0, now=10_000.0)         # no lease: never ends
    park.check_lease(str(tmp_path), since=100.0, lease_s=45, now=140.0)
    with pytest.raises(park.LeaseEnded):
        park.check_lease(str(tmp_path), since=100.0, lease_s=45, now=146.0)
    (tmp_path / park.LEASE).touch()
    os.utime(tmp_path / park.LEASE, (130.0, 130.0))
    park.check_lease(str(tmp_path), since=100.0, lease_s=45, now=170.0)
    with pytest.raises(park.LeaseEnded):
        park.check_lease(str(tmp_path), since=100.0, lease_s=45, now=176.0)


def test_stop_and_copy_parks_before_it_connects(parked):
    """Without pre-copy a session cannot be held open (nothing may be sent before HELLO): it connects at the go."""
    api, _addr, tmp_path, gate, froze = parked
    opened = []
    link = WarmLink(Target(), on_open=lambda: opened.append(sorted(os.listdir(gate))))
    p = park_params(tmp_path, gate)
    p["precopy"] = False
    prog = tmp_path / "progress.json"
    t = release_when(gate, "go", lambda: progress_phase(prog).startswith("parked"))
    res = drv.MigrationDriver(api, p, stream_factory=link, poke=lambda *a: 1,
                              progress=drv.ProgressFile(str(prog))).run()
    t.join()
    assert opened == [["go"]] and froze == [["go"]] and link.rounds == 0
    assert res["parked"]["released"] and res["precopy"] == {"enabled": False} and link.target.serving


@pytest.mark.parametrize("case, says", [
    ("missing", "No such file"),
    ("link", "not a directory"),
    ("file", "not a directory"),
    ("group_writable", "writable by nobody else"),
    ("left_go", "already holds go"),
    ("left_nogo", "already holds nogo"),
    ("timeout", "park.timeout"),
    ("refresh", "park.refresh_s"),
])
def test_a_gate_anyone_could_release_or_left_from_before_is_refused_before_connecting(parked, case, says):
    api, addr, tmp_path, gate, froze = parked
    spec = {"dir": str(gate), "timeout": 60.0, "refresh_s": 0.0}
    if case == "missing":
        spec["dir"] = str(tmp_path / "nowhere")
    elif case == "link":
        (tmp_path / "alias").symlink_to(gate)
        spec["dir"] = str(tmp_path / "alias")
    elif case == "file":
        (tmp_path / "plain").write_text("")
        spec["dir"] = str(tmp_path / "plain")
    elif case == "group_writable":
        gate.chmod(0o770)
    elif case in ("left_go", "left_nogo"):
        (gate / case[5:]).touch()
    elif case == "timeout":
        spec["timeout"] = 0.0
    else:
        spec["refresh_s"] = -1.0
    opened = []
    link = WarmLink(Target(), on_open=lambda: opened.append(True))
    with pytest.raises(drv.MigrationFailed) as info:
        drv.MigrationDriver(api, params(tmp_path, precopy=True, park=spec), stream_factory=link).run()
    assert says in str(info.value) and info.value.result["rolled_back"] == "not_needed"
    assert opened == [] and froze == [] and source_serves(api, addr)


def test_the_gate_answers_at_once_and_nogo_wins(tmp_path):
    assert park.wait_release(str(tmp_path), time.monotonic() + 0.05) is None
    (tmp_path / "go").touch()
    assert park.wait_release(str(tmp_path), time.monotonic() + 60) == "go"
    (tmp_path / "nogo").touch()
    assert park.wait_release(str(tmp_path), time.monotonic() + 60) == "nogo"


def test_a_parked_session_says_when_it_can_no_longer_carry_the_migration():
    """SshStream.broken: what a parked migration checks about once a second (driver/park.py)."""

    class Transport:
        active = True

        def is_active(self):
            return self.active
    conn = SshStream("0" * 32, host="192.0.2.1", key_file="k", known_hosts="kh")
    assert conn.broken() == "SSH session to 192.0.2.1 is down"          # never opened
    conn.transport = Transport()
    assert conn.broken() is None
    conn.transport.active = False
    assert conn.broken() == "SSH session to 192.0.2.1 is down"
    conn.transport.active = True
    conn.acks.eof()                                                       # the receiver hung up
    assert conn.broken() == "receiver on 192.0.2.1 closed the channel"
    conn.acks.feed_line(b'{"error": "receiver got no data for 60 s (link down or sender gone); gave up"}')
    assert conn.broken() == "receiver on 192.0.2.1: receiver got no data for 60 s (link down or sender gone); gave up"
