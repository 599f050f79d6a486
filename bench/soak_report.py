# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The soak's figures and its markdown blocks in docs/reliability.md (bench/soak.py; pure, no lab).

One record per migration comes in (bench/soak.py ``migrate_once``): the fault
drawn and what the injection did, the playbook's rc, recover.yml if it was
needed, where the service ended, the writer's gap, ``downtime_s`` and the
invariants. Out come the JSON summary and the block between the ``soak`` or
the ``chaos`` markers (written in place by bench/doc_section.py). Unit-tested in tests/unit/bench/test_soak_report.py.
"""
from __future__ import annotations

import statistics

from chaos import FAULT_CLASSES

SOAK_MARKERS = ("<!-- soak:begin -->", "<!-- soak:end -->")
CHAOS_MARKERS = ("<!-- chaos:begin -->", "<!-- chaos:end -->")
INVARIANTS = ("one_copy", "address", "rows", "leftovers")
INVARIANT_NAMES = {"one_copy": "one running copy", "address": "address on one edge",
                   "rows": "acknowledged rows present", "leftovers": "no dump dir, record or receiver left"}
# Table order: the migration's own order, then what is not a migration phase.
PHASES = ("-", "pre-tasks", "prepare", "warm", "checkpoint", "stream", "verified", "in_doubt", "committed",
          "restore", "health", "fenced", "rollback", "after-switch", "missed")


def dist(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    return f"min {xs[0]:.2f} s, median {statistics.median(xs):.2f} s, p95 {p95:.2f} s, max {xs[-1]:.2f} s"


# ------------------------------------------------------------------ one run's facts
def failed_invariants(run: dict) -> list[str]:
    return [name for name in INVARIANTS if not run.get("invariants", {}).get(name, {}).get("ok", False)]


def fault_phase(run: dict) -> tuple[str, str]:
    """(fault class, phase it hit): ("none", "-") without a fault, phase "missed" if it never hit."""
    if not run.get("fault"):
        return "none", "-"
    injection = run.get("injection") or {}
    return run["fault"], (injection.get("phase") or "?") if injection.get("injected") else "missed"


def summary(runs: list[dict]) -> dict:
    """The figures of both soaks (plain: every fault is "none")."""
    completed = [r for r in runs if r["rc"] == 0]
    bad = [r for r in runs if not r["ok"]]
    return {
        "runs": len(runs),
        "completed": len(completed),
        "failed": len(runs) - len(completed),
        "failures": [{"n": r["n"], "from": r["from"], "to": r["to"], "rc": r["rc"], "tail": r.get("tail", "")}
                     for r in runs if r["rc"] != 0],
        "invariant_failed_runs": len(bad),
        "invariant_failures": {name: sum(1 for r in runs if name in failed_invariants(r)) for name in INVARIANTS},
        "writer_gap_s": [r["writer_gap_s"] for r in runs],
        "downtime_s": [r["downtime_s"] for r in completed if r.get("downtime_s") is not None],
        "outcomes": {o: sum(1 for r in runs if r["outcome"] == o) for o in ("target", "source", "neither")},
    }


def chaos_summary(runs: list[dict]) -> dict:
    """Counts by fault class and the phase it hit, on top of ``summary``."""
    cells: dict[tuple[str, str], dict] = {}
    for r in runs:
        fault, phase = fault_phase(r)
        c = cells.setdefault((fault, phase), {"fault": fault, "phase": phase, "runs": 0, "playbook_failed": 0,
                                              "recover": 0, "target": 0, "source": 0, "neither": 0,
                                              "invariant_failed": 0})
        c["runs"] += 1
        c["playbook_failed"] += r["rc"] != 0
        c["recover"] += bool(r.get("recover"))
        c[r["outcome"]] += 1
        c["invariant_failed"] += not r["ok"]
    order = ["none"] + [f.name for f in FAULT_CLASSES]

    def key(c: dict) -> tuple:
        return (order.index(c["fault"]) if c["fault"] in order else len(order), c["fault"],
                PHASES.index(c["phase"]) if c["phase"] in PHASES else len(PHASES), c["phase"])

    faulted = [r for r in runs if r.get("fault")]
    injected = [r for r in faulted if (r.get("injection") or {}).get("injected")]
    recovered = [r for r in runs if r.get("recover")]
    return {
        **summary(runs),
        "faults_drawn": len(faulted),
        "faults_injected": len(injected),
        "faults_missed": len(faulted) - len(injected),
        "recover_needed": len(recovered),
        "recover_failed": sum(1 for r in recovered if r["recover"].get("rc") != 0),
        "by_fault_phase": sorted(cells.values(), key=key),
        "writer_gap_s_no_fault": [r["writer_gap_s"] for r in runs if not r.get("fault")],
        "writer_gap_s_fault": [r["writer_gap_s"] for r in injected],
    }


# ------------------------------------------------------------------ markdown
def _num(v, nd: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _lost(res: dict) -> str:
    return "unknown (the table could not be read)" if res["lost_rows"] is None else str(res["lost_rows"])


def soak_block(res: dict) -> str:
    """The plain soak's block (``make soak``)."""
    gaps, downs = res["writer_gap_s"], res["downtime_s"]
    per = [f"{_num(r['writer_gap_s'])}/{_num(r.get('downtime_s'))}" for r in res["run_records"]]
    return "\n".join([
        SOAK_MARKERS[0],
        f"Last run: {res['finished']} - `{res['command']}`",
        "",
        "| figure | value |",
        "|---|---|",
        f"| migrations asked / completed | {res['count']} / {res['completed']} |",
        f"| failed migrations | {res['failed']} |",
        f"| rows committed and acknowledged | {res['acked_rows']} |",
        f"| **acknowledged rows lost** | **{_lost(res)}** |",
        f"| runs with an invariant failed (one copy, address, rows, leftovers) | {res['invariant_failed_runs']} |",
        f"| writer errors (connections reset by the move, retried) | {res['writer_errors']} |",
        f"| writer's longest gap per migration | {dist(gaps)} |",
        f"| report `downtime_s` (freeze -> address answers on the target) | {dist(downs)} |",
        f"| wall time | {res['wall_s']:.0f} s |",
        *(["", f"**The soak stopped early: {res['stopped']}**"] if res.get("stopped") else []),
        "",
        "Per migration (writer gap s / downtime_s): " + ", ".join(per),
        SOAK_MARKERS[1],
    ])


