# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``docker`` action group (meta/runtime.yml): exactly the modules that take ``docker_host``,
so that ``module_defaults: {group/edgemig.migration.docker: {docker_host: ...}}`` reaches all of them."""
from __future__ import annotations

import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
MODULES_DIR = os.path.join(ROOT, "plugins", "modules")


def module_sources() -> dict[str, str]:
    out = {}
    for fname in sorted(os.listdir(MODULES_DIR)):
        if fname.endswith(".py") and fname != "__init__.py":
            with open(os.path.join(MODULES_DIR, fname), encoding="utf-8") as fh:
                out[fname[:-3]] = fh.read()
    return out


def docker_group() -> list[str]:
    with open(os.path.join(ROOT, "meta", "runtime.yml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)["action_groups"]["docker"]


def test_the_group_is_every_module_that_takes_docker_host():
    # DOCKER_ARGS is docker_host's one argument spec (imported only to be used: ruff F401); the docs
    # fragment documents it and the group.
    takes = {name for name, src in module_sources().items() if "DOCKER_ARGS" in src}
    documented = {name for name, src in module_sources().items() if "  - edgemig.migration.docker\n" in src}
    assert takes == documented
    assert sorted(docker_group()) == docker_group() and set(docker_group()) == takes


def test_module_defaults_of_the_group_reach_a_module(tmp_path):
    sock = tmp_path / "no-docker-here.sock"
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  module_defaults:\n"
        f"    group/edgemig.migration.docker: {{docker_host: 'unix://{sock}'}}\n"
        "  tasks:\n    - edgemig.migration.edge_image_info: {images: [busybox]}\n")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".cache", "collections"),
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "DOCKER_HOST": "unix:///nowhere-else.sock"}
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode != 0
    assert f"cannot talk to Docker at unix://{sock}" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
