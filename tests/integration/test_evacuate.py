# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""End to end on the lab: evacuate every catalog service of edge1, then bring them back, with the command
lines the README documents (run as a user types them, in the checkout, optional parts left out).

--check prints the plan and changes nothing: no Docker event that a move makes (pause, checkpoint, die,
create, ...) on any edge during the run. The evacuation moves each service to the neighbour: each runs
exactly once, answers at its address, kept its uptime (restored, not restarted), MariaDB kept its rows.
The return brings each back. The record under reports/ says what moved where; recover.yml -e edge=
reads it and converges every service of it.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
from labutil import EDGES, ROOT, catalog, docker, lab_is_up, playbook, run, running_on, sql, uptime, wait_answering  # noqa: E402 (lab/ is on sys.path via conftest)

pytestmark = pytest.mark.lab
CATALOG = catalog()
SERVICES = ["apache", "mysql", "tomcat"]  # the paper's three; the catalog's others are taken off the lab first
RECORD = os.path.join(ROOT, "reports", "evacuate-edge1.json")
# What a move does to a container on either edge; none may happen during --check.
MOVE_EVENTS = ("pause", "unpause", "checkpoint", "die", "kill", "stop", "create", "destroy", "start", "restart")


@pytest.fixture(scope="module", autouse=True)
def lab():
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"


def on_edge1():
    """SERVICES running on edge1 alone (deployed there, or moved back); the catalog's other services
    on no edge (container and service address gone), so that the plan is exactly theirs."""
    for other_svc in sorted(set(CATALOG) - set(SERVICES)):
        for edge in EDGES:
            docker(edge, "rm", "-f", other_svc, check=False)
            address = CATALOG[other_svc].get("address")
            if address:
                subprocess.run(["ip", "-n", edge, "addr", "del", f"{address}/32", "dev", "eth0"],
                               capture_output=True, check=False)
    for svc in SERVICES:
        playbook("deploy.yml", "-e", f"svc={svc}", "-e", "host=edge1")
        if running_on(svc) != ["edge1"]:
            playbook("migrate.yml", "-e", f"svc={svc}", "-e", "target=edge1")
        assert running_on(svc) == ["edge1"], svc
        wait_answering(CATALOG[svc], timeout=90)


def docker_events(edge: str, since: float, until: float) -> list[str]:
    args = ["events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"]
    for e in MOVE_EVENTS:
        args += ["--filter", f"event={e}"]
    return [line for line in docker(edge, *args).stdout.splitlines() if line.strip()]


def readme_command(*args: str, timeout: int = 1800):
    return run(["ansible-playbook", "playbooks/evacuate.yml", *args], timeout=timeout)


def seeded_rows() -> int:
    """20 more rows in MariaDB's ``evacuated`` table; how many it holds now."""
    spec = CATALOG["mysql"]
    sql(spec, "CREATE TABLE IF NOT EXISTS evacuated (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))")
    for i in range(20):
        sql(spec, "INSERT INTO evacuated (v) VALUES (%s)", (f"row-{i}",), commit=True)
    return sql(spec, "SELECT COUNT(*) FROM evacuated")[0][0]


def planned_targets(out: str) -> dict[str, str]:
    """Each service's target in the plan an evacuate.yml run printed."""
    return {svc: re.search(rf"{svc}: edge1 -> (edge[23])\b", out).group(1) for svc in SERVICES}


def test_evacuate_check_then_evacuate_then_return():
    on_edge1()
    spec = CATALOG["mysql"]
    rows = seeded_rows()
    if os.path.exists(RECORD):
        os.unlink(RECORD)

    # --check: the plan, nothing else
    t0 = time.time() - 0.5
    proc = readme_command("-e", "edge=edge1", "--check")
    t1 = time.time() + 0.5
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    assert "evacuate edge1: 3 move(s), 0 stay(s); order shortest" in out, out[-4000:]
    # Each to a neighbour (edge2 or edge3: the plan's choice by what each can take), as planned later.
    planned = {}
    for svc in SERVICES:
        found = re.search(rf"{svc}: edge1 -> (edge[23])\b", out)
        assert found, (svc, out[-4000:])
        planned[svc] = found.group(1)
    time.sleep(1.0)  # the daemons' event log is written as events happen; leave the --until in the past
    for edge in EDGES:
        assert docker_events(edge, t0, t1) == [], f"--check made Docker events on {edge}"
    assert all(running_on(svc) == ["edge1"] for svc in SERVICES)
    assert not os.path.exists(RECORD), "--check wrote the record"

    before = {svc: uptime(CATALOG[svc]) for svc in SERVICES}
    proc = readme_command("-e", "edge=edge1")
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-2000:]
    # the plan is printed before the first move's freeze; it is made again from what the edges report
    # now (their free memory changed since --check), so the moves are checked against this one
    assert out.index("Print the plan") < out.index("Migrate (freeze, stream, restore, switch over)")
    planned = planned_targets(out)
    for svc in SERVICES:
        assert running_on(svc) == [planned[svc]], (svc, planned, out[-4000:])
        after = wait_answering(CATALOG[svc], timeout=60)
        assert after >= before[svc], f"{svc} uptime fell from {before[svc]} to {after}: restarted, not restored"
        assert docker("edge1", "inspect", svc, check=False).returncode != 0, f"{svc} left on edge1"
    assert sql(spec, "SELECT COUNT(*) FROM evacuated")[0][0] == rows
    with open(RECORD) as fh:
        record = json.load(fh)
    assert sorted((m["service"], m["target"], m["status"]) for m in record["moves"]) == [
        (svc, planned[svc], "moved") for svc in SERVICES]
    table = out[out.index("Print the outcome per service"):]
    assert all(f"{svc}" in table for svc in SERVICES) and table.count(" moved ") == len(SERVICES)

    # a second evacuation finds nothing on edge1
    proc = readme_command("-e", "edge=edge1")
    assert proc.returncode == 0 and "nothing to move: no catalog service runs on edge1" in proc.stdout

    proc = readme_command("-e", "edge=edge1", "-e", "return=true")
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-2000:]
    assert "return to edge1: 3 move(s)" in out
    for svc in SERVICES:
        assert running_on(svc) == ["edge1"], (svc, out[-4000:])
        wait_answering(CATALOG[svc], timeout=60)
    assert sql(spec, "SELECT COUNT(*) FROM evacuated")[0][0] == rows
    with open(RECORD) as fh:
        assert {m["status"] for m in json.load(fh)["moves"]} == {"returned"}

    # recover.yml's evacuation form, as the README gives it: every service of the record, nothing in
    # doubt (it reads the record the return just wrote, so it lives in this test, not apart from it)
    proc = run(["ansible-playbook", "playbooks/recover.yml", "-e", "edge=edge1"])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for svc in SERVICES:
        assert f"=> (item={svc})" in proc.stdout
        assert running_on(svc) == ["edge1"], svc
