# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bench/chaos.py without the lab: the fault plan, phase names, windows, when recover.yml is needed,
and the injection's timing against fakes (no process is killed, no nft rule is made)."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path[:0] = [os.path.join(_ROOT, "bench"), os.path.join(_ROOT, "lab")]

import chaos  # noqa: E402
import soak_report  # noqa: E402


# ------------------------------------------------------------------ the plan
def test_same_seed_same_plan_and_another_seed_another():
    assert chaos.draw_plan(7, 100) == chaos.draw_plan(7, 100)
    assert chaos.draw_plan(7, 100) != chaos.draw_plan(8, 100)


def test_about_half_of_the_runs_get_a_fault():
    plan = chaos.draw_plan(1, 1000)
    assert [d.n for d in plan] == list(range(1, 1001))
    share = sum(1 for d in plan if d.fault) / len(plan)
    assert 0.45 < share < 0.55
    assert not any(d.fault for d in chaos.draw_plan(1, 50, ratio=0.0))
    assert all(d.fault for d in chaos.draw_plan(1, 50, ratio=1.0))


def test_every_class_comes_up_about_as_often():
    for seed in range(20):
        counts = Counter(d.fault for d in chaos.draw_plan(seed, 100) if d.fault)
        assert set(counts) == set(chaos.FAULTS), seed  # ~50 faulted runs, 8 classes: none left out
        assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_points_and_cut_lengths_are_drawn_in_range():
    for d in chaos.draw_plan(3, 500):
        if not d.fault:
            assert d == chaos.Draw(d.n)
            continue
        assert 0.0 <= d.at < 1.0
        if chaos.FAULTS[d.fault].cuts_link:
            assert chaos.HOLD_RANGE_S[0] <= d.hold_s <= chaos.HOLD_RANGE_S[1]
        else:
            assert d.hold_s is None


def test_a_subset_of_classes_and_bad_names():
    plan = chaos.draw_plan(5, 60, ["link-drop", "kill-controller"])
    assert {d.fault for d in plan if d.fault} == {"link-drop", "kill-controller"}
    with pytest.raises(ValueError, match="unknown fault class"):
        chaos.draw_plan(5, 10, ["kill-everything"])
    with pytest.raises(ValueError, match="no fault class"):
        chaos.draw_plan(5, 10, [])


def test_the_classes_are_consistent():
    for f in chaos.FAULT_CLASSES:
        assert f.anchor in ("receiver", "start", "verified", "committed", "hook"), f
        if f.anchor == "hook":
            assert f.hook and f.phase in soak_report.PHASES, f
        if f.anchor in ("verified", "committed"):
            assert f.pause_s() > 0, f  # the pause is the window the fault lands in
        assert f.kills in (None, "receiver", "sshd-session", "controller"), f
        assert f.anchor == "hook" or f.kills or f.cuts_link, f"{f.name} does nothing"


def test_playbook_vars():
    stall = ["-e", "edgemig_stall_timeout=8"]
    assert chaos.playbook_vars(None) == stall
    assert chaos.playbook_vars(chaos.FAULTS["link-drop"]) == stall
    args = chaos.playbook_vars(chaos.FAULTS["link-cut-after-verified"], stall_timeout=5)
    assert json.loads(args[1]) == {"edgemig_faults": {"pause_verified": 6}}
    assert args[2:] == ["-e", "edgemig_stall_timeout=5"]
    assert json.loads(chaos.playbook_vars(chaos.FAULTS["restore-fails"])[1]) == {"edgemig_faults": {"restore": True}}


# ------------------------------------------------------------------ phases
@pytest.mark.parametrize("source,target,progress,alive,seen,phase", [
    (None, None, None, False, False, "pre-tasks"),
    (None, None, "connecting to the target", False, False, "prepare"),
    (None, None, None, True, True, "prepare"),
    (None, None, "warm round 2 done (service running)", True, True, "warm"),
    (None, None, "checkpoint (service frozen)", True, True, "checkpoint"),
    ("frozen", None, "checkpoint (service frozen)", True, True, "stream"),
    ("frozen", None, "streaming", True, True, "stream"),
    ("frozen", None, "restoring on the target", True, True, "stream"),
    ("frozen", "verified", "streaming", True, True, "verified"),
    ("committed", "verified", "streaming", True, True, "committed"),
    ("frozen", "committed", None, True, True, "committed"),
    ("committed", "in_doubt", None, False, True, "in_doubt"),
    ("aborted", "fenced", None, False, True, "rollback"),
    (None, "fenced", None, False, True, "fenced"),
    ("frozen", None, "rolling back on the source: boom", True, True, "rollback"),
    (None, None, None, False, True, "after-switch"),
])
def test_phase_label(source, target, progress, alive, seen, phase):
    assert chaos.phase_label(source, target, progress, alive, seen) == phase
    assert phase in soak_report.PHASES


