# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Two runs of bench/migration_bench.py side by side, per cell and method (issue 27's "no behaviour change").

    python3 bench/compare_runs.py docs/benchmarks-precopy.json /tmp/new.json

Prints a markdown table: each run's client downtimes and their median, the module's stages (medians),
and a verdict per row. "within the noise" means the new median lies inside the old runs' spread widened
by the larger of 10 % and 0.05 s (two runs of a cell on this 2-core machine differ by that much: the last
matrix's mysql at 10 Mbit/s, 2.40 and 2.26 s); "lower" and "HIGHER" say which way it left it.
Cells only one of the runs has are listed apart, not compared.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

STAGES = ("checkpoint_s", "transfer_s", "restore_s")


def cell_name(result: dict) -> str:
    """A benchmark row's cell: its own name (``mysql-big``, ...) or its service's (bench_report's too)."""
    return result.get("cell") or result["service"]


def cell_of(result: dict) -> tuple[str, float, str]:
    """(cell name, link rate in Mbit/s, 0 = unshaped; method) of one migration result."""
    return (cell_name(result), float(result.get("rate_mbit") or 0), result["method"])


def by_cell(path: str) -> dict[tuple[str, float, str], list[dict]]:
    with open(path) as fh:
        data = json.load(fh)
    cells: dict[tuple[str, float, str], list[dict]] = {}
    for result in data["results"]:
        if result.get("ok") and result.get("client_downtime_s") is not None:
            cells.setdefault(cell_of(result), []).append(result)
    return cells


def verdict(old: list[float], new_median: float) -> str:
    slack = max(0.1 * statistics.median(old), 0.05)
    if new_median < min(old) - slack:
        return "lower"
    if new_median > max(old) + slack:
        return "HIGHER"
    return "within the noise"


def stage_medians(results: list[dict]) -> str:
    return " / ".join(f"{statistics.median(r['stages'].get(s, 0.0) for r in results):.2f}" for s in STAGES)


def runs(downtimes: list[float]) -> str:
    """The median in bold, then every run's value."""
    return f"**{statistics.median(downtimes):.2f}** ({', '.join(f'{x:.2f}' for x in downtimes)})"


def table(old_path: str, new_path: str) -> tuple[str, int]:
    old, new = by_cell(old_path), by_cell(new_path)
    rows = ["| cell | rate | method | old client downtime s | new client downtime s | old / new "
            "checkpoint / transfer / restore (medians) | verdict |", "|---|---|---|---|---|---|---|"]
    higher = 0
    for key in sorted(set(old) & set(new)):
        name, rate, method = key
        o = [r["client_downtime_s"] for r in old[key]]
        n = [r["client_downtime_s"] for r in new[key]]
        v = verdict(o, statistics.median(n))
        higher += v == "HIGHER"
        rows.append(f"| {name} | {f'{rate:g} Mbit/s' if rate else 'unshaped'} | {method} | {runs(o)} | {runs(n)} | "
                    f"{stage_medians(old[key])} vs {stage_medians(new[key])} | {v} |")
    alone = sorted(set(old) ^ set(new))
    if alone:
        rows.append("")
        rows.append("In one run only (not compared): " + ", ".join(
            f"{k[0]} {k[1]:g} {k[2]} ({'old' if k in old else 'new'})" for k in alone))
    return "\n".join(rows), higher


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="the earlier run's JSON (--json of bench/migration_bench.py)")
    ap.add_argument("new", help="the later run's JSON")
    args = ap.parse_args(argv)
    text, higher = table(args.old, args.new)
    print(text)
    print(f"\n{higher} row(s) HIGHER than the old run's spread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
