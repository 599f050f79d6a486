# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bench/soak.py's per-migration flow against a fake lab: the playbook, the fault, recover.yml where
needed, the invariants and what the run records. Nothing here reaches the lab (nor its lock)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path[:0] = [os.path.join(_ROOT, "bench"), os.path.join(_ROOT, "lab")]

import chaos  # noqa: E402
import soak  # noqa: E402

SPEC = {"address": "10.213.0.102"}


class FakeProc:
    pid = 999

    def __init__(self, rc: int):
        self.rc, self.returncode = rc, None
        self.done = threading.Event()

    def poll(self):
        return self.returncode


class FakeWriter:
    table = "soak"

    def __init__(self, acked):
        self.acked = list(acked)

    def snapshot(self):
        return list(self.acked)

    def longest_gap(self, t0, t1):
        return 2.5


class Lab:
    """Two edges as the soak sees them. ``moves``: the playbook moves the service (else it stays);
    ``rc``: the playbook's exit status; ``hang``: it runs until killed."""

    def __init__(self, monkeypatch, rc=0, moves=True, hang=False, rows=("a", "b")):
        self.where = ["edge1"]
        self.address = ["edge1"]
        self.records: dict = {}
        self.rows = set(rows)
        self.playbooks: list = []
        self.recovers = 0
        self.rc, self.moves, self.hang = rc, moves, hang
        for name, fn in {"running_on": lambda svc: list(self.where),
                         "address_on": lambda addr: list(self.address),
                         "state_phase": lambda edge, svc: self.records.get(edge),
                         "leftover_dumps": lambda svc: {},
                         "receiver_pids": lambda svc: [],
                         "module_pids": lambda module="edge_migrate": [],
                         "wait_answering": lambda spec, timeout=0: 1.0,
                         "sql": lambda spec, query, *a, **k: [(v,) for v in self.rows],
                         "start_playbook": self.start, "finish": self.finish, "playbook": self.playbook,
                         "report_downtime": lambda svc, since: 1.8}.items():
            monkeypatch.setattr(soak, name, fn)
        for name in ("ADDRESS_SETTLE_S", "LEFTOVERS_SETTLE_S", "QUIET_S", "QUIET_KILLED_S", "WRITER_RESUME_S",
                     "RECOVER_RETRY_S"):
            monkeypatch.setattr(soak, name, 0.1)
        monkeypatch.setattr(chaos, "receiver_pids", lambda svc: [])
        monkeypatch.setattr(chaos, "state_phase", lambda edge, svc: self.records.get(edge))
        monkeypatch.setattr(chaos, "progress_phase", lambda since: None)
        monkeypatch.setattr(chaos.os, "killpg", self.killpg)

    def start(self, name, *extra):
        self.playbooks.append((name, extra))
        self.proc = FakeProc(self.rc)
        return self.proc

    def finish(self, proc, timeout=0):
        if not self.hang:
            proc.done.set()
            proc.returncode = proc.rc
            if self.moves:
                self.where = self.address = ["edge2"]
        proc.done.wait(5)
        return "PLAY RECAP"

    def killpg(self, pid, sig):
        # The controller dies; the module on the source finishes the migration alone.
        self.proc.returncode = -sig
        self.where, self.records = ["edge1", "edge2"], {"edge1": "committed"}  # source copy not removed yet
        self.proc.done.set()

    def playbook(self, name, *extra, check=True, timeout=0):
        assert name == "recover.yml"
        self.recovers += 1
        self.where = self.address = ["edge2"]
        self.records = {}
        return subprocess.CompletedProcess([name], 0, "ok", "")


def test_a_plain_migration(monkeypatch):
    lab = Lab(monkeypatch)
    run = soak.migrate_once(chaos.Draw(1), "mysql", SPEC, FakeWriter(["a", "b"]), set(), None, 8)
    assert lab.playbooks == [("migrate.yml", ("-e", "svc=mysql", "-e", "target=edge2"))]  # no chaos settings
    assert run["ok"] and run["outcome"] == "target" and run["rc"] == 0 and run["recover"] is None
    assert run["downtime_s"] == 1.8 and run["writer_gap_s"] == 2.5 and run["fault"] is None
    assert run["invariants"]["rows"]["detail"] == "2 of 2 acknowledged rows present"
    assert "tail" not in run


def test_a_clean_chaos_run_uses_the_short_stall_timeout_and_teaches_the_windows(monkeypatch):
    lab = Lab(monkeypatch)
    windows = chaos.Windows()
    run = soak.migrate_once(chaos.Draw(1), "mysql", SPEC, FakeWriter(["a"]), set(), windows, 8)
    assert lab.playbooks[0][1][-2:] == ("-e", "edgemig_stall_timeout=8")
    assert run["ok"] and windows.playbook_s == [run["playbook_s"]]


