# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The services' downtime table (issue 29) from what tests/integration/test_services.py recorded.

    python3 bench/services_table.py reports/services-downtime.json [--commit C] [--write]

Prints the markdown table (per service: each hop's downtime, what crossed the wire, the checkpoint and
the restore, the writes the clients had acknowledged and how many of them were lost); ``--write`` puts
it between the services markers of docs/benchmarks-notes.md and docs/benchmarks.md (bench/doc_section.py;
benchmarks.md holds the notes verbatim, so both change alike) and keeps the raw data beside them as
docs/benchmarks-services.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

import doc_section

MARKERS = ("<!-- services:begin -->", "<!-- services:end -->")
DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
TARGETS = ("benchmarks-notes.md", "benchmarks.md")
RAW = "benchmarks-services.json"
# The load each test puts on its service (tests/integration/test_services.py).
LOADS = {"redis": "RPUSH, one client", "postgres": "INSERT + COMMIT per row", "nginx": "GET through nginx (-> apache)",
         "mosquitto": "2 QoS 1 publishers, 1 QoS 1 persistent subscriber", "pyapp": "GET / (3 gunicorn workers)"}


def seconds(value) -> str:
    """A stage's seconds, or "?" where the report had none (a stage not measured on that path)."""
    return f"{value:.2f} s" if isinstance(value, (int, float)) else "?"


def hop_cell(hop: dict | None) -> str:
    if not hop:
        return "not measured"
    # bytes_wire: the stream after the freeze (the warm rounds sent the rest before it); bytes_raw: the dump
    return (f"{hop['downtime_s']:.2f} ({hop['source']} -> {hop['target']}; {hop['bytes_wire'] / 1e6:.2f} MB sent "
            f"after the freeze of a {hop['bytes_raw'] / 1e6:.1f} MB dump; checkpoint {seconds(hop.get('checkpoint_s'))}, "
            f"restore {seconds(hop.get('restore_s'))})")


def writes_cell(svc: dict) -> str:
    writes = svc.get("writes")
    return f"{writes['lost']} of {writes['acknowledged']}" if writes else "n/a (reads)"


def table(data: dict, commit: str | None = None) -> str:
    lines = [f"Measured at {commit}; raw data `docs/{RAW}`." if commit else f"Raw data `docs/{RAW}`.", "",
             "| service | load during the move | downtime hop 1, s | downtime hop 2, s | acknowledged writes lost |",
             "|---|---|---|---|---|"]
    for name in sorted(data):
        svc = data[name]
        lines.append(f"| {name} | {LOADS.get(name, '-')} | {hop_cell(svc.get('hop0'))} | {hop_cell(svc.get('hop1'))} "
                     f"| {writes_cell(svc)} |")
    return "\n".join(lines)


def section(data: dict, commit: str | None = None) -> str:
    return f"{MARKERS[0]}\n{table(data, commit)}\n{MARKERS[1]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="reports/services-downtime.json, written by tests/integration/test_services.py")
    ap.add_argument("--commit", help="the commit the run measured (named in the section)")
    ap.add_argument("--write", action="store_true", help="write the section into docs/ and keep the raw data")
    args = ap.parse_args(argv)
    with open(args.data) as fh:
        data = json.load(fh)
    block = section(data, args.commit)
    if not args.write:
        print(block)
        return 0
    paths = [os.path.join(DOCS, name) for name in TARGETS]
    for path in paths:  # both checked before either is written
        doc_section.read_document(path, MARKERS)
    for path in paths:
        doc_section.write_section(path, MARKERS, block)
    shutil.copyfile(args.data, os.path.join(DOCS, RAW))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
