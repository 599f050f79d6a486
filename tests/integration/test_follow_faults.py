# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 26, safe parking, on the lab: a move parked ahead that is never released leaves one running copy
and nothing behind, whatever stops it.

apache runs on edge1; an approach to edge2 starts the follow rulebook's run, which prepares edge2 and
parks inside edge_migrate (connected to edge2's receiver, warm, the service running). Then:

* the event source is killed (ansible-rulebook, SIGKILL): nobody answers the gate;
* the controller is killed (the parked run's ansible-playbook, SIGKILL): nobody renews the park's lease,
  the module on edge1 gives up by itself (park.lease_s);
* the TTL runs out (no handover): the gate answers no-go;
* the source edge "reboots" (the parked module killed, the dump tmpfs emptied, the service restarted by
  its edge, as far as a shared lab allows): the controller's run sees its job lost and recovers.

Each must end, within a bound, with apache running on edge1 only and answering, no migration record on
either edge, no parked module or receiver left, and no container left on edge2 (the receiver gives back
the container prepared for it when its stream ends before ``verified``; the playbook's no-go path or
recovery removes it too). Nothing is ever frozen: edge1's container is the same one, never stopped (a
checkpoint stops it; its start time would change); the client probe's view is printed.

    pytest -m faults tests/integration/test_follow_faults.py
"""
from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest
from followutil import Prober, Rulebook, place  # noqa: E402 (lab/ is on sys.path via conftest)
from labutil import (  # noqa: E402
    catalog,
    docker,
    empty_dump_dir,
    lab_is_up,
    module_pids,
    playbook,
    receiver_pids,
    running_on,
    state_phase,
    wait_answering,
    wait_for,
)

from ansible_collections.edgemig.migration.plugins.module_utils.driver.park import LEASE_S, PARK_CHECK_S

pytestmark = [pytest.mark.lab, pytest.mark.faults]
SVC = "apache"
APACHE = catalog()[SVC]
PORT = APACHE["ports"][0]["host"]
# What must have ended once the parked run is stopped: the lease, a check of it, the receiver's EOF and
# the playbook's or recovery's last steps, with room for a loaded machine.
SETTLE_S = LEASE_S + 2 * PARK_CHECK_S + 120


@pytest.fixture(scope="module", autouse=True)
def lab():
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"


@pytest.fixture
def on_edge1():
    place(SVC, "edge1")
    wait_answering(APACHE, timeout=60)


def exists(edge: str) -> bool:
    return docker(edge, "inspect", SVC, check=False).returncode == 0


def identity(edge: str) -> str:
    """The container's ID and start time: a checkpoint (which stops it) or a restart changes the second."""
    return docker(edge, "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", SVC).stdout.strip()


def parked(rb: Rulebook, live: bool = True) -> str:
    """The approach to edge2, and its run parked inside edge_migrate (it asked the gate: the source's log
    says ``parked``; ``live``: module and receiver still running); edge1's container's identity then."""
    was = identity("edge1")
    rb.event("edge2", "approach", confidence=0.9)
    wait_for(lambda: any(isinstance(e.get("parked"), str) for e in rb.log()), 150, step=0.2, what="the run parked at its gate")
    if live:
        wait_for(lambda: module_pids() and receiver_pids(SVC), 60, step=0.2, what="the parked module and receiver")
        assert exists("edge2")
    assert running_on(SVC) == ["edge1"] and identity("edge1") == was
    return was


def nothing_behind() -> bool:
    return not module_pids() and not receiver_pids(SVC) and not exists("edge2")


def settled(probe: Prober, since: float, was: str | None) -> None:
    """Within SETTLE_S: nothing parked or prepared is left; apache runs on edge1 only, answers, and
    (``was``) is the very container that ran when the run parked: never frozen."""
    wait_for(nothing_behind, SETTLE_S, step=0.5,
             what="no parked module, no receiver and no prepared container on edge2")
    assert running_on(SVC) == ["edge1"], f"{SVC} runs on {running_on(SVC)}"
    assert state_phase("edge1", SVC) is None and state_phase("edge2", SVC) is None
    if was is not None:
        assert identity("edge1") == was, "edge1's container was stopped or replaced: it must never be frozen"
    wait_answering(APACHE, timeout=60)
    print(f"\nsettled {time.time() - since:.1f} s after the fault; client: {probe.window(since, time.time())}")


def rulebook_runs(rb: Rulebook) -> list[int]:
    """The ansible-playbook processes of the rulebook's runs: its descendants (ansible-runner starts each
    run in a session of its own) whose command line is ansible-playbook's."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [rb.proc.pid]
    while todo:
        pid = todo.pop()
        for child, ppid in parent.items():
            if ppid == pid:
                todo.append(child)
                try:
                    with open(f"/proc/{child}/cmdline", "rb") as fh:
                        if b"ansible-playbook" in fh.read():
                            found.append(child)
                except OSError:
                    continue
    return found


@contextlib.contextmanager
def following(tmp_path, ttl_s: float = 600):
    """(the user's client probing apache, the follow rulebook with apache on edge1); both stopped at exit.
    ttl_s 600 by default: far off, so that only the fault under test ends the park."""
    probe = Prober(APACHE["address"], PORT)
    probe.start()
    try:
        with Rulebook(dwell_s=1.5, ttl_s=ttl_s, locations={SVC: "edge1"}, workdir=str(tmp_path)) as rb:
            yield probe, rb
    finally:
        probe.stop()


def test_the_event_source_killed_while_parked_leaves_one_copy_and_nothing_behind(on_edge1, tmp_path):
    with following(tmp_path) as (probe, rb):
        was = parked(rb)
        runs = rulebook_runs(rb)
        t0 = time.time()
        os.kill(rb.proc.pid, signal.SIGKILL)       # ansible-rulebook, its event source inside
        rb.proc.wait(30)
        try:
            settled(probe, t0, was)
        finally:
            # Its run outlives it (ansible-runner starts it in a session of its own; seen here: it stays,
            # idle, its worker gone with the pty): stopped here, the edges being what is tested.
            for pid in runs:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_the_controller_killed_while_parked_gives_up_at_the_lease(on_edge1, tmp_path):
    with following(tmp_path) as (probe, rb):
        was = parked(rb)
        runs = rulebook_runs(rb)
        assert runs, "the parked run's ansible-playbook was not found"
        t0 = time.time()
        for pid in runs:
            os.kill(pid, signal.SIGKILL)
        # The event source is alive but its gate is never asked again; the TTL is far off: only the
        # lease ends the park.
        settled(probe, t0, was)


def test_a_parked_run_nobody_hands_over_to_gives_up_at_the_ttl(on_edge1, tmp_path):
    # The TTL counts from the approach: parked after it (a loaded machine) the gate says no-go at once.
    with following(tmp_path, ttl_s=30) as (probe, rb):
        t0 = time.time()
        was = parked(rb, live=False)
        st = rb.wait_idle(SVC, SETTLE_S)
        assert st["policy"]["counts"]["moves"] == 0
        settled(probe, t0, was)


def test_the_source_rebooted_while_parked_is_recovered_by_the_run(on_edge1, tmp_path):
    with following(tmp_path) as (probe, rb):
        parked(rb)
        # The reboot as far as a shared lab allows: the parked module dies (no rollback runs: nothing
        # was frozen), the dump tmpfs is emptied, and the edge starts the service again at boot.
        for pid in module_pids():
            os.kill(pid, signal.SIGKILL)
        empty_dump_dir("edge1")
        docker("edge1", "restart", "-t", "1", SVC)
        t0 = time.time()
        # The controller's run sees its job end without a result and recovers: one copy, on edge1.
        settled(probe, t0, None)   # restarted by its edge: not the same start time
        st = rb.wait_idle(SVC, SETTLE_S)
        assert st["policy"]["counts"]["moves"] == 0 or st["policy"]["location"].get(SVC) == "edge1"


def test_recover_and_a_second_migrate_leave_a_parked_move_alone(on_edge1, tmp_path):
    """recover.yml knows a parked move (issue 26): it says so and does nothing (before, it stood the
    prepared target down under it); a second migrate.yml of the service is refused before anything is
    made. The parked move then goes at the handover as if nothing had happened."""
    with following(tmp_path) as (_probe, rb):
        was = parked(rb)
        target = docker("edge2", "inspect", "-f", "{{.Id}}", SVC).stdout.strip()
        proc = playbook("recover.yml", "-e", f"svc={SVC}")
        assert "a migration is parked on edge1 (to edge2)" in proc.stdout, proc.stdout[-3000:]
        proc = playbook("migrate.yml", "-e", f"svc={SVC}", check=False)
        assert proc.returncode != 0 and "no second move is started" in proc.stdout, proc.stdout[-3000:]
        # Untouched: the same parked module and receiver, the same prepared target, the source never frozen.
        assert module_pids() and receiver_pids(SVC)
        assert docker("edge2", "inspect", "-f", "{{.Id}}", SVC).stdout.strip() == target
        assert running_on(SVC) == ["edge1"] and identity("edge1") == was
        rb.event("edge2", "handover")
        rb.wait(lambda s: s["policy"]["location"].get(SVC) == "edge2", 120, f"{SVC} on edge2")
        assert running_on(SVC) == ["edge2"]
        wait_answering(APACHE, timeout=60)
        rb.wait_idle(SVC, SETTLE_S)