def test_progress_phase_reads_the_newest_file_of_this_run(tmp_path):
    old, new = tmp_path / "edgemig-progress-a.json", tmp_path / "edgemig-progress-b.json"
    old.write_text(json.dumps({"phase": "old run"}))
    new.write_text(json.dumps({"phase": "streaming"}))
    os.utime(old, (1000, 1000))
    os.utime(new, (2000, 2000))
    (tmp_path / "edgemig-progress-c.json").write_text("{half")  # being rewritten: skipped
    os.utime(tmp_path / "edgemig-progress-c.json", (3000, 3000))
    pattern = str(tmp_path / "edgemig-progress-*.json")
    assert chaos.progress_phase(1500, pattern) == "streaming"
    assert chaos.progress_phase(500, pattern) == "streaming"
    assert chaos.progress_phase(2500, pattern) is None


# ------------------------------------------------------------------ windows, recovery
def test_windows_learn_from_the_clean_runs():
    w = chaos.Windows()
    assert w.of(chaos.FAULTS["kill-receiver"]) == 5.0
    assert w.of(chaos.FAULTS["kill-controller"]) == 15.0
    for rec, play in ((3.0, 10.0), (None, 11.0), (5.0, 30.0), (4.0, 12.0)):
        w.learn(rec, play)
    assert w.of(chaos.FAULTS["link-drop"]) == 4.0
    assert w.of(chaos.FAULTS["kill-controller"]) == 11.5
    assert w.of(chaos.FAULTS["link-cut-after-verified"]) == pytest.approx(0.8 * 6)
    assert w.of(chaos.FAULTS["restore-held-session-killed-link-dropped"]) == pytest.approx(0.8 * 4)


def test_recover_needed():
    assert chaos.recover_needed(True, -9, {}, ["edge1"]).startswith("the controller was killed")
    assert chaos.recover_needed(False, 0, {}, ["edge2"]) is None
    assert chaos.recover_needed(False, 2, {}, ["edge1"]) is None  # failed, but the rescue converged
    assert "in_doubt" in chaos.recover_needed(False, 2, {"edge2": "in_doubt"}, ["edge1"])
    assert "no edge" in chaos.recover_needed(False, 2, {}, [])
    assert chaos.recover_needed(False, 2, {}, ["edge1", "edge2"]) is not None
    # A passed playbook that left something behind is an invariant failure, not "needed".
    assert chaos.recover_needed(False, 0, {"edge1": "committed"}, ["edge2"]) is None


# ------------------------------------------------------------------ the injection, against fakes
class FakeProc:
    pid = 4321

    def __init__(self):
        self.done = threading.Event()

    def poll(self):
        return 0 if self.done.is_set() else None


class FakeLab:
    """What the injector sees and does on the lab, recorded."""

    def __init__(self, monkeypatch, receivers=(777,), states=None):
        self.receivers = list(receivers)
        self.states = states or {}
        self.calls: list = []
        monkeypatch.setattr(chaos, "receiver_pids", lambda svc: list(self.receivers))
        monkeypatch.setattr(chaos, "state_phase", lambda edge, svc: self.states.get(edge))
        monkeypatch.setattr(chaos, "progress_phase", lambda since: None)
        monkeypatch.setattr(chaos, "sshd_session_of", lambda pid: pid - 1)
        monkeypatch.setattr(chaos, "nft_drop_edges", lambda: self.calls.append(("drop", time.monotonic())))
        monkeypatch.setattr(chaos, "nft_clear", lambda: self.calls.append(("clear", time.monotonic())))
        monkeypatch.setattr(chaos.os, "kill", lambda pid, sig: self.calls.append(("kill", pid, sig)))
        monkeypatch.setattr(chaos.os, "killpg", lambda pid, sig: self.calls.append(("killpg", pid, sig)))


