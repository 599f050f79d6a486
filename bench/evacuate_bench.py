# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Evacuation benchmark skeleton (issue 28, `make bench-evacuate`): makespan vs the sum of solo moves.

In one run, on the lab as it is (its links as lab.sh shaped them): each service alone, edge1 -> edge2
through migrate.yml (timed, then moved back untimed), then all of them at once through
``evacuate.yml -e edge=edge1`` (its makespan), then the return. Prints, side by side, each service's
solo time and downtime and its downtime in the evacuation, the sum of the solo times, the makespan and
their ratio; writes reports/evacuate-bench.json. Times are whole playbook runs (Ansible's own
start-up and tasks included, as an operator waits for them).

Not yet the issue's benchmark: that needs 8 services (two MariaDB under writers, tomcat, apache and
four users' services), a third edge and edge1's link at 100 and 20 Mbit/s (docs/benchmarks.md, TODO).

    python bench/evacuate_bench.py [--services apache,mysql,tomcat]
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lab"))
from collection_path import ensure_collection_path  # noqa: E402

ensure_collection_path()
from labutil import ROOT, catalog, lab_is_up, playbook, report, running_on, wait_answering  # noqa: E402

LOCK = "/run/edgemig-lab.lock"


def place(svc: str, edge: str) -> None:
    playbook("deploy.yml", "-e", f"svc={svc}", "-e", f"host={edge}")
    if running_on(svc) != [edge]:
        playbook("migrate.yml", "-e", f"svc={svc}", "-e", f"target={edge}")
    assert running_on(svc) == [edge], svc
    wait_answering(catalog()[svc], timeout=90)


def timed(name: str, *extra: str) -> float:
    t0 = time.monotonic()
    playbook(name, *extra, timeout=3600)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", default="apache,mysql,tomcat")
    ap.add_argument("--out", default=os.path.join(ROOT, "reports", "evacuate-bench.json"))
    args = ap.parse_args()
    services = [s for s in args.services.split(",") if s]
    with open(LOCK, "w") as lock:
        print(f"waiting for {LOCK} ...", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert lab_is_up(), "the lab is not up: make provision"
        for svc in services:
            place(svc, "edge1")
        solo = {}
        for svc in services:
            wall = timed("migrate.yml", "-e", f"svc={svc}", "-e", "target=edge2")
            solo[svc] = {"wall_s": round(wall, 2), "downtime_s": float(report(svc)["downtime_s"])}
            place(svc, "edge1")
        makespan = timed("evacuate.yml", "-e", "edge=edge1")
        evac = {svc: float(report(svc)["downtime_s"]) for svc in services}
        assert all(running_on(svc) == ["edge2"] for svc in services)
        back = timed("evacuate.yml", "-e", "edge=edge1", "-e", "return=true")
    total = sum(v["wall_s"] for v in solo.values())
    out = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "services": services, "solo": solo,
           "evacuation": {"makespan_s": round(makespan, 2), "downtime_s": evac, "return_s": round(back, 2)},
           "sum_solo_s": round(total, 2), "ratio": round(makespan / total, 3) if total else None}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"{'service':<10} {'solo s':>8} {'solo down s':>12} {'evac down s':>12}")
    for svc in services:
        print(f"{svc:<10} {solo[svc]['wall_s']:>8.1f} {solo[svc]['downtime_s']:>12.2f} {evac[svc]:>12.2f}")
    print(f"sum of solo runs {total:.1f} s, evacuation makespan {makespan:.1f} s, ratio {out['ratio']}; "
          f"return {back:.1f} s ({args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
