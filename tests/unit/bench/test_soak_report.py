# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bench/soak_report.py: the soak's figures, counts by fault class and phase, and the markdown blocks."""
from __future__ import annotations

import os
import shutil
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path[:0] = [os.path.join(_ROOT, "bench"), os.path.join(_ROOT, "lab")]

import doc_section  # noqa: E402
import soak_report as sr  # noqa: E402

OK = {name: {"ok": True, "detail": "fine"} for name in sr.INVARIANTS}


def run(n, fault=None, phase=None, injected=True, rc=0, recover=None, outcome="target", ok=True, gap=2.0,
        downtime=1.9, hold=None, bad=None):
    invariants = {k: dict(v) for k, v in OK.items()}
    for name, detail in (bad or {}).items():
        invariants[name] = {"ok": False, "detail": detail}
    r = {"n": n, "from": "edge1" if n % 2 else "edge2", "to": "edge2" if n % 2 else "edge1", "fault": fault,
         "draw": {"at": 0.5, "hold_s": hold} if fault else None, "rc": rc, "recover": recover,
         "outcome": outcome, "invariants": invariants, "ok": ok and not bad, "writer_gap_s": gap,
         "downtime_s": downtime if rc == 0 else None}
    if fault:
        r["injection"] = {"injected": True, "phase": phase} if injected else {"injected": False, "why": "late"}
    return r


RUNS = [
    run(1),
    run(2, "kill-receiver", "stream", rc=2, outcome="source", gap=6.0),
    run(3, "kill-receiver", "stream", rc=2, outcome="source", gap=5.0),
    run(4, "kill-receiver", "warm", rc=2, outcome="source", gap=0.3),
    run(5, "link-drop", "stream", hold=12.5, rc=2, outcome="source", recover={"why": "x", "rc": 0}),
    run(6, "kill-controller", "committed", rc=-9, recover={"why": "killed", "rc": 0}),
    run(7, "kill-controller", injected=False, rc=0, gap=2.2),
    run(8, "restore-fails", "restore", rc=2, outcome="source",
        bad={"rows": "3 newly missing", "leftovers": "left: {'records': {'edge2': 'fenced'}}"}),
    run(9),
]


def by_cell(summary):
    return {(c["fault"], c["phase"]): c for c in summary["by_fault_phase"]}


def test_dist_and_fault_phase():
    assert sr.dist([]) == "n/a"
    assert sr.dist([3.0, 1.0, 2.0]) == "min 1.00 s, median 2.00 s, p95 3.00 s, max 3.00 s"
    assert sr.fault_phase(RUNS[0]) == ("none", "-")
    assert sr.fault_phase(RUNS[1]) == ("kill-receiver", "stream")
    assert sr.fault_phase(RUNS[6]) == ("kill-controller", "missed")
    assert sr.failed_invariants(RUNS[7]) == ["rows", "leftovers"]


def test_summary():
    s = sr.summary(RUNS)
    assert (s["runs"], s["completed"], s["failed"]) == (9, 3, 6)
    assert [f["n"] for f in s["failures"]] == [2, 3, 4, 5, 6, 8]
    assert s["invariant_failed_runs"] == 1
    assert s["invariant_failures"] == {"one_copy": 0, "address": 0, "rows": 1, "leftovers": 1}
    assert s["downtime_s"] == [1.9, 1.9, 1.9]  # the completed runs only
    assert len(s["writer_gap_s"]) == 9
    assert s["outcomes"] == {"target": 4, "source": 5, "neither": 0}


def test_counts_by_fault_class_and_phase():
    s = sr.chaos_summary(RUNS)
    assert (s["faults_drawn"], s["faults_injected"], s["faults_missed"]) == (7, 6, 1)
    assert (s["recover_needed"], s["recover_failed"]) == (2, 0)
    cells = by_cell(s)
    assert cells[("none", "-")]["runs"] == 2
    stream = cells[("kill-receiver", "stream")]
    assert (stream["runs"], stream["playbook_failed"], stream["source"], stream["invariant_failed"]) == (2, 2, 2, 0)
    assert cells[("kill-receiver", "warm")]["runs"] == 1
    assert cells[("kill-controller", "missed")]["runs"] == 1
    assert cells[("kill-controller", "committed")]["recover"] == 1
    assert cells[("restore-fails", "restore")]["invariant_failed"] == 1
    assert sum(c["runs"] for c in s["by_fault_phase"]) == len(RUNS)
    # Ordered: no fault first, then the classes in bench/chaos.py's order, phases in the migration's order.
    order = [(c["fault"], c["phase"]) for c in s["by_fault_phase"]]
    assert order == [("none", "-"), ("kill-receiver", "warm"), ("kill-receiver", "stream"), ("link-drop", "stream"),
                     ("kill-controller", "committed"), ("kill-controller", "missed"), ("restore-fails", "restore")]
    assert s["writer_gap_s_no_fault"] == [2.0, 2.0]
    assert 2.2 not in s["writer_gap_s_fault"]  # a missed fault is not a faulted run's gap