def injection(fault: str, proc: FakeProc, at: float = 0.0, hold_s: float | None = None, window_s: float = 0.2,
              receiver_up: bool = True):
    watch = chaos.ReceiverWatch("mysql", proc)
    if receiver_up:
        watch.first = watch.last = time.monotonic()
        watch.up.set()
    now = time.monotonic()
    inj = chaos.Injection(chaos.FAULTS[fault], chaos.Draw(1, fault, at, hold_s), proc, "mysql", "edge1", "edge2",
                          window_s, watch, now, time.time())
    inj.start()
    return inj


def test_kill_receiver_at_the_drawn_point(monkeypatch):
    lab = FakeLab(monkeypatch, states={"edge1": "frozen"})
    proc = FakeProc()
    t0 = time.monotonic()
    inj = injection("kill-receiver", proc, at=0.5, window_s=0.4)
    inj.join(timeout=5)
    assert time.monotonic() - t0 >= 0.2  # half of the 0.4 s window
    assert lab.calls == [("kill", 777, signal.SIGKILL)]
    rec = inj.record
    assert rec["injected"] and rec["phase"] == "stream"
    assert rec["states"] == {"source": "frozen", "target": None, "progress": None, "receiver": True}
    assert "SIGKILL to the receiver pid 777" in rec["detail"]


def test_sshd_session_killed_and_link_cut_for_the_drawn_time(monkeypatch):
    lab = FakeLab(monkeypatch, states={"edge1": "committed", "edge2": "committed"})
    proc = FakeProc()
    inj = injection("restore-held-session-killed-link-dropped", proc, at=0.0, hold_s=0.3)
    time.sleep(0.05)
    proc.done.set()  # the playbook ends during the cut: the cut still lasts its time
    inj.join(timeout=5)
    assert lab.calls[0] == ("kill", 776, signal.SIGKILL)
    (drop, t_drop), (clear, t_clear) = lab.calls[1], lab.calls[2]
    assert (drop, clear) == ("drop", "clear") and t_clear - t_drop >= 0.29
    assert inj.record["injected"] and inj.record["phase"] == "committed"
    assert inj.record["link_down_s"] >= 0.3


def test_a_fault_anchored_at_a_record_waits_for_it(monkeypatch):
    lab = FakeLab(monkeypatch)
    proc = FakeProc()
    inj = injection("link-cut-after-verified", proc, at=0.0, hold_s=0.05)
    time.sleep(0.15)
    assert not lab.calls  # not verified yet
    lab.states["edge2"] = "verified"
    inj.join(timeout=5)
    assert [c[0] for c in lab.calls] == ["drop", "clear", "clear"]  # healed, and once more on the way out
    assert inj.record["phase"] == "verified"


def test_missed_when_the_playbook_ends_first(monkeypatch):
    lab = FakeLab(monkeypatch, receivers=())
    proc = FakeProc()
    inj = injection("kill-sshd-session", proc, receiver_up=False)
    time.sleep(0.1)
    proc.done.set()
    inj.join(timeout=5)
    assert not inj.record["injected"] and "before the anchor" in inj.record["why"]
    assert lab.calls == []


def test_missed_when_the_receiver_is_gone_at_the_point(monkeypatch):
    lab = FakeLab(monkeypatch, receivers=())
    inj = injection("kill-receiver", FakeProc(), at=0.1)
    inj.join(timeout=5)
    assert not inj.record["injected"] and "the receiver had gone" in inj.record["why"], inj.record
    assert lab.calls == []


def test_kill_controller_and_a_hook_fault(monkeypatch):
    lab = FakeLab(monkeypatch, receivers=())
    inj = injection("kill-controller", FakeProc(), at=0.0, receiver_up=False)
    inj.join(timeout=5)
    assert lab.calls == [("killpg", FakeProc.pid, signal.SIGKILL)]
    assert inj.controller_killed and inj.record["phase"] == "pre-tasks"
    hook = injection("health-fails", FakeProc())
    hook.join(timeout=5)
    assert hook.record == {"injected": True, "phase": "health", "detail": 'EDGEMIG_FAULTS {"health": true}'}


def test_an_injector_error_is_recorded_not_raised(monkeypatch):
    FakeLab(monkeypatch)

    def boom():
        raise RuntimeError("nft: no such table")

    monkeypatch.setattr(chaos, "nft_drop_edges", boom)
    inj = injection("link-drop", FakeProc(), hold_s=0.1)
    inj.join(timeout=5)
    assert inj.record == {"injected": False, "why": "injector error: RuntimeError: nft: no such table"}
