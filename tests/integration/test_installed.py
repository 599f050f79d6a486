# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection as its users install it: built into a tarball, installed into an
empty collections path, and its playbooks run by FQCN from a directory of the
user's own, with no ansible.cfg and nothing of this checkout on the paths."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from labutil import ROOT, catalog, lab_is_up, run, running_on  # noqa: E402 (lab/ is on sys.path via conftest)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module", autouse=True)
def lab():
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"


def test_installed_collection_migrates_from_the_users_directory(tmp_path):
    built = tmp_path / "dist"
    proc = run(["ansible-galaxy", "collection", "build", "--output-path", str(built), ROOT])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarball = next(built.glob("edgemig-migration-*.tar.gz"))
    collections = tmp_path / "collections"
    # --force: a copy of the same version elsewhere (ansible-lint keeps one in ~/.ansible) must not stop it.
    proc = run(["ansible-galaxy", "collection", "install", "--offline", "--force", "-p", str(collections), str(tarball)])
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # The user's project: their inventory (the lab's hosts and its catalog), nothing else.
    project = tmp_path / "project"
    shutil.copytree(os.path.join(ROOT, "inventory", "lab"), project / "inventory" / "lab")
    env = {"ANSIBLE_COLLECTIONS_PATH": str(collections)}
    inv = ["-i", "inventory/lab/hosts.yml"]
    proc = run(["ansible-playbook", "edgemig.migration.deploy", *inv, "-e", "svc=apache"], cwd=str(project),
               extra_env=env)
    assert proc.returncode == 0, proc.stdout[-5000:]
    before = running_on("apache")
    proc = run(["ansible-playbook", "edgemig.migration.migrate", *inv, "-e", "svc=apache"], cwd=str(project),
               extra_env=env)
    assert proc.returncode == 0, proc.stdout[-5000:]
    after = running_on("apache")
    assert len(before) == 1 and len(after) == 1 and before != after
    # The report is the user's: under the directory they ran from, not in the installed collection.
    report = project / "reports" / "migrate-apache-latest.json"
    assert json.loads(report.read_text())["runs_on"] == after[0]
    assert not (collections / "ansible_collections" / "edgemig" / "migration" / "reports").exists()
    assert catalog()["apache"]["address"] in proc.stdout
