# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""End to end on the lab: every catalog service edge1 -> edge2 -> edge1 through migrate.yml.

Checked through the service's own client at its stable address: it answers
on the target and not on the source, its own uptime kept counting (restored,
not restarted), a file written into the container before the migration is
there after, and for MariaDB every committed row survives.
"""
from __future__ import annotations

import time

import pytest

from labutil import (  # noqa: E402 (tests/integration is on sys.path via conftest)
    catalog, docker, lab_is_up, playbook, port_open, recap_changed, report, running_on, sql, uptime,
    wait_answering,
)

pytestmark = pytest.mark.lab
CATALOG = catalog()


@pytest.fixture(scope="module", autouse=True)
def lab():
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"


def marker(svc: str, edge: str, text: str) -> None:
    docker(edge, "exec", svc, "sh", "-c", f"echo {text} > /edgemig-marker")


def read_marker(svc: str, edge: str) -> str:
    return docker(edge, "exec", svc, "cat", "/edgemig-marker").stdout.strip()


@pytest.mark.parametrize("svc", sorted(CATALOG))
def test_migrate_there_and_back(svc):
    spec = CATALOG[svc]
    playbook("deploy.yml", "-e", f"svc={svc}", "-e", "host=edge1")
    src = running_on(svc)[0]
    dst = "edge2" if src == "edge1" else "edge1"
    wait_answering(spec)
    rows = 0
    if spec["uptime_probe"]["type"] == "sql":
        sql(spec, "CREATE TABLE IF NOT EXISTS migrated (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))")
        for i in range(50):
            sql(spec, "INSERT INTO migrated (v) VALUES (%s)", (f"row-{i}",), commit=True)
        rows = sql(spec, "SELECT COUNT(*) FROM migrated")[0][0]
    for hop, (a, b) in enumerate(((src, dst), (dst, src))):
        text = f"{svc}-hop{hop}-{time.time()}"
        marker(svc, a, text)
        time.sleep(1.5)  # let the uptime visibly grow
        before = uptime(spec)
        proc = playbook("migrate.yml", "-e", f"svc={svc}", "-e", f"target={b}")
        assert running_on(svc) == [b], proc.stdout[-3000:]
        assert docker(a, "inspect", svc, check=False).returncode != 0, "source container still exists"
        after = wait_answering(spec)
        assert after >= before, f"{svc} uptime fell from {before} to {after}: restarted, not restored"
        port = spec["ports"][0]["host"]
        assert port_open(b, port) and not port_open(a, port), "the service must answer on the target only"
        assert read_marker(svc, b) == text, "file written before the migration is missing"
        rep = report(svc)
        assert rep["runs_on"] == b and rep["source"] == a
        assert float(rep["downtime_s"]) > 0 and int(rep["bytes_raw"]) > 0
        if rows:
            assert sql(spec, "SELECT COUNT(*) FROM migrated")[0][0] == rows


def test_migrate_again_changes_nothing():
    svc = "apache"
    playbook("deploy.yml", "-e", f"svc={svc}", "-e", "host=edge1")
    where = running_on(svc)[0]
    proc = playbook("migrate.yml", "-e", f"svc={svc}", "-e", f"target={where}")
    assert recap_changed(proc.stdout) == 0
    assert running_on(svc) == [where]


def test_failed_restore_rolls_back_to_source():
    svc = "apache"
    spec = CATALOG[svc]
    playbook("deploy.yml", "-e", f"svc={svc}", "-e", "host=edge1")
    src = running_on(svc)[0]
    dst = "edge2" if src == "edge1" else "edge1"
    before = wait_answering(spec)
    # Break the restore on the target: a fault flag makes the receiver corrupt
    # chunks, so the checksum check must stop the stream before any restore.
    proc = playbook("migrate.yml", "-e", f"svc={svc}", "-e", f"target={dst}",
                    "-e", "edgemig_fault_corrupt_every=1", check=False)
    assert proc.returncode != 0
    assert "checksum" in proc.stdout and "restored from its checkpoint" in proc.stdout, proc.stdout[-3000:]
    assert running_on(svc) == [src]
    after = wait_answering(spec)
    assert after >= before, "rollback restarted the service instead of restoring it"


def test_port_taken_on_target_fails_cleanly():
    svc = "apache"
    spec = CATALOG[svc]
    playbook("deploy.yml", "-e", f"svc={svc}", "-e", "host=edge1")
    src = running_on(svc)[0]
    dst = "edge2" if src == "edge1" else "edge1"
    port = spec["ports"][0]["host"]
    blocker = "edgemig-port-blocker"
    docker(dst, "rm", "-f", blocker, check=False)
    docker(dst, "run", "-d", "--name", blocker, "-p", f"{port}:80", spec["image"])
    try:
        proc = playbook("migrate.yml", "-e", f"svc={svc}", "-e", f"target={dst}", check=False)
        assert proc.returncode != 0
        assert str(port) in proc.stdout
        assert running_on(svc) == [src]
        wait_answering(spec)
    finally:
        docker(dst, "rm", "-f", blocker, check=False)


def test_restore_failure_on_target_rolls_back():
    svc = "apache"
    spec = CATALOG[svc]
    playbook("deploy.yml", "-e", f"svc={svc}", "-e", "host=edge1")
    src = running_on(svc)[0]
    dst = "edge2" if src == "edge1" else "edge1"
    before = wait_answering(spec)
    proc = playbook("migrate.yml", "-e", f"svc={svc}", "-e", f"target={dst}",
                    "-e", "edgemig_fault_restore=true", check=False)
    assert proc.returncode != 0
    assert "restore of 'apache' from its checkpoint failed" in proc.stdout, proc.stdout[-3000:]
    assert "restored from its checkpoint on the source" in proc.stdout, proc.stdout[-3000:]
    assert running_on(svc) == [src]
    assert docker(dst, "inspect", svc, check=False).returncode != 0, "half-made target container left behind"
    assert wait_answering(spec) >= before
