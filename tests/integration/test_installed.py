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
from followutil import Rulebook, place  # noqa: E402 (lab/ is on sys.path via conftest)
from labutil import ROOT, catalog, http_get, lab_is_up, run, running_on  # noqa: E402

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module", autouse=True)
def lab():
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"


def install(tmp_path) -> str:
    """The collection built into a tarball and installed into an empty collections path; returns that path."""
    built = tmp_path / "dist"
    proc = run(["ansible-galaxy", "collection", "build", "--output-path", str(built), ROOT])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarball = next(built.glob("edgemig-migration-*.tar.gz"))
    collections = tmp_path / "collections"
    # --force: a copy of the same version elsewhere (ansible-lint keeps one in ~/.ansible) must not stop it.
    proc = run(["ansible-galaxy", "collection", "install", "--offline", "--force", "-p", str(collections), str(tarball)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(collections)


def test_installed_collection_migrates_from_the_users_directory(tmp_path):
    collections = install(tmp_path)

    # The user's project: their inventory (the lab's hosts and its catalog), nothing else.
    project = tmp_path / "project"
    shutil.copytree(os.path.join(ROOT, "inventory", "lab"), project / "inventory" / "lab")
    env = {"ANSIBLE_COLLECTIONS_PATH": collections}
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
    assert not os.path.exists(os.path.join(collections, "ansible_collections", "edgemig", "migration", "reports"))
    assert catalog()["apache"]["address"] in proc.stdout


def test_installed_follow_rulebook_moves_a_service_from_another_directory(tmp_path):
    """Issue 24: ``ansible-rulebook -r edgemig.migration.follow`` started in a directory of the user's own
    (under /tmp), with the installed collection only: its rulebook, its event source and the migrate
    playbook its handover starts all come from the installed copy; a handover event moves apache."""
    collections = install(tmp_path)
    place("apache", "edge1")
    user = tmp_path / "user"
    user.mkdir()
    # A user's shell in that directory: none of this checkout's ANSIBLE_* settings, no ansible.cfg.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    environ.update(ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1", PWD=str(user))
    installed = os.path.join(collections, "ansible_collections", "edgemig", "migration")
    # The lab's inventory, its catalog and an explicit localhost (followutil.follow_inventory) in user/inventory;
    # the bearer token file and the event log in user/ too (followutil.Rulebook's vars file).
    with Rulebook(dwell_s=1.5, ttl_s=30, locations={"apache": "edge1"}, workdir=str(user),
                  rulebook="edgemig.migration.follow", cwd=str(user), environ=environ) as rb:
        assert f"Loading rulebook from {installed}/extensions/eda/rulebooks/follow.yml" in rb.tail(100000)
        rb.event("edge2", "handover")
        st = rb.wait(lambda s: s["policy"]["location"].get("apache") == "edge2", 180, "apache on edge2")
        assert running_on("apache") == ["edge2"]
        assert st["policy"]["counts"]["moves"] == 1
        rb.wait_idle("apache")
        out = rb.tail(1000000)
    assert f"included: {installed}/playbooks/tasks/recover.yml" in out, out[-6000:]
    assert "Could not find a playbook" not in out
    assert http_get(catalog()["apache"]["address"], catalog()["apache"]["ports"][0]["host"], "/", timeout=5)[0] < 400
