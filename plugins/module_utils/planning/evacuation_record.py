# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What an evacuation did, per service: the record kept on the controller and the table printed.

evacuate.yml writes the plan's moves as ``planned`` to reports/evacuate-<edge>.json before anything
moves, and each move's outcome after (the lanes report ``moved`` or ``failed``); a move whose lane
never reported (the controller or a lane died) stays ``unknown``. The return reads the record to know
what to bring back and marks what came back ``returned``. recover.yml -e edge= reads it to know
which services to converge. The controller keeps it because the edge it is about may be down.
"""
from __future__ import annotations

from typing import Any

OK = ("moved", "returned")


def _seconds(value: Any) -> float | None:
    try:
        return round(float(value), 3)
    except (TypeError, ValueError):
        return None


def planned(plan: dict) -> list[dict]:
    """The plan's moves as records, before anything moves."""
    return [{"service": m["service"], "source": m["source"], "target": m["target"], "status": "planned"}
            for m in plan.get("moves") or []]


def outcome(plan: dict, done: Any, record: Any = None) -> dict:
    """Each planned move's outcome from the lanes' reports (``done``: a list of ``service``, ``target``,
    ``ok``, ``msg``, ``downtime_s``, ``report``), and the record to keep: the plan's moves, or, for a
    return, the evacuation's ``record`` (its moves) with what came back marked ``returned``."""
    by_service = {d.get("service"): d for d in done or [] if isinstance(d, dict)}
    back = plan.get("mode") == "return"
    rows = []
    for m in plan.get("moves") or []:
        d = by_service.get(m["service"])
        row = {"service": m["service"], "source": m["source"], "target": m["target"]}
        if d is None:
            row.update(status="unknown", note=f"no outcome (lane stopped): run playbooks/recover.yml -e edge={plan['edge']}")
        elif d.get("ok"):
            row.update(status="returned" if back else "moved", downtime_s=_seconds(d.get("downtime_s")),
                       note=str(d.get("report") or ""))
        else:
            row.update(status="failed", note=str(d.get("msg") or "failed")[:300])
        rows.append(row)
    keep = rows
    if back:
        status = {r["service"]: r["status"] for r in rows}
        keep = [dict(r, status=status.get(r.get("service"), r.get("status")))
                for r in (record or {}).get("moves") or [] if isinstance(r, dict)]
    failed = [r["service"] for r in rows if r["status"] not in OK]
    return {"rows": rows, "record": {"edge": plan.get("edge"), "mode": "evacuate", "moves": keep,
                                     "stays": plan.get("stays") if not back else (record or {}).get("stays", [])},
            "failed": failed, "table": table(rows, plan.get("stays") or [])}


def table(rows: list[dict], stays: list[dict]) -> list[str]:
    """One line per service: what a person scans at the end of a run."""
    width = max([len(r["service"]) for r in rows] + [len(s["service"]) for s in stays] + [7])
    out = [f"{'service':<{width}}  {'from':<8} {'to':<8} {'status':<9} {'downtime':>9}  note"]
    for r in rows:
        down = f"{r['downtime_s']:.2f} s" if isinstance(r.get("downtime_s"), (int, float)) else "-"
        out.append(f"{r['service']:<{width}}  {r['source']:<8} {r['target']:<8} {r['status']:<9} {down:>9}  {r.get('note', '')}")
    for s in stays:
        out.append(f"{s['service']:<{width}}  {s['runs_on']:<8} {'-':<8} {'stays':<9} {'-':>9}  {s['reason']}")
    return out
