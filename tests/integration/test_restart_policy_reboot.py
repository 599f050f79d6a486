# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 23, item 5 on the lab: a reboot of the source mid-migration loses neither the service nor its
restart policy.

apache with ``--restart=unless-stopped`` is migrated with the sender held 30 s after ``verified``
(``pause_verified``): the checkpoint stopped the source and set its policy to ``no``. Then the source
"reboots" as far as a shared lab allows: the module on it and the controller are killed (SIGKILL, no
rollback runs), its dump tmpfs is emptied (the migration record and the dump go, as with a reboot) and
the container stays stopped. ``recover.yml -e svc=apache`` must bring the service back exactly once,
with ``unless-stopped``, and leave no held record.

    pytest -m faults tests/integration/test_restart_policy_reboot.py
"""
from __future__ import annotations

import os
import signal
import subprocess

import pytest
from labutil import (  # noqa: E402 (lab/ is on sys.path via conftest)
    address_on,
    catalog,
    docker,
    dump_dir,
    empty_dump_dir,
    faults_arg,
    finish,
    lab_is_up,
    module_pids,
    other,
    playbook,
    receiver_pids,
    running_on,
    start_playbook,
    state_phase,
    wait_answering,
    wait_for,
)

pytestmark = [pytest.mark.lab, pytest.mark.faults]
CATALOG = catalog()
SVC = "apache"


def held_record(edge: str) -> str:
    """Where the source keeps its held restart policy: ``held`` beside the dump tmpfs."""
    return os.path.join(os.path.dirname(dump_dir(edge)), "held", f"{SVC}.json")


def restart_policy(edge: str) -> str:
    return docker(edge, "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", SVC).stdout.strip()


def deploy() -> str:
    playbook("deploy.yml", "-e", f"svc={SVC}")
    where = running_on(SVC)
    assert len(where) == 1, f"{SVC} runs on {where} after deploy"
    wait_answering(CATALOG[SVC], timeout=90)
    return where[0]


def reboot_leftovers(edge: str) -> None:
    """What a reboot of ``edge`` leaves: the dump tmpfs empty; the stopped container stays stopped
    (its policy is ``no``: dockerd does not start it at boot), the address is not configured."""
    empty_dump_dir(edge)
    addr = CATALOG[SVC].get("address")
    if addr:
        subprocess.run(["ip", "-n", edge, "addr", "del", f"{addr}/32", "dev", "eth0"], capture_output=True, check=False)


def test_a_reboot_of_the_source_after_the_hold_is_recovered_with_the_policy():
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test-faults`, which does it)"
    src = deploy()
    dst = other(src)
    docker(src, "update", "--restart=unless-stopped", SVC)
    try:
        proc = start_playbook("migrate.yml", "-e", f"svc={SVC}", "-e", f"target={dst}",
                              "-e", "edgemig_precopy=false", *faults_arg(pause_verified=30))
        wait_for(lambda: state_phase(dst, SVC) == "verified", 180, step=0.05, what="verified on the target")
        # The hold is in place: stopped, policy no, and the old policy on disk beside the tmpfs.
        assert restart_policy(src) == "no" and os.path.isfile(held_record(src))
        # The reboot: nothing on the source finishes or rolls back.
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in module_pids():
            os.kill(pid, signal.SIGKILL)
        finish(proc, timeout=60)
        wait_for(lambda: not receiver_pids(SVC), 120, step=0.5, what="the receiver to give up (no COMMIT)")
        reboot_leftovers(src)
        assert running_on(SVC) == [] and state_phase(src, SVC) is None
        assert os.path.isfile(held_record(src)), "the held record must outlive the reboot"

        rec = playbook("recover.yml", "-e", f"svc={SVC}", check=False)
        assert rec.returncode == 0, rec.stdout[-4000:]
        assert running_on(SVC) == [src], f"{SVC} runs on {running_on(SVC)}"
        assert restart_policy(src) == "unless-stopped"
        assert not os.path.exists(held_record(src))
        assert docker(dst, "inspect", SVC, check=False).returncode != 0, "the target's copy was left"
        wait_answering(CATALOG[SVC], timeout=60)
        if CATALOG[SVC].get("address"):
            assert address_on(CATALOG[SVC]["address"]) == [src]
        assert state_phase(src, SVC) is None and state_phase(dst, SVC) is None
        # Exactly once: a second recovery changes nothing.
        again = playbook("recover.yml", "-e", f"svc={SVC}", check=False)
        assert again.returncode == 0 and running_on(SVC) == [src], again.stdout[-3000:]
    finally:
        for edge in running_on(SVC):
            docker(edge, "update", "--restart=no", SVC, check=False)
