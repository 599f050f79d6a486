# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection as its users install it (issue 24): built into a tarball, installed with its declared
dependencies into an empty collections path, in a fresh venv holding ansible-core and the runtime
requirements (requirements.txt) only, and its playbooks run by FQCN from a directory of the user's own,
with no ansible.cfg and nothing of this checkout on the paths.

No Galaxy server is reachable here: the dependency collections (ansible.posix, community.crypto) are
copied from the ``ansible`` package's bundled ones (requirements-dev.txt installs it for the tests; no
smaller PyPI or Debian package carries these two alone), and ``ansible-galaxy collection install``
resolves galaxy.yml's dependencies against them (it refuses the tarball when one is missing).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from followutil import Rulebook, place  # noqa: E402 (lab/ is on sys.path via conftest)
from labutil import ROOT, catalog, http_get, lab_is_up, run, running_on, user_inventory  # noqa: E402

pytestmark = pytest.mark.lab
INSTALLED = ("ansible_collections", "edgemig", "migration")
DEPENDENCIES = ("ansible/posix", "community/crypto")


@pytest.fixture(scope="module", autouse=True)
def lab():
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> str:
    """A fresh venv with requirements.txt only (ansible-core and the runtime); pip takes the wheels from
    its cache (measured: ~16 s on the 2-core machine, the index consulted for versions). Returns its bin dir."""
    path = tmp_path_factory.mktemp("venv")
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    pip = subprocess.run([str(path / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r",
                          os.path.join(ROOT, "requirements.txt")], capture_output=True, text=True, timeout=900,
                         check=False)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    print(f"\nvenv with requirements.txt made in {time.monotonic() - t0:.1f} s")
    frozen = subprocess.run([str(path / "bin" / "pip"), "freeze"], capture_output=True, text=True, check=True).stdout
    names = {line.split("==")[0].lower() for line in frozen.splitlines()}
    assert "ansible-core" in names and "ansible" not in names, names  # ansible-core alone, no bundled collections
    return str(path / "bin")


def dependency_source() -> str:
    """The ``ansible`` package's bundled collections (its ansible_collections directory)."""
    spec = importlib.util.find_spec("ansible_collections.ansible.posix")
    assert spec is not None, "the ansible package is not installed (pip install -r requirements-dev.txt)"
    return os.path.dirname(os.path.dirname(list(spec.submodule_search_locations)[0]))


def user_env(venv_bin: str, collections: str, cwd: str) -> dict:
    """A user's shell with the venv activated: no ANSIBLE_* of this checkout, the given collections path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1", PWD=cwd,
               VIRTUAL_ENV=os.path.dirname(venv_bin), PATH=f"{venv_bin}:{env['PATH']}")
    return env


@pytest.fixture(scope="module")
def installed(venv, tmp_path_factory) -> str:
    """The built tarball and its declared dependencies in an empty collections path, installed with the
    venv's ansible-galaxy from a directory of the user's own; returns that path."""
    tmp = tmp_path_factory.mktemp("install")
    proc = run([os.path.join(venv, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp / "dist"), ROOT])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarball = str(next((tmp / "dist").glob("edgemig-migration-*.tar.gz")))
    collections = tmp / "collections"
    collections.mkdir()
    env = user_env(venv, str(collections), str(tmp))
    galaxy = [os.path.join(venv, "ansible-galaxy"), "collection", "install", "--offline", "-p", str(collections)]
    # The dependencies are declared: without them the install is refused, naming the first.
    proc = subprocess.run([*galaxy, tarball], capture_output=True, text=True, cwd=str(tmp), env=env, timeout=300,
                          check=False)
    assert proc.returncode != 0 and "ansible.posix" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    for dep in DEPENDENCIES:
        shutil.copytree(os.path.join(dependency_source(), dep), collections / "ansible_collections" / dep,
                        ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([*galaxy, tarball], capture_output=True, text=True, cwd=str(tmp), env=env, timeout=300,
                          check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "edgemig.migration:0.1.0 was installed successfully" in out, out
    assert "'ansible.posix:" in out and "'community.crypto:" in out, out  # resolved against the copies
    return str(collections)


def user_project(directory) -> str:
    """The user's project: an inventory of their own for the lab's edges (the lab's hosts and catalog,
    labutil.user_inventory), whose edges run the lab's Python. The namespaces share this machine's file
    system: ``ansible_playbook_python`` there would be the venv's, which the receiver that provision
    installs would then name after the venv is gone. Returns the inventory path, relative to directory."""
    inv = user_inventory(str(directory), {})
    with open(inv) as fh:
        hosts = fh.read()
    lab_python = 'ansible_python_interpreter: "{{ ansible_playbook_python }}"'
    assert lab_python in hosts, hosts
    with open(inv, "w") as fh:
        fh.write(hosts.replace(lab_python, f"ansible_python_interpreter: {sys.executable}"))
    return os.path.relpath(inv, str(directory))


def test_installed_collection_provisions_deploys_and_migrates_from_the_users_directory(venv, installed,
                                                                                       tmp_path):
    project = tmp_path / "project"
    inv = ["-i", user_project(project)]
    env = user_env(venv, installed, str(project))

    def play(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(["ansible-playbook", *args, *inv], capture_output=True, text=True, cwd=str(project),
                              env=env, timeout=1800, check=False, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"ansible-playbook {' '.join(args)}:\n{proc.stdout[-6000:]}{proc.stderr[-3000:]}"
        return proc

    assert shutil.which("ansible-playbook", path=env["PATH"]) == os.path.join(venv, "ansible-playbook")
    play("edgemig.migration.provision")
    play("edgemig.migration.deploy", "-e", "svc=apache", "-e", "host=edge1")
    before = running_on("apache")
    proc = play("edgemig.migration.migrate", "-e", "svc=apache")
    after = running_on("apache")
    assert len(before) == 1 and len(after) == 1 and before != after, (before, after)
    # The report is the user's: under the directory they ran from, not in the installed collection.
    report = project / "reports" / "migrate-apache-latest.json"
    assert json.loads(report.read_text())["runs_on"] == after[0]
    assert not os.path.exists(os.path.join(installed, *INSTALLED, "reports"))
    assert catalog()["apache"]["address"] in proc.stdout
    assert http_get(catalog()["apache"]["address"], catalog()["apache"]["ports"][0]["host"], "/", timeout=5)[0] < 400


def test_installed_follow_rulebook_moves_a_service_from_another_directory(installed, tmp_path):
    """Issue 24: ``ansible-rulebook -r edgemig.migration.follow`` started in a directory of the user's own
    (under /tmp), with the installed collection only: its rulebook, its event source and the migrate
    playbook its handover starts all come from the installed copy; a handover event moves apache."""
    collections = installed
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
    assert f"included: {installed}/playbooks/tasks/recover_service.yml" in out, out[-6000:]
    assert "Could not find a playbook" not in out
    assert http_get(catalog()["apache"]["address"], catalog()["apache"]["ports"][0]["host"], "/", timeout=5)[0] < 400
