# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The docker_engine role's daemon.json merge (tasks/daemon_json.yml) through real ansible-playbook runs on
localhost (issue 24): a host whose daemon.json has a user's keys keeps them, check mode and --diff show the
change first, the run says Docker restarts, and a second run changes nothing. No Docker is asked (the socket
does not exist: what a host whose daemon is stopped looks like) and none is restarted (docker_engine_restart=false
keeps the handler from touching this machine's Docker)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from collection_path import COLLECTIONS

USERS = {"log-driver": "journald", "log-opts": {"max-size": "10m"},
         "registry-mirrors": ["https://mirror.example"],
         "default-address-pools": [{"base": "10.99.0.0/16", "size": 24}]}


def converge(tmp_path, *flags: str, options: dict | None = None) -> subprocess.CompletedProcess:
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: edgemig.migration.docker_engine\n"
        "        tasks_from: daemon_json\n")
    extra = json.dumps({"docker_engine_daemon_config_path": str(tmp_path / "daemon.json"),
                        "docker_engine_host": f"unix://{tmp_path}/no-docker.sock", "docker_engine_restart": False,
                        "docker_engine_daemon_options": options or {}})
    env = {**os.environ, "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    return subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(play), "-e", extra, *flags],
                          capture_output=True, text=True, env=env, timeout=180, check=False)


def recap_changed(proc) -> int:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return int(re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", proc.stdout).group(1))


def test_a_users_keys_survive_check_diff_first_then_merge_then_nothing(tmp_path):
    path = tmp_path / "daemon.json"
    text = json.dumps(USERS, indent=4) + "\n"
    path.write_text(text)

    check = converge(tmp_path, "--check", "--diff")
    assert recap_changed(check) >= 1 and path.read_text() == text                 # shown, not done
    assert "+    \"experimental\": true" in check.stdout and "+    \"storage-driver\": \"overlay2\"" in check.stdout, check.stdout
    assert "experimental: (absent) -> true" in check.stdout, check.stdout

    run = converge(tmp_path, "--diff", options={"log-level": "warn"})
    assert recap_changed(run) >= 1
    assert "restart Docker yourself to apply it (docker_engine_restart=false)" in run.stdout                   # says what the restart is
    assert "RUNNING HANDLER [edgemig.migration.docker_engine : Restart dockerd]" in run.stdout
    assert json.loads(path.read_text()) == {**USERS, "experimental": True, "storage-driver": "overlay2",
                                            "log-level": "warn"}
    merged = path.read_text()

    again = converge(tmp_path, "--diff", options={"log-level": "warn"})
    assert recap_changed(again) == 0 and path.read_text() == merged
    assert "RUNNING HANDLER" not in again.stdout


def test_images_under_another_driver_fail_the_role_with_the_reason(tmp_path):
    root = tmp_path / "docker-root"
    sha = root / "image" / "vfs" / "imagedb" / "content" / "sha256"
    sha.mkdir(parents=True)
    (sha / ("cd" * 32)).write_text("{}")
    text = json.dumps({**USERS, "data-root": str(root), "storage-driver": "vfs"})
    (tmp_path / "daemon.json").write_text(text)
    proc = converge(tmp_path)
    assert proc.returncode != 0 and "1 under vfs" in proc.stdout and "would hide them" in proc.stdout, proc.stdout
    assert (tmp_path / "daemon.json").read_text() == text
