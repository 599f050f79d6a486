# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Mobility benchmark (issue 15, `make bench-mobility`): a scripted user walks between the lab's edges.

The follow rulebook (ansible-rulebook, extensions/eda/rulebooks/follow.yml) runs
against the lab; the user's client requests apache at its stable address every
50 ms all along. The trace mixes warm handovers (an approach ahead), cold ones
(a handover alone), dwell times from seconds to a minute, a 1.5 s visit, and a
border ping-pong (a handover every 2 s for 30 s). Per handover toward the edge
the service is not on: moved or not, warm or cold, reaction (event received ->
the client answered again after the freeze), split into hold (event -> go),
start + connect (go -> freeze), downtime (freeze -> up, from the migration's
report), and the client's failed and slow requests. Writes
reports/mobility-bench.json and the results section of docs/mobility.md.

    python bench/mobility_bench.py [--quick] [--dwell 3] [--ttl 30]
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lab"))
from collection_path import ensure_collection_path  # noqa: E402

ensure_collection_path()
import doc_section  # noqa: E402 (bench/ is on sys.path when run as a script)
from followutil import Prober, Rulebook, place  # noqa: E402
from labutil import ROOT, catalog, lab_is_up, run, running_on  # noqa: E402

LOCK = "/run/edgemig-lab.lock"
MARK_START, MARK_END = "<!-- mobility-bench:start -->", "<!-- mobility-bench:end -->"


def other(edge: str) -> str:
    return "edge2" if edge == "edge1" else "edge1"


def trace(quick: bool) -> list[tuple]:
    """Steps: ("approach"|"handover", edge, then_wait_s, label)."""
    def warm(edge: str, stay: float, label: str) -> list[tuple]:
        return [("approach", edge, 12.0, label), ("handover", edge, stay, label)]

    pp = []
    n = 8 if quick else 15
    for i in range(n):  # every 2 s; ends on edge2 when n is even... and on edge1 otherwise
        pp.append(("handover", "edge2" if i % 2 == 0 else "edge1", 2.0, "ping-pong"))
    if quick:
        return [*warm("edge2", 15.0, "warm"), ("handover", "edge1", 20.0, "cold"), *pp,
                ("handover", "edge2", 20.0, "after ping-pong"), *warm("edge1", 15.0, "warm")]
    return [
        *warm("edge2", 20.0, "warm"),
        *warm("edge1", 15.0, "warm"),
        ("handover", "edge2", 30.0, "cold"),
        *warm("edge1", 60.0, "warm"),
        *pp,  # 15 handovers, 30 s, ends on edge2
        ("handover", "edge2", 25.0, "after ping-pong"),
        ("handover", "edge1", 1.5, "1.5 s visit"),
        ("handover", "edge2", 20.0, "1.5 s visit"),
        ("handover", "edge1", 30.0, "cold"),
        *warm("edge2", 40.0, "warm"),
        *warm("edge1", 20.0, "warm"),
    ]