def test_a_killed_controller_is_followed_by_recover_yml(monkeypatch):
    lab = Lab(monkeypatch, hang=True)
    draw = chaos.Draw(3, "kill-controller", at=0.0)
    run = soak.migrate_once(draw, "mysql", SPEC, FakeWriter(["a"]), set(), chaos.Windows(), 8)
    assert run["injection"]["injected"] and run["injection"]["phase"] == "pre-tasks"
    assert run["rc"] == -9 and lab.recovers == 1
    assert run["recover"]["why"].startswith("the controller was killed") and run["recover"]["rc"] == 0
    assert run["ok"] and run["outcome"] == "target" and run["downtime_s"] is None
    assert "tail" in run  # rc != 0: the output is kept


def test_a_failed_playbook_that_converged_needs_no_recovery(monkeypatch):
    lab = Lab(monkeypatch, rc=2, moves=False)
    run = soak.migrate_once(chaos.Draw(1, "restore-fails"), "mysql", SPEC, FakeWriter(["a"]), set(),
                            chaos.Windows(), 8)
    assert '"restore": true' in lab.playbooks[0][1][-3]
    assert run["rc"] == 2 and run["recover"] is None and lab.recovers == 0
    assert run["ok"] and run["outcome"] == "source"
    assert run["injection"] == {"injected": True, "phase": "restore", "detail": 'EDGEMIG_FAULTS {"restore": true}'}


def test_broken_invariants_are_recorded_with_what_was_seen(monkeypatch):
    lab = Lab(monkeypatch, rows=("a",))
    lab.finish = lambda proc, timeout=0: (setattr(proc, "returncode", 0), "PLAY RECAP")[1]
    monkeypatch.setattr(soak, "finish", lab.finish)
    lab.where, lab.address = ["edge1", "edge2"], []  # two copies, no address
    monkeypatch.setattr(soak, "leftover_dumps", lambda svc: {"edge1": ["mysql-20270101T000000-1"]})
    lost: set = set()
    run = soak.migrate_once(chaos.Draw(1), "mysql", SPEC, FakeWriter(["a", "b", "c"]), lost, None, 8)
    inv = run["invariants"]
    assert not run["ok"] and run["outcome"] == "neither"
    assert inv["one_copy"] == {"ok": False, "detail": "running on ['edge1', 'edge2']"}
    assert inv["address"] == {"ok": False, "detail": "10.213.0.102 on no edge"}
    assert not inv["rows"]["ok"] and "2 newly missing" in inv["rows"]["detail"]
    assert not inv["leftovers"]["ok"] and "mysql-20270101T000000-1" in inv["leftovers"]["detail"]
    assert lost == {"b", "c"}
    # The same rows missing again: reported, but they do not fail the next run too.
    again = soak.check_rows(SPEC, FakeWriter(["a", "b", "c"]), lost)
    assert again["ok"] and "0 newly missing" in again["detail"] and "2 missing before" in again["detail"]


def test_converge_says_whether_one_copy_runs_again(monkeypatch):
    lab = Lab(monkeypatch)
    lab.where = []
    assert soak.converge("mysql")["ok"] and lab.recovers == 1

    def broken(name, *extra, check=True, timeout=0):
        return subprocess.CompletedProcess([name], 2, "recovery of mysql is not complete", "")

    monkeypatch.setattr(soak, "playbook", broken)
    lab.where = []
    out = soak.converge("mysql")
    assert not out["ok"] and out["rc"] == 2 and out["attempts"] == 2 and "not complete" in out["tail"]


def test_report_downtime_only_from_this_run(tmp_path, monkeypatch):
    monkeypatch.setattr(soak, "ROOT", str(tmp_path))
    (tmp_path / "reports").mkdir()
    report = tmp_path / "reports" / "migrate-mysql-latest.json"
    report.write_text('{"downtime_s": 2.25}')
    assert soak.report_downtime("mysql", time.time() - 60) == 2.25
    assert soak.report_downtime("mysql", time.time() + 60) is None  # an older run's report
    assert soak.report_downtime("apache", 0) is None


@pytest.mark.parametrize("argv,cmd", [
    ([], "python3 bench/soak.py --count 50"),
    (["--chaos", "--count", "100", "--seed", "7"], "python3 bench/soak.py --count 100 --chaos --seed 7"),
    (["--chaos", "--seed", "7", "--faults", "link-drop", "--fault-ratio", "0.3"],
     "python3 bench/soak.py --count 50 --chaos --seed 7 --fault-ratio 0.3 --faults link-drop"),
])
def test_the_command_line_is_reported_so_it_can_be_run_again(monkeypatch, argv, cmd):
    monkeypatch.setattr(sys, "argv", ["soak.py", *argv])
    assert soak.command_of(soak.parse_args()) == cmd