def _run_row(r: dict) -> str:
    fault, phase = fault_phase(r)
    hit = "-" if fault == "none" else f"{fault} @ {phase}"
    if (r.get("draw") or {}).get("hold_s") and phase != "missed":
        hit += f" ({r['draw']['hold_s']} s cut)"
    rec = "-" if not r.get("recover") else f"rc {r['recover'].get('rc')}"
    inv = "ok" if r["ok"] else "**" + ", ".join(failed_invariants(r)) + "**"
    return (f"| {r['n']} | {r['from']}->{r['to']} | {hit} | {r['rc']} | {rec} | {r['outcome']} | "
            f"{_num(r['writer_gap_s'])} | {_num(r.get('downtime_s'))} | {inv} |")


def chaos_block(res: dict) -> str:
    """The chaos soak's block (``make soak CHAOS=1``)."""
    fails = res["invariant_failures"]
    out = [
        CHAOS_MARKERS[0],
        f"Last run: {res['finished']} - `{res['command']}`",
        "",
        "| figure | value |",
        "|---|---|",
        f"| migrations asked / run | {res['count']} / {res['runs']} |",
        f"| fault drawn / injected / missed (the migration was past the drawn point) | "
        f"{res['faults_drawn']} / {res['faults_injected']} / {res['faults_missed']} |",
        f"| playbook rc != 0 | {res['failed']} |",
        f"| `recover.yml` needed / failed | {res['recover_needed']} / {res['recover_failed']} |",
        f"| where the service ended: target / source / neither | {res['outcomes']['target']} / "
        f"{res['outcomes']['source']} / {res['outcomes']['neither']} |",
        f"| **runs with an invariant failed** | **{res['invariant_failed_runs']}** ("
        + ", ".join(f"{INVARIANT_NAMES[k]} {fails[k]}" for k in INVARIANTS) + ") |",
        f"| **acknowledged rows lost** | **{_lost(res)}** of {res['acked_rows']} |",
        f"| writer's longest gap, runs without a fault | {dist(res['writer_gap_s_no_fault'])} |",
        f"| writer's longest gap, runs with a fault injected | {dist(res['writer_gap_s_fault'])} |",
        f"| report `downtime_s` (migrations that completed) | {dist(res['downtime_s'])} |",
        f"| wall time | {res['wall_s']:.0f} s |",
    ]
    if res.get("stopped"):
        out += ["", f"**The soak stopped early: {res['stopped']}**"]
    out += ["", "By fault class and the phase it hit:", "",
            "| fault class | phase | runs | playbook rc != 0 | `recover.yml` | ended on target / source / neither "
            "| invariant failed |",
            "|---|---|---|---|---|---|---|"]
    out += [f"| {c['fault']} | {c['phase']} | {c['runs']} | {c['playbook_failed']} | {c['recover']} | "
            f"{c['target']} / {c['source']} / {c['neither']} | {c['invariant_failed']} |"
            for c in res["by_fault_phase"]]
    bad = [r for r in res["run_records"] if not r["ok"]]
    if bad:
        out += ["", "Invariant failures (each run converged with `recover.yml` before the next):", ""]
        out += [f"- run {r['n']} ({fault_phase(r)[0]} @ {fault_phase(r)[1]}): "
                + "; ".join(f"{k}: {r.get('invariants', {}).get(k, {}).get('detail', 'not checked')}"
                            for k in failed_invariants(r)) for r in bad]
    out += ["", "<details><summary>Per run</summary>", "",
            "| # | move | fault @ phase | rc | `recover.yml` | ended on | writer gap s | downtime_s | invariants |",
            "|---|---|---|---|---|---|---|---|---|"]
    out += [_run_row(r) for r in res["run_records"]]
    out += ["", "</details>", CHAOS_MARKERS[1]]
    return "\n".join(out)