def chaos_res(runs=None, **extra):
    runs = RUNS if runs is None else runs
    return {"count": 10, **sr.chaos_summary(runs), "acked_rows": 1234, "lost_rows": 3, "writer_errors": 40,
            "wall_s": 321.4, "finished": "2027-01-01 10:00:00 UTC",
            "command": "python3 bench/soak.py --count 10 --chaos --seed 42", "stopped": None, "run_records": runs,
            **extra}


def test_chaos_block():
    block = sr.chaos_block(chaos_res())
    lines = block.splitlines()
    assert lines[0] == sr.CHAOS_MARKERS[0] and lines[-1] == sr.CHAOS_MARKERS[1]
    assert "`python3 bench/soak.py --count 10 --chaos --seed 42`" in block
    assert "| migrations asked / run | 10 / 9 |" in block
    assert "| fault drawn / injected / missed (the migration was past the drawn point) | 7 / 6 / 1 |" in block
    assert "| `recover.yml` needed / failed | 2 / 0 |" in block
    assert "| **runs with an invariant failed** | **1** (" in block
    assert "acknowledged rows present 1" in block
    assert "| **acknowledged rows lost** | **3** of 1234 |" in block
    assert "| kill-receiver | stream | 2 | 2 | 0 | 0 / 2 / 0 | 0 |" in block
    assert "| kill-controller | missed | 1 | 0 | 0 | 1 / 0 / 0 | 0 |" in block
    assert "- run 8 (restore-fails @ restore): rows: 3 newly missing; leftovers: left:" in block
    assert "| 5 | edge1->edge2 | link-drop @ stream (12.5 s cut) | 2 | rc 0 | source | 2.00 | n/a | ok |" in block
    assert "| 1 | edge1->edge2 | - | 0 | - | target | 2.00 | 1.90 | ok |" in block
    assert "| 8 | edge2->edge1 | restore-fails @ restore | 2 | - | source | 2.00 | n/a | **rows, leftovers** |" in block
    assert "stopped early" not in block
    per_run = [ln for ln in lines if ln.startswith("| ") and ln.split("|")[1].strip().isdigit()]
    assert len(per_run) == len(RUNS)


def test_chaos_block_says_when_the_soak_stopped():
    block = sr.chaos_block(chaos_res(stopped="after run 8 recover.yml left mysql running on no edge"))
    assert "**The soak stopped early: after run 8 recover.yml left mysql running on no edge**" in block


def test_chaos_block_without_any_fault_or_failure():
    runs = [run(1), run(2)]
    block = sr.chaos_block(chaos_res(runs, lost_rows=0))
    assert "| fault drawn / injected / missed (the migration was past the drawn point) | 0 / 0 / 0 |" in block
    assert "writer's longest gap, runs with a fault injected | n/a |" in block
    assert "Invariant failures" not in block


def test_soak_block_keeps_the_plain_figures():
    runs = [run(1, gap=2.1, downtime=2.0), run(2, rc=2, gap=9.0)]
    res = {"count": 2, **sr.summary(runs), "acked_rows": 500, "lost_rows": 0, "writer_errors": 3, "wall_s": 30.2,
           "finished": "2027-01-01 10:00:00 UTC", "command": "python3 bench/soak.py --count 2",
           "run_records": runs}
    block = sr.soak_block(res)
    assert block.startswith(sr.SOAK_MARKERS[0]) and block.endswith(sr.SOAK_MARKERS[1])
    assert "| migrations asked / completed | 2 / 1 |" in block
    assert "| **acknowledged rows lost** | **0** |" in block
    assert "Per migration (writer gap s / downtime_s): 2.10/2.00, 9.00/n/a" in block


def test_the_chaos_block_replaces_what_reliability_md_holds_between_its_markers(tmp_path):
    doc = tmp_path / "reliability.md"
    shutil.copy(os.path.join(_ROOT, "docs", "reliability.md"), doc)
    before = doc.read_text()
    assert before.count(sr.CHAOS_MARKERS[0]) == 1 and before.count(sr.CHAOS_MARKERS[1]) == 1
    block = sr.chaos_block(chaos_res())
    doc_section.write_section(str(doc), sr.CHAOS_MARKERS, block)
    after = doc.read_text()
    assert block in after and after.count(sr.CHAOS_MARKERS[0]) == 1
    head = before.split(sr.CHAOS_MARKERS[0])[0]
    assert after.startswith(head)  # the soak block and everything else untouched
    assert after.endswith(before.split(sr.CHAOS_MARKERS[1])[1])
    doc_section.write_section(str(doc), sr.CHAOS_MARKERS, block)
    assert doc.read_text() == after  # idempotent
