# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Endurance run (issue 6, ``make soak``): migrate MariaDB back and forth while a writer commits rows.

A writer thread commits one row at a time through the service address
(PyMySQL, autocommit off, one INSERT + COMMIT per row) and remembers every
row whose COMMIT was acknowledged. After each migration every acknowledged
row must be in the table. Reports lost rows (must be 0), the writer's longest
gap per migration (client-visible downtime) and the migration report's
``downtime_s``; writes reports/soak-latest.json and, with --doc, the figures
into docs/reliability.md (between the soak markers).

    python3 bench/soak.py [--count 50] [--doc docs/reliability.md]
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lab"))
from labutil import Writer, catalog, env, running_on, sql, wait_answering  # noqa: E402

LOCK = "/run/edgemig-lab.lock"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


def migrate(svc: str, target: str) -> tuple[int, str]:
    cmd = ["ansible-playbook", "-i", os.path.join(ROOT, "inventory", "lab.yml"),
           os.path.join(ROOT, "playbooks", "migrate.yml"), "-e", f"svc={svc}", "-e", f"target={target}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900, check=False)
    return proc.returncode, proc.stdout[-3000:] + proc.stderr[-1000:]


def write_doc(path: str, res: dict) -> None:
    gaps, downs = res["writer_gap_s"], res["downtime_s"]

    def dist(xs):
        if not xs:
            return "n/a"
        xs = sorted(xs)
        p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
        return (f"min {xs[0]:.2f} s, median {statistics.median(xs):.2f} s, p95 {p95:.2f} s, "
                f"max {xs[-1]:.2f} s")
    block = "\n".join([
        BEGIN,
        f"Last run: {res['finished']} - `{res['command']}`",
        "",
        "| figure | value |",
        "|---|---|",
        f"| migrations asked / completed | {res['count']} / {res['completed']} |",
        f"| failed migrations | {res['failed']} |",
        f"| rows committed and acknowledged | {res['acked_rows']} |",
        f"| **acknowledged rows lost** | **{res['lost_rows']}** |",
        f"| writer errors (connections reset by the move, retried) | {res['writer_errors']} |",
        f"| writer's longest gap per migration | {dist(gaps)} |",
        f"| report `downtime_s` (freeze -> address answers on the target) | {dist(downs)} |",
        f"| wall time | {res['wall_s']:.0f} s |",
        "",
        "Per migration (writer gap s / downtime_s): "
        + ", ".join(f"{g:.2f}/{d:.2f}" for g, d in zip(gaps, downs)),
        END,
    ])
    text = open(path).read() if os.path.exists(path) else ""
    if BEGIN in text and END in text:
        text = text.split(BEGIN, maxsplit=1)[0] + block + text.split(END, 1)[1]
    else:
        text += "\n" + block + "\n"
    with open(path, "w") as fh:
        fh.write(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--svc", default="mysql")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "reliability.md"))
    ap.add_argument("--no-lock", action="store_true", help="the caller already holds the lab lock")
    args = ap.parse_args()
    lock = open(LOCK, "w")
    if not args.no_lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
    spec = catalog()[args.svc]
    where = running_on(args.svc)
    if len(where) != 1:
        subprocess.run(["ansible-playbook", "-i", os.path.join(ROOT, "inventory", "lab.yml"),
                        os.path.join(ROOT, "playbooks", "deploy.yml"), "-e", f"svc={args.svc}", "-e", "host=edge1"],
                       cwd=ROOT, env=env(), check=True, capture_output=True)
    wait_answering(spec, timeout=120)
    sql(spec, "CREATE TABLE IF NOT EXISTS soak (id BIGINT AUTO_INCREMENT PRIMARY KEY, v CHAR(32) NOT NULL, "
              "KEY (v))", commit=True)
    writer = Writer(spec)
    writer.start()
    time.sleep(1.0)
    t_start = time.monotonic()
    gaps, downs, failures, lost_total = [], [], [], 0
    completed = 0
    for i in range(args.count):
        src = running_on(args.svc)[0]
        dst = "edge2" if src == "edge1" else "edge1"
        t0 = time.monotonic()
        rc, out = migrate(args.svc, dst)
        t1 = time.monotonic()
        time.sleep(1.0)  # let the writer reconnect and commit again
        if rc != 0:
            failures.append({"n": i + 1, "from": src, "to": dst, "tail": out[-1500:]})
        else:
            completed += 1
            with open(os.path.join(ROOT, "reports", f"migrate-{args.svc}-latest.json")) as fh:
                downs.append(float(json.load(fh)["downtime_s"]))
        gaps.append(writer.longest_gap(t0, t1 + 1.0))
        with writer.lock:
            acked = list(writer.acked)
        present = {r[0] for r in sql(spec, "SELECT v FROM soak")}
        lost = [v for v in acked if v not in present]
        lost_total = len(lost)
        print(f"[soak] {i + 1}/{args.count} {src}->{dst} rc={rc} writer_gap={gaps[-1]:.2f}s "
              f"downtime_s={downs[-1] if rc == 0 and downs else 'n/a'} acked={len(acked)} lost={len(lost)}",
              flush=True)
        if lost:
            print(f"[soak] LOST ROWS: {lost[:10]}", flush=True)
    writer.stop.set()
    writer.join(timeout=10)
    with writer.lock:
        acked = list(writer.acked)
    present = {r[0] for r in sql(spec, "SELECT v FROM soak")}
    lost_total = len([v for v in acked if v not in present])
    res = {"count": args.count, "completed": completed, "failed": len(failures), "failures": failures,
           "acked_rows": len(acked), "lost_rows": lost_total, "writer_errors": writer.errors,
           "writer_gap_s": [round(g, 3) for g in gaps], "downtime_s": downs,
           "wall_s": round(time.monotonic() - t_start, 1),
           "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "command": f"python3 bench/soak.py --count {args.count}"}
    os.makedirs(os.path.join(ROOT, "reports"), exist_ok=True)
    with open(os.path.join(ROOT, "reports", "soak-latest.json"), "w") as fh:
        json.dump(res, fh, indent=2)
    if args.doc:
        write_doc(args.doc, res)
    print(json.dumps({k: v for k, v in res.items() if k not in ("failures",)}, indent=1))
    return 0 if lost_total == 0 and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
