# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The recovery_decision filter: recovery.decide on the controller, in a template, without a module run.

The decision table itself is tested in test_migration_driver.py (recovery.decide); here: the filter
gives the same decision, also through a real ansible-playbook run (the facts as module results reach
it in tasks/recover_service.yml), and what the edges reported stays data.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.edgemig.migration.plugins.filter.recovery_decision import recovery_decision
from ansible_collections.edgemig.migration.plugins.module_utils.driver.recovery import decide

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def facts(record=None, exists=True, running=False, ckpt=False, addr=False, held=None):
    return {"record": record, "exists": exists, "running": running, "has_checkpoint": ckpt,
            "checkpoint": None, "address_here": addr, "held": held}


HELD = {"service": "mysql", "container": "mysql-id", "restart_policy": {"Name": "always", "MaximumRetryCount": 0}}
CASES = {
    "committed, target runs": {"edge1": facts({"role": "source", "phase": "committed"}),
                               "edge2": facts(running=True, addr=True)},
    "frozen, target unreachable": {"edge1": facts({"role": "source", "phase": "frozen"}), "edge2": None},
    "held, nothing runs": {"edge1": facts(held=HELD), "edge2": facts()},
    "two running": {"edge1": facts(running=True), "edge2": facts(running=True)},
    "nothing anywhere": {"edge1": facts(exists=False), "edge2": facts(exists=False)},
    "parked on edge1": {"edge1": {**facts(running=True, addr=True),
                                  "parked": {"service": "mysql", "pid": 7, "started": 1, "target": "edge2"}},
                        "edge2": facts()},
    # A record is data the edge wrote: braces in it are never rendered on the controller.
    "braces in a record": {"edge1": facts({"role": "source", "phase": "{{ lookup('env', 'HOME') }}"}),
                           "edge2": facts(running=True)},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_filter_is_decide(case):
    assert recovery_decision(CASES[case]) == decide(CASES[case])


@pytest.mark.parametrize("bad", [["edge1"], "edge1", {"edge1": "facts"}])
def test_what_is_not_a_dict_of_facts_is_refused(bad):
    with pytest.raises(AnsibleFilterError, match="recovery_decision"):
        recovery_decision(bad)


def test_a_playbook_gets_the_same_decision_through_the_filter(tmp_path):
    (tmp_path / "cases.json").write_text(json.dumps(CASES))
    out = tmp_path / "out.json"
    # As in tasks/recover_service.yml: the facts arrive as a module's result (data, not templates), are set
    # as a fact, then decided in a template.
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.command: {{argv: [cat, '{tmp_path / 'cases.json'}']}}\n"
        "      register: seen\n      changed_when: false\n"
        "    - ansible.builtin.set_fact: {cases: \"{{ seen.stdout | from_json }}\"}\n"
        "    - ansible.builtin.set_fact:\n"
        "        decided: \"{{ decided | default({}) | combine({item.key: item.value"
        " | edgemig.migration.recovery_decision}) }}\"\n"
        "      loop: \"{{ cases | dict2items }}\"\n"
        f"    - ansible.builtin.copy: {{content: \"{{{{ decided | to_json }}}}\", dest: '{out}'}}\n")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".cache", "collections"),
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert json.loads(out.read_text()) == {name: decide(edges) for name, edges in CASES.items()}
