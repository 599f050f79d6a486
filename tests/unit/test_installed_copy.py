# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 24: the installed collection's playbooks and its follow rulebook, run by name from a directory
of the user's own, find their task files and each other in the installed copy (no lab: the edges of
these runs are unreachable, so every run stops at its first edge task, after its includes resolved).
The same on the lab, moving a service: tests/integration/test_installed.py."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml
from collection_path import user_env
from stop_process import stop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "unit-test-token-0123456789abcdef"


def installed(collections: str, *parts: str) -> str:
    return os.path.join(collections, "ansible_collections", "edgemig", "migration", *parts)


def unreachable_inventory(directory) -> str:
    """Two edges nobody answers for (SSH to a closed port of loopback), the example's catalog, and
    the controller as an explicit localhost (as ansible-rulebook needs it). Returns the directory."""
    inv = directory / "inventory"
    (inv / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "inventory", "example", "group_vars", "all", "catalog.yml"),
                inv / "group_vars" / "all" / "catalog.yml")
    shutil.copy(os.path.join(ROOT, "extensions", "eda", "controller.yml"), inv / "controller.yml")
    edges = {"vars": {"ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_user": "nobody",
                      "ansible_ssh_common_args": "-o ConnectTimeout=2 -o BatchMode=yes",
                      "edgemig_address_interface": "eth0"},
             "hosts": {"edge1": {}, "edge2": {}}}
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"edges": edges}}}))
    return str(inv)


def test_every_include_names_its_file_from_the_playbooks_directory(installed_collection):
    """Relative to the playbook's own directory, which is the installed copy's when run by FQCN."""
    pattern = re.compile(r"ansible\.builtin\.(?:include|import)_tasks:\s*(\S.*)$", re.M)
    found = 0
    for name in sorted(os.listdir(os.path.join(ROOT, "playbooks"))):
        if not name.endswith(".yml"):
            continue
        with open(os.path.join(ROOT, "playbooks", name)) as fh:
            for target in pattern.findall(fh.read()):
                found += 1
                target = target.strip().strip("\"'")
                assert target.startswith("{{ playbook_dir }}/"), (name, target)
                rel = target[len("{{ playbook_dir }}/"):]
                assert os.path.isfile(installed(installed_collection, "playbooks", rel)), (name, rel)
    assert found >= 4


def test_every_include_of_a_task_file_names_a_sibling(installed_collection):
    """Task files under playbooks/tasks/ include each other by bare name (ansible-lint reads
    ``{{ playbook_dir }}`` in a task file as that file's own directory: load-failure in `make lint`).
    Ansible looks for a bare name in the playbook's directory before the including files' own, so no
    task file may share its name with a playbook: ``recover.yml`` there was the play, not the tasks."""
    pattern = re.compile(r"ansible\.builtin\.(?:include|import)_tasks:\s*(\S.*)$", re.M)
    found = 0
    tasks = os.path.join(ROOT, "playbooks", "tasks")
    playbooks = {n for n in os.listdir(os.path.join(ROOT, "playbooks")) if n.endswith(".yml")}
    assert not playbooks & set(os.listdir(tasks)), playbooks & set(os.listdir(tasks))
    for name in sorted(os.listdir(tasks)):
        with open(os.path.join(tasks, name)) as fh:
            for target in pattern.findall(fh.read()):
                found += 1
                target = target.strip().strip("\"'")
                assert "/" not in target and "{{" not in target, (name, target)
                assert os.path.isfile(installed(installed_collection, "playbooks", "tasks", target)), (name, target)
    assert found >= 4


@pytest.mark.parametrize("playbook", ["migrate", "recover"])
def test_playbook_by_fqcn_includes_its_tasks_from_the_installed_copy(installed_collection, tmp_path, playbook):
    inv = unreachable_inventory(tmp_path)
    proc = subprocess.run(["ansible-playbook", f"edgemig.migration.{playbook}", "-i", inv, "-e", "svc=apache"],
                          capture_output=True, text=True, cwd=str(tmp_path), env=user_env(installed_collection),
                          timeout=300, check=False, stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    assert f"included: {installed(installed_collection, 'playbooks', 'tasks', 'recover_service.yml')} for localhost" in out, out
    assert "Could not find or access" not in out and "unable to retrieve file contents" not in out, out


def test_follow_rulebook_by_fqcn_from_another_directory_runs_the_installed_migrate(installed_collection, tmp_path):
    """ansible-rulebook -r edgemig.migration.follow from a directory of the user's own: the rulebook and
    its event source come from the installed collection, and a handover event's prepare decision runs
    edgemig.migration.migrate from there too."""
    if not shutil.which("ansible-rulebook") or not shutil.which("java"):
        pytest.skip("ansible-rulebook or a JDK is not installed (make deps-eda)")
    port = free_port()
    inv = unreachable_inventory(tmp_path)
    (tmp_path / "follow-vars.yml").write_text(yaml.safe_dump({
        "follow_port": port, "follow_dwell_s": 0, "follow_edges": ["edge1", "edge2"],
        "follow_services": {"u1": ["apache"]}, "follow_locations": {"apache": "edge1"}}))
    env = user_env(installed_collection)
    env["FOLLOW_TOKEN"] = TOKEN
    log = open(tmp_path / "ansible-rulebook.log", "w")
    proc = subprocess.Popen(["ansible-rulebook", "-r", "edgemig.migration.follow", "-i", inv,
                             "--vars", "follow-vars.yml", "-E", "FOLLOW_TOKEN", "-v"],
                            cwd=str(tmp_path), env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)

    def output() -> str:
        return (tmp_path / "ansible-rulebook.log").read_text(errors="replace")

    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"ansible-rulebook exited {proc.returncode}:\n{output()[-6000:]}"
            try:
                request(base + "/status")
                break
            except OSError:
                assert time.monotonic() < deadline, f"ansible-rulebook did not listen in 120 s:\n{output()[-6000:]}"
                time.sleep(0.5)
        rulebook = installed(installed_collection, "extensions", "eda", "rulebooks", "follow.yml")
        assert f"Loading rulebook from {rulebook}" in output()
        # Without the token the source refuses the event.
        with pytest.raises(urllib.error.HTTPError) as refused:
            request(base + "/event", {"user": "u1", "edge": "edge2", "kind": "handover"}, token="wrong")
        assert refused.value.code == 401
        answer = request(base + "/event", {"user": "u1", "edge": "edge2", "kind": "handover"})
        assert [d["action"] for d in answer["decisions"]] == ["prepare"], answer
        included = f"included: {installed(installed_collection, 'playbooks', 'tasks', 'recover_service.yml')} for localhost"
        deadline = time.monotonic() + 180
        while included not in output():
            assert "Could not find a playbook" not in output(), output()[-6000:]
            assert proc.poll() is None, f"ansible-rulebook exited {proc.returncode}:\n{output()[-6000:]}"
            assert time.monotonic() < deadline, f"no run of edgemig.migration.migrate in 180 s:\n{output()[-6000:]}"
            time.sleep(0.5)
        assert "PLAY [Migrate a service between edge hosts]" in output()
        # The token came from the environment: no token file made in the user's directory.
        assert not (tmp_path / ".cache").exists()
    finally:
        stop(proc)
        log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: dict | None = None, token: str = TOKEN) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())
