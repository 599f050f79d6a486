# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The evacuation_plan and evacuation_outcome filters: the planner on the controller, in a template.

The planner is tested in test_evacuation_plan.py; here: through a real ansible-playbook run, a catalog
whose service name and values look like templates (``{{ lookup('pipe','id') }}``) and edge reports that
do too stay data - planned, printed and recorded as written, never evaluated - and bad requests fail
the filter with the planner's reason.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.edgemig.migration.plugins.filter.evacuation_outcome import evacuation_outcome
from ansible_collections.edgemig.migration.plugins.filter.evacuation_plan import evacuation_plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
EVIL = "{{ lookup('pipe','id') }}"


def seen(containers):
    return {"mem_available": 4 * 10**9, "cpu": {"arch": "x86", "isa": []}, "images": ["sha256:a"],
            "ports_in_use": [], "containers": containers}


def test_the_filter_plans_and_records():
    ask = {"edge": "edge1", "catalog": {"apache": {"ports": [{"host": 4004}]}},
           "interfaces": {"edge1": "eth0", "edge2": "eth0"},
           "seen": {"edge1": seen({"apache": {"running": True, "image_id": "sha256:a", "memory": 10**6}}),
                    "edge2": seen({})}}
    p = evacuation_plan(ask)
    assert p["record"] == [{"service": "apache", "source": "edge1", "target": "edge2", "status": "planned"}]
    assert p["lines"][0].startswith("evacuate edge1: 1 move(s)")
    out = evacuation_outcome(p, [{"service": "apache", "ok": True, "downtime_s": 0.5}])
    assert out["failed"] == [] and out["record"]["moves"][0]["status"] == "moved"


@pytest.mark.parametrize("ask,msg", [({"edge": "edge9", "seen": {"edge1": None}, "interfaces": {"edge1": ""}},
                                      "edge='edge9' is not an edge host"),
                                     ({"edge": "edge1", "seen": "x"}, "seen and near must be mappings"),
                                     ("nonsense", "must be a mapping")])
def test_a_bad_request_fails_the_filter_with_the_reason(ask, msg):
    with pytest.raises(AnsibleFilterError, match=msg):
        evacuation_plan(ask)


def test_outcome_wants_a_plan_and_a_list():
    with pytest.raises(AnsibleFilterError):
        evacuation_outcome({}, "x")


def test_names_and_values_that_look_like_templates_stay_data_in_a_playbook(tmp_path):
    out = tmp_path / "out.json"
    catalog = {EVIL: {"ports": [{"host": 8000}], "address": "{{ lookup('pipe','id') }}", "near": "{{ 'edge2' }}"},
               "apache": {"ports": [{"host": 4004}]}}
    reports = {"edge1": seen({EVIL: {"running": True, "image_id": "sha256:a", "memory": 2 * 10**6},
                              "apache": {"running": True, "image_id": "{% raw %}x{% endraw %}", "memory": 10**6}}),
               "edge2": seen({})}
    (tmp_path / "reports.json").write_text(json.dumps(reports))
    (tmp_path / "vars.yml").write_text(json.dumps({"edgemig_services": catalog}))
    # As in evacuate.yml: the catalog from the inventory (through literal), the edges' reports as a module's result.
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n"
        f"  vars_files: ['{tmp_path / 'vars.yml'}']\n  tasks:\n"
        f"    - ansible.builtin.command: {{argv: [cat, '{tmp_path / 'reports.json'}']}}\n"
        "      register: seen\n      changed_when: false\n"
        "    - ansible.builtin.set_fact:\n"
        "        plan: >-\n"
        "          {{ {'edge': 'edge1', 'catalog': edgemig_services | edgemig.migration.literal,\n"
        "              'interfaces': {'edge1': 'eth0', 'edge2': 'eth0'}, 'seen': seen.stdout | from_json}\n"
        "             | edgemig.migration.evacuation_plan }}\n"
        "    - ansible.builtin.debug: {msg: \"{{ plan.lines }}\"}\n"
        f"    - ansible.builtin.copy: {{content: \"{{{{ plan | to_json }}}}\", dest: '{out}'}}\n")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".cache", "collections"),
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "uid=" not in proc.stdout
    plan = json.loads(out.read_text())
    moves = {m["service"]: m for m in plan["moves"]}
    assert set(moves) == {EVIL} and moves[EVIL]["near"] == "{{ 'edge2' }}"
    # apache's reported image ID (a template's look) is not on edge2: it stays, the ID quoted as written
    assert plan["stays"][0]["service"] == "apache" and "image {% raw %}x{% endraw missing" in plan["stays"][0]["reason"]
    assert EVIL.replace("'", "''") in proc.stdout   # printed as written (YAML doubles the quotes)
