# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 12: the migration driver's phases, its one rollback, the commit point, and the
recovery's decision table - with a fake Docker (the source) and a fake link + target.

The property every scenario ends with: exactly one side believes it serves
(after the recovery, for the cases where the driver cannot know).
"""
from __future__ import annotations

import contextlib
import os

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
from ansible_collections.edgemig.migration.plugins.module_utils.driver import migration_driver as drv, recovery
from ansible_collections.edgemig.migration.plugins.module_utils.sender.ssh_stream import OutcomeUnknown, TransferError


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
