# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 28: a fault during an evacuation of edge1 (the paper's three services, as test_evacuate).

* CRIU's restore fails on one target (edge3: a real CRIU failure, the runc.conf action-script of
  conftest's ``criu_fails``): the moves to edge2 go on and land; each move to edge3 rolls back to
  edge1 (restored from its checkpoint, not restarted); the play fails naming them; every service
  runs exactly once; ``recover.yml -e edge=edge1`` converges with nothing in doubt.
* A target's receiver killed (MariaDB's, while its volume streams): that move fails, MariaDB stays
  on edge1, the others land; every service once; recover converges.
* The controller killed (SIGKILL to ansible-playbook's group) while the first moves stream: the
  modules already running on edge1 finish or roll back by themselves; ``recover.yml -e edge=edge1``
  converges; every service runs exactly once, answers, and MariaDB kept its rows.
"""
from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest
from labutil import (  # noqa: E402 (lab/ is on sys.path via conftest)
    ROOT,
    catalog,
    finish,
    module_pids,
    receiver_pids,
    run,
    running_on,
    sql,
    start_playbook,
    uptime,
    wait_answering,
    wait_for,
)
from test_evacuate import SERVICES, on_edge1, planned_targets, seeded_rows

pytestmark = pytest.mark.lab
SPEC = catalog()
RECORD = os.path.join(ROOT, "reports", "evacuate-edge1.json")
# Where each service's users are near: the plan sends it there when that edge can take it, so that
# both targets get a move (apache to edge3, whose restores fail in the first test).
NEAR = {"apache": "edge3", "mysql": "edge2", "tomcat": "edge2"}


# Seconds a service's uptime may trail the time passed since it was read: its own downtime in the move
# (a few seconds) and the probe's rounding; a restart started during the run trails by far more.
UPTIME_SLACK_S = 15.0


def uptimes() -> tuple[dict[str, float], float]:
    return {svc: uptime(SPEC[svc]) for svc in SERVICES}, time.monotonic()


def exactly_once_and_answering(before: tuple[dict[str, float], float]) -> dict[str, str]:
    """Each service on one edge, answering, and restored, not restarted: its uptime counted on."""
    seen, t0 = before
    where = {}
    for svc in SERVICES:
        on = running_on(svc)
        assert len(on) == 1, f"{svc} runs on {on}: not exactly once"
        where[svc] = on[0]
        after = wait_answering(SPEC[svc], timeout=90)
        passed = time.monotonic() - t0
        assert after >= seen[svc] + passed - UPTIME_SLACK_S, \
            f"{svc} uptime {seen[svc]} -> {after} over {passed:.0f} s: restarted, not restored"
    return where


def no_record() -> None:
    """No evacuation record from an earlier run to be read as this one's."""
    if os.path.exists(RECORD):
        os.unlink(RECORD)


def recover_edge1() -> None:
    proc = run(["ansible-playbook", "playbooks/recover.yml", "-e", "edge=edge1"])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_a_restore_failing_on_one_target_leaves_every_service_once(criu_fails):
    on_edge1()
    rows = seeded_rows()
    no_record()
    before = uptimes()
    criu_fails("edge3", "pre-restore")
    proc = run(["ansible-playbook", "playbooks/evacuate.yml", "-e", "edge=edge1", "-e", json.dumps({"evacuate_near": NEAR})])
    out = proc.stdout
    assert proc.returncode != 0, out[-6000:]
    planned = planned_targets(out)
    to3 = sorted(s for s, t in planned.items() if t == "edge3")
    to2 = sorted(s for s, t in planned.items() if t == "edge2")
    assert to3 and to2, f"the plan did not use both targets: {planned}"
    where = exactly_once_and_answering(before)
    assert all(where[s] == "edge2" for s in to2), (where, out[-4000:])
    assert all(where[s] == "edge1" for s in to3), (where, out[-4000:])     # rolled back to the source
    failed = re.search(r"msg: (.*) did not move \(see the table\)", out)
    assert failed and sorted(failed.group(1).replace(",", " ").split()) == to3, out[-3000:]
    with open(RECORD) as fh:
        status = {m["service"]: m["status"] for m in json.load(fh)["moves"]}
    assert all(status[s] == "moved" for s in to2) and all(status[s] != "moved" for s in to3), status
    recover_edge1()
    assert exactly_once_and_answering(before) == where      # nothing was in doubt: recover moved nothing
    assert sql(SPEC["mysql"], "SELECT COUNT(*) FROM evacuated")[0][0] == rows


@pytest.mark.slow   # out of `make test` for its time (73-90 s); passed on the lab in the stop of 2026-12-05
def test_the_controller_killed_during_an_evacuation():
    on_edge1()
    rows = seeded_rows()
    no_record()
    before = uptimes()
    proc = start_playbook("evacuate.yml", "-e", "edge=edge1")
    first = wait_for(lambda: next((s for s in SERVICES if receiver_pids(s)), None), 180, step=0.02,
                     what="a move's receiver")
    os.killpg(proc.pid, signal.SIGKILL)
    finish(proc, timeout=60)
    # the modules already started on edge1 finish (or roll back) by themselves
    wait_for(lambda: not module_pids() and not any(receiver_pids(s) for s in SERVICES), 180, step=0.5,
             what=f"the running moves to end (killed while {first}'s move streamed)")
    recover_edge1()
    exactly_once_and_answering(before)
    assert sql(SPEC["mysql"], "SELECT COUNT(*) FROM evacuated")[0][0] == rows


@pytest.mark.slow   # out of `make test` for its time (73-90 s); passed on the lab in the stop of 2026-12-05
def test_a_target_s_receiver_killed_during_an_evacuation():
    """MariaDB's receiver (its volume's warm rounds take seconds) killed on its target: that move
    fails and leaves MariaDB on edge1, the other moves land, every service runs exactly once."""
    on_edge1()
    rows = seeded_rows()
    no_record()
    before = uptimes()
    proc = start_playbook("evacuate.yml", "-e", "edge=edge1")
    pid = wait_for(lambda: (receiver_pids("mysql") or [None])[0], 300, step=0.02, what="MariaDB's receiver")
    os.kill(pid, signal.SIGKILL)
    out = finish(proc, timeout=900)
    assert proc.returncode != 0 and "mysql did not move" in out, out[-6000:]
    where = exactly_once_and_answering(before)
    assert where["mysql"] == "edge1", where
    assert all(where[s] != "edge1" for s in SERVICES if s != "mysql"), (where, out[-4000:])
    recover_edge1()
    assert exactly_once_and_answering(before) == where
    assert sql(SPEC["mysql"], "SELECT COUNT(*) FROM evacuated")[0][0] == rows
