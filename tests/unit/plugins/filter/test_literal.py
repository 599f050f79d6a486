# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The literal filter, through a real ansible-playbook run: catalog values are data."""
from __future__ import annotations

import os
import subprocess
import sys

from ansible_collections.edgemig.migration.plugins.filter.literal import literal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def test_plain_data_is_copied():
    data = {"a": ["x", 1, {"b": "{{ y }}"}], "c": None}
    out = literal(data)
    assert out == data and out is not data


def test_braces_in_inventory_values_reach_the_task_as_written(tmp_path):
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    localhost: {ansible_connection: local}\n")
    (tmp_path / "group_vars" / "all" / "catalog.yml").write_text(
        'edgemig_services:\n  svc:\n    env: {CONF: "a={{ not a var }} {% raw %}", N: "1"}\n')
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  vars:\n"
        "    spec: \"{{ edgemig_services.svc | edgemig.migration.literal }}\"\n"
        "  tasks:\n    - ansible.builtin.copy: {content: \"{{ spec.env.CONF }}\", dest: \"" + str(tmp_path / "out") + "\"}\n")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".cache", "collections"),
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
    proc = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert (tmp_path / "out").read_text() == "a={{ not a var }} {% raw %}"