def analyse(log: list[dict], probe: Prober, steps: list[dict], spec: dict) -> dict:
    events = [e for e in log if "event" in e]
    gos = [e for e in log if e.get("decision", {}).get("action") == "go"]
    parked = {e["parked"]: e["t"] for e in log if isinstance(e.get("parked"), str)}  # done reports carry a dict
    done = {e["done"]: e for e in log if "done" in e}
    prepared_plans = {e["decision"]["plan"]: e for e in log if e.get("decision", {}).get("action") == "prepare"}
    moves = []
    for g in gos:
        d = g["decision"]
        plan, target = d["plan"], d["target"]
        hand = [e for e in events if e["event"].get("kind") == "handover" and e["event"].get("edge") == target
                and e["t_recv"] <= g["t"]]
        t_event = hand[-1]["t_recv"] if hand else g["t"]
        fin = done.get(plan, {})
        t_end = fin.get("t", g["t"] + 30)
        t_up = probe.back_after(t_event, t_end + 1.0)
        measured_by = "client"
        if t_up is None:
            t_up, measured_by = float(fin.get("t_migrated", t_end)), "playbook"
        downtime = float(fin.get("downtime_s", 0) or 0)
        stages = fin.get("stages_s") or {}
        t_freeze = t_up - downtime
        step = next((s for s in steps if abs(s["t"] - t_event) < 0.05), {})
        # The go -> freeze split (a parked move): the gate's answer as the source logged it, and the
        # module's own wall-clock marks (edge_migrate's parked.go_seen_at / freeze_at, in the done report).
        answered = [e["t"] for e in log if e.get("gate") == plan and e.get("answer") == "go"]
        marks = fin.get("parked") or {}
        split = None
        if answered and marks.get("go_seen_at") and marks.get("freeze_at"):
            split = {"go_to_answer_s": round(answered[0] - g["t"], 3),
                     "answer_to_seen_s": round(marks["go_seen_at"] - answered[0], 3),
                     "seen_to_freeze_s": round(marks["freeze_at"] - marks["go_seen_at"], 3),
                     "reaction_by_module_s": round(marks["freeze_at"] + downtime - t_event, 3)}
        moves.append({
            "plan": plan, "target": target, "label": step.get("label", ""),
            "warm": parked.get(plan, float("inf")) <= t_event,
            "reaction_s": round(t_up - t_event, 3), "measured_by": measured_by,
            "hold_s": round(g["t"] - t_event, 3),
            "start_connect_s": round(t_freeze - g["t"], 3),
            "connect_s": float(stages.get("connect_s", 0) or 0),
            "downtime_s": downtime,
            "prepare_s": round(parked.get(plan, g["t"]) - prepared_plans.get(plan, g)["t"], 3),
            "client": probe.window(t_event, t_end),
            "moved": bool(fin.get("moved")),
            "split": split,
        })
    # Handovers toward the edge the service was not on, that no move answered.
    return {"moves": moves}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dwell", type=float, default=3.0)
    ap.add_argument("--ttl", type=float, default=30.0)
    ap.add_argument("--out", default=os.path.join(ROOT, "reports", "mobility-bench.json"))
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "mobility.md"))
    args = ap.parse_args()
    spec = catalog()["apache"]
    port = spec["ports"][0]["host"]
    with open(LOCK, "w") as lock:
        print(f"waiting for {LOCK} ...", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert lab_is_up(), "the lab is not up: make provision"
        place("apache", "edge1")
        workdir = os.path.join(ROOT, "reports", "mobility-bench")
        os.makedirs(workdir, exist_ok=True)
        if os.path.exists(os.path.join(workdir, "follow-events.jsonl")):
            os.remove(os.path.join(workdir, "follow-events.jsonl"))
        # 0.3 s: the request timeout bounds how exactly the client sees the service back.
        probe = Prober(spec["address"], port, "/", timeout=0.3)
        steps: list[dict] = []
        with Rulebook(dwell_s=args.dwell, ttl_s=args.ttl, locations={"apache": "edge1"}, workdir=workdir) as rb:
            rb.event("edge1", "handover")  # the user starts where the service runs
            probe.start()
            t0 = time.time()
            for kind, edge, wait, label in trace(args.quick):
                t = time.time()
                rb.event(edge, kind, confidence=0.9)
                steps.append({"t": t, "kind": kind, "edge": edge, "label": label})
                print(f"{t - t0:7.1f} s  {kind:9s} {edge}  ({label})", flush=True)
                time.sleep(wait)
            rb.wait_idle("apache", 180)
            time.sleep(1.0)
            probe.stop()
            status = rb.status()
        log = status["log"]
        res = analyse(log, probe, steps, spec)
        plain = plain_runs(3 if args.quick else 5)
    # Hysteresis: handovers toward the edge the service was not on at the time, and the moves made.
    pp = [s for s in steps if s["label"] == "ping-pong"]
    pp_end = pp[-1]["t"] + 2.0 if pp else 0
    pp_moves = [g for g in log if g.get("decision", {}).get("action") == "go" and pp and pp[0]["t"] <= g["t"] < pp_end]
    counts = status["policy"]["counts"]
    handovers = [s for s in steps if s["kind"] == "handover"]
    # A handover "away" is one toward the edge the service was not on at that moment.
    moved_at = sorted((e["t"], e["location"]) for e in log if "done" in e and e.get("moved"))
    away = 0
    for h in handovers:
        where = "edge1"
        for t, loc in moved_at:
            if t <= h["t"]:
                where = loc
        away += h["edge"] != where
    summary = {
        "dwell_s": args.dwell, "ttl_s": args.ttl, "quick": args.quick,
        "handovers": len(handovers), "handovers_away": away,
        "moves": len(res["moves"]), "avoided_by_hysteresis": max(0, away - len(res["moves"])),
        "prepared": counts["prepared"], "cancelled": counts["cancelled"],
        "ping_pong_handovers": len(pp), "ping_pong_migrations": len(pp_moves),
        "client": probe.window(t0, time.time()),
    }
    for kind in ("warm", "cold"):
        rs = [m["reaction_s"] for m in res["moves"] if m["warm"] == (kind == "warm")]
        summary[f"{kind}_moves"] = len(rs)
        summary[f"{kind}_reaction_median_s"] = round(statistics.median(rs), 3) if rs else None
    summary["plain_runs"] = len(plain)
    summary["plain_wall_median_s"] = round(statistics.median(plain), 3) if plain else None
    out = {"summary": summary, "moves": res["moves"], "steps": steps, "running_on": running_on("apache"),
           "plain_wall_s": plain,
           "probe_timeout_s": probe.timeout}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    write_doc(args.doc, out)
    print(json.dumps(summary, indent=1))
    return 0


PLAIN = ["ansible-playbook", "playbooks/migrate.yml", "-e", "svc=apache"]


def plain_runs(n: int) -> list[float]:
    """Wall seconds of ``n`` runs of the main job as the README types it (to the other edge each
    time), in the checkout, with a user's environment: process start to exit."""
    walls = []
    for _unused in range(n):
        t = time.monotonic()
        proc = run(PLAIN)
        walls.append(round(time.monotonic() - t, 3))
        assert proc.returncode == 0, proc.stdout[-4000:]
        print(f"  {' '.join(PLAIN)}: {walls[-1]:.2f} s", flush=True)
    return walls


def write_doc(path: str, out: dict) -> None:
    s = out["summary"]
    lines = [MARK_START, "",
             f"Measured by `make bench-mobility{' QUICK=1' if s['quick'] else ''}` (`bench/mobility_bench.py`, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; dwell {s['dwell_s']:g} s, TTL {s['ttl_s']:g} s; "
             "raw data in `reports/mobility-bench.json`).", "",
             "| what | result | target |", "|---|---|---|",
             f"| apache reaction, warm (median of {s['warm_moves']}) | {_s(s['warm_reaction_median_s'])} | "
             "<= downtime + 0.3 s and <= 1.2 s |",
             f"| apache reaction, cold (median of {s['cold_moves']}) | {_s(s['cold_reaction_median_s'])} | <= 3.0 s |",
             f"| `{' '.join(PLAIN)}`, wall (median of {s.get('plain_runs', 0)}) | {_s(s.get('plain_wall_median_s'))} | "
             "<= 5 s |",
             f"| ping-pong: {s['ping_pong_handovers']} handovers every 2 s | {s['ping_pong_migrations']} migrations | <= 1 |",
             f"| handovers / toward the other edge / moves / avoided by hysteresis | {s['handovers']} / {s['handovers_away']} / "
             f"{s['moves']} / {s['avoided_by_hysteresis']} | |",
             f"| targets prepared / given up (TTL or user back) | {s['prepared']} / {s['cancelled']} | |",
             f"| client requests / failed / slow (> 0.5 s), whole trace | {s['client']['requests']} / {s['client']['failed']} / "
             f"{s['client']['slow']} | |", "",
             f"Per move (reaction = handover event received -> the client's first answer after the freeze, to within "
             f"its request timeout of {out['probe_timeout_s']:g} s; "
             "hold = event -> go; start + connect = go -> freeze, of which connect is edge_migrate's SSH setup and "
             "link probe; downtime from the migration's report):", "",
             "| # | label | to | warm | reaction | hold | start + connect | (connect) | downtime | prepare (ahead) | "
             "client failed / slow / longest gap |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, m in enumerate(out["moves"], 1):
        c = m["client"]
        lines.append(f"| {i} | {m['label']} | {m['target']} | {'yes' if m['warm'] else 'no'} | {m['reaction_s']:.2f} s"
                     f"{'' if m['measured_by'] == 'client' else '*'} | {m['hold_s']:.2f} s | {m['start_connect_s']:.2f} s | "
                     f"{m['connect_s']:.2f} s | {m['downtime_s']:.2f} s | {m['prepare_s']:.2f} s | "
                     f"{c['failed']} / {c['slow']} / {c['max_gap_s']:.2f} s |")
    lines += ["", "(* the client saw no interruption: reaction to the end of the freeze path as the playbook noted it)"]
    split = [(i, m["split"]) for i, m in enumerate(out["moves"], 1) if m.get("split")]
    if split:
        lines += ["", "Where go -> freeze goes in a parked move (the event source's log and edge_migrate's own wall-clock "
                  "marks, `parked.go_seen_at` and `parked.freeze_at`); reaction by the module = freeze begun + the "
                  "report's downtime - handover event, free of the client's request timeout:", "",
                  "| # | go -> gate answered | answered -> go seen on the source | go seen -> freeze | "
                  "reaction by the module | reaction by the client |", "|---|---|---|---|---|---|"]
        lines += [f"| {i} | {x['go_to_answer_s']:.3f} s | {x['answer_to_seen_s']:.3f} s | {x['seen_to_freeze_s']:.3f} s | "
                  f"{x['reaction_by_module_s']:.2f} s | {out['moves'][i - 1]['reaction_s']:.2f} s |" for i, x in split]
    lines += ["", MARK_END]
    block = "\n".join(lines)
    markers = (MARK_START, MARK_END)
    doc_section.write_section(path, markers, block, skeleton=doc_section.skeleton(markers, head="# Mobility\n\n"))


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


if __name__ == "__main__":
    sys.exit(main())
