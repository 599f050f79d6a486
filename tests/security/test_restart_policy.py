# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 23, item 5: the held restart policy survives a reboot of the source, and a refused give-back says so.

Two edges, each a fake dockerd on a unix socket (fake_docker.py: the real DockerAPI talks to it and
every request is logged). The source's steps are the real ones the driver takes (``checkpoint.create``
holds the policy, ``write_state`` records the phase); a reboot is what a reboot leaves: the dump tmpfs
empty (migration records and dump gone), every container stopped, and dockerd starting again at boot
whatever has a restart policy. The recovery is ``migration_recover`` (inspect, converge) and the
``recovery_decision`` filter (decide) run as
``playbooks/tasks/recover_service.yml`` runs them, against the edges' sockets.

On 6ca0e80 nothing recorded the held policy outside the tmpfs: after the reboot the source stayed
stopped at policy ``no`` and the decision was "nothing to recover".
"""
from __future__ import annotations

import os
import shutil
import sys

import pytest
from fake_docker import FakeDocker, Reply

from ansible_collections.edgemig.migration.plugins.filter.recovery_decision import recovery_decision
from ansible_collections.edgemig.migration.plugins.module_utils.common.migration_state import (
    held_dir_for,
    read_held,
    write_state,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker import checkpoint as ck, containerd_dump
from ansible_collections.edgemig.migration.plugins.modules import migration_recover as mod

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "unit"))
from fakes import run_module  # noqa: E402  (tests/unit's module runner)

SVC = "mysql"
POLICIES = ["always", "unless-stopped", "on-failure"]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    # Not this machine's containerd, nor its receivers: the fake daemons are the whole world.
    monkeypatch.setattr(containerd_dump, "task_of", lambda cid, pid: None)
    monkeypatch.setattr(mod, "receiver_running", lambda name: False)


class Edge:
    """One edge: its dockerd (fake), its dump tmpfs and, beside it, its held dir."""

    def __init__(self, name: str, root, daemon=FakeDocker):
        self.name = name
        os.makedirs(root / name)
        self.docker = daemon(str(root / name)).start()
        self.dumps = str(root / name / "dumps")
        os.makedirs(self.dumps, mode=0o700)
        self.held_dir = held_dir_for(self.dumps)

    def api(self):
        return self.docker.api()

    def args(self, **kw) -> dict:
        return dict({"name": SVC, "dump_dir": self.dumps, "docker_host": self.docker.url}, **kw)

    def running(self) -> bool:
        return SVC in self.docker.containers and self.docker.running(SVC)

    def policy(self) -> str:
        return self.docker.containers[SVC]["HostConfig"]["RestartPolicy"]["Name"]

    def reboot(self) -> None:
        """What a reboot leaves: the tmpfs empty, every container stopped, then dockerd's start at
        boot of every container whose policy says so (a checkpoint's exit code is 137)."""
        for entry in os.listdir(self.dumps):
            shutil.rmtree(os.path.join(self.dumps, entry))
        for c in self.docker.containers.values():
            c["State"].update(Running=False, Status="exited", Pid=0)
            if c["HostConfig"]["RestartPolicy"]["Name"] in POLICIES:
                c["State"].update(Running=True, Status="running", Pid=4242)


class RefusingDocker(FakeDocker):
    """A dockerd that takes a restart policy away but refuses to give one back."""

    refuse = True

    def _container_update(self, ref, body, **kw):
        if self.refuse and ((body or {}).get("RestartPolicy") or {}).get("Name") != "no":
            raise Reply(400, "Restart policy cannot be updated because AutoRemove is enabled for the container")
        return super()._container_update(ref, body, **kw)


@pytest.fixture
def edges(tmp_path):
    made = []

    def make(policy: str, daemon=FakeDocker):
        src, tgt = Edge("edge1", tmp_path, daemon), Edge("edge2", tmp_path)
        made.extend([src, tgt])
        src.docker.add_container(SVC, running=True, restart_policy=policy)
        tgt.docker.add_container(SVC, running=False, restart_policy=policy)   # prepared with the source's policy
        return src, tgt
    yield make
    for e in made:
        e.docker.close()


def recover(edges: dict[str, Edge | None]) -> dict:
    """playbooks/tasks/recover_service.yml: inspect everywhere, decide, converge the losers then the winner,
    then remove a stopped loser once the winner serves. ``None``: an unreachable edge."""
    seen = {}
    for name, e in edges.items():
        if e is None:
            seen[name] = None
            continue
        failed, res = run_module(mod, e.args(mode="inspect"))
        assert not failed, res
        seen[name] = res["facts"]
    decision = recovery_decision(seen)  # on the controller, as tasks/recover_service.yml decides
    order = [e for e in edges if e != decision["winner"]] + ([decision["winner"]] if decision["winner"] else [])
    results = {}
    for name in order:
        action = decision["actions"][name]
        if action not in ("none", "wait"):
            results[name] = run_module(mod, edges[name].args(mode="converge", action=action))
    for name, action in decision["actions"].items():
        if action == "stop" and decision["winner"] and not results[decision["winner"]][0]:
            results[name] = run_module(mod, edges[name].args(mode="converge", action="stand_down"))
    return {"seen": seen, "decision": decision, "results": results}


def freeze(src: Edge, phase: str | None) -> dict:
    """The source's freeze as the driver does it: the checkpoint (policy held), then its record."""
    res = ck.create(src.api(), SVC, src.dumps, "edgemig")
    if phase:
        write_state(src.dumps, SVC, "source", phase, work_dir=res["work_dir"], checkpoint_dir=res["checkpoint_dir"],
                    restart_policy=res["restart_policy"], target="10.213.0.12", target_name="edge2")
    return res


def hold_only(src: Edge) -> None:
    """Stopped after the hold, before the dump finished and the ``frozen`` record: what a reboot in the
    middle of ``checkpoint.create`` leaves behind (its clean-up never ran)."""
    api = src.api()
    inspect = api.inspect_container(SVC)
    ck.hold_restarts(api, inspect, src.held_dir, work_dir=os.path.join(src.dumps, "w"),
                     checkpoint_dir=os.path.join(src.dumps, "w", "edgemig"))
    api.create_checkpoint(inspect["Id"], "edgemig", os.path.join(src.dumps, "w"), exit_container=True)


def the_one_copy(*edges: Edge) -> list[str]:
    return [e.name for e in edges if e.running()]


# Where the source reboots (its record's phase then; "hold": before any), what the target did
# meanwhile, and who must serve after the recovery.
POINTS = [
    ("after the hold, before the frozen record", "hold", "prepared", "edge1"),
    ("frozen, streaming", "frozen", "prepared", "edge1"),
    ("verified, target waiting for COMMIT", "frozen", "in_doubt", "edge1"),
    ("committed, COMMIT lost (target in doubt)", "committed", "in_doubt", "edge1"),
    ("committed, target restoring (got COMMIT)", "committed", "committed", "edge2"),
    ("committed, target serving", "committed", "serving", "edge2"),
    ("switched, source copy not yet removed", None, "serving", "edge2"),
]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("phase, target_state, winner", [p[1:] for p in POINTS], ids=[p[0] for p in POINTS])
def test_a_reboot_of_the_source_at_any_point_ends_with_one_copy_and_its_policy(
        edges, policy, phase, target_state, winner):
    src, tgt = edges(policy)
    if phase == "hold":
        hold_only(src)
    else:
        freeze(src, phase)
    if target_state in ("in_doubt", "committed"):
        kept = os.path.join(tgt.dumps, f"{SVC}.restore", "edgemig")
        os.makedirs(kept)
        with open(os.path.join(kept, "pages-1.img"), "wb") as fh:
            fh.write(b"p" * 4096)
        write_state(tgt.dumps, SVC, "target", target_state, checkpoint_dir=kept, work_dir=os.path.dirname(kept))
    if target_state == "serving" or target_state == "committed":
        tgt.docker.containers[SVC]["State"].update(Running=True, Status="running", Pid=4343)
    assert not src.running() and src.policy() == "no"

    src.reboot()
    # The hold did its part: dockerd did not start the stopped source at boot beside the target.
    assert not src.running() and os.listdir(src.dumps) == []
    assert read_held(src.held_dir, SVC)["restart_policy"]["Name"] == policy

    out = recover({"edge1": src, "edge2": tgt})
    assert out["decision"]["winner"] == winner and out["decision"]["complete"], out["decision"]
    assert all(not failed for failed, _res in out["results"].values()), out["results"]
    assert the_one_copy(src, tgt) == [winner]
    serving = src if winner == "edge1" else tgt
    assert serving.policy() == policy
    if winner == "edge2":
        assert SVC not in src.docker.containers        # the held copy was removed, and its record with it
    for e in (src, tgt):
        assert read_held(e.held_dir, SVC) is None
        assert not os.path.exists(os.path.join(e.dumps, ".edgemig-state", f"{SVC}.json"))

    # Recovered exactly once: a second run changes nothing, and the next reboot brings it back by itself.
    again = recover({"edge1": src, "edge2": tgt})
    assert all(not res.get("changed") for _f, res in again["results"].values()), again
    serving.reboot()
    assert the_one_copy(src, tgt) == [winner]


def test_a_held_source_waits_while_the_target_cannot_be_seen(edges):
    """The target may serve (COMMIT may have reached it): nothing is started until it is seen."""
    src, tgt = edges("always")
    freeze(src, "committed")
    src.reboot()
    out = recover({"edge1": src, "edge2": None})
    assert out["decision"]["winner"] is None and not out["decision"]["complete"]
    assert "unreachable" in out["decision"]["reason"] and out["results"] == {}
    assert not src.running() and read_held(src.held_dir, SVC)
    assert [c for c in src.docker.changing_calls() if not c[1].endswith(("/checkpoints", "/update"))] == []


def test_the_held_record_is_on_disk_before_docker_is_asked_and_holds_no_memory(edges):
    src, _tgt = edges("unless-stopped")
    held_at_update = []
    real = src.docker._container_update

    def update(ref, body, **kw):
        held_at_update.append(read_held(src.held_dir, SVC))
        return real(ref, body, **kw)
    src.docker._container_update = update
    res = freeze(src, "frozen")
    assert held_at_update[0]["restart_policy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert not src.held_dir.startswith(src.dumps + os.sep)      # beside the tmpfs, never in it
    path = os.path.join(src.held_dir, f"{SVC}.json")
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(src.held_dir).st_mode & 0o777 == 0o700
    with open(path, "rb") as fh:
        data = fh.read()
    assert len(data) < 1024 and set(read_held(src.held_dir, SVC)) == {
        "service", "container", "restart_policy", "time", "work_dir", "checkpoint_dir"}
    assert res["restart_policy"]["Name"] == "unless-stopped"


def test_a_refused_give_back_is_an_error_that_says_so_and_a_later_recovery_gives_it_back(edges):
    src, tgt = edges("always", daemon=RefusingDocker)
    freeze(src, "frozen")
    src.reboot()
    out = recover({"edge1": src, "edge2": tgt})
    failed, res = out["results"]["edge1"]
    assert failed and "could not be given back: it was 'always'" in res["msg"] and "AutoRemove" in res["msg"]
    assert "docker update --restart always mysql" in res["msg"]
    assert the_one_copy(src, tgt) == ["edge1"] and src.policy() == "no"    # it runs; only the policy is missing
    assert read_held(src.held_dir, SVC)                                       # kept for the next try
    src.docker.refuse = False
    out = recover({"edge1": src, "edge2": tgt})
    assert out["decision"]["winner"] == "edge1" and not out["results"]["edge1"][0]
    assert src.policy() == "always" and read_held(src.held_dir, SVC) is None
    assert the_one_copy(src, tgt) == ["edge1"]


def test_a_refused_give_back_after_a_failed_checkpoint_says_so(edges, monkeypatch):
    src, _tgt = edges("on-failure", daemon=RefusingDocker)

    def criu_fails(*a, **kw):
        raise ck.DockerAPIError(500, "criu failed: type NOTIFY errno 0")
    monkeypatch.setattr(ck, "dump", criu_fails)
    with pytest.raises(ck.RestartPolicyError, match="criu failed.*could not be given back: it was 'on-failure'"):
        freeze(src, None)
    assert src.running() and read_held(src.held_dir, SVC)["restart_policy"]["Name"] == "on-failure"
