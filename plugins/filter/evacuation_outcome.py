# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``evacuation_outcome`` filter: each planned move's outcome, the record to keep and the table.

Pure data (``module_utils/planning/evacuation_record.py``): the controller computes it at the end of
playbooks/evacuate.yml from the plan and what the lanes reported.
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: evacuation_outcome
short_description: Each move of an evacuation (or return) - its outcome, the record to keep, a table
version_added: 0.1.0
description:
  - Takes the plan of P(edgemig.migration.evacuation_plan#filter) and what the lanes reported, and returns each
    planned move's status (C(moved), C(returned), C(failed), or C(unknown) when its lane never reported).
options:
  _input:
    description: The plan.
    type: dict
    required: true
  done:
    description: The lanes' reports, each C(service), C(target), C(ok), C(msg), C(downtime_s), C(report).
    type: list
    elements: dict
    required: true
  record:
    description: For a return, the evacuation's record (reports/evacuate-<edge>.json).
    type: dict
author:
  - edgemig developers (@edgemig)
"""

EXAMPLES = r"""
- name: Outcome of the evacuation
  ansible.builtin.set_fact:
    outcome: "{{ plan | edgemig.migration.evacuation_outcome(lane_reports) }}"
"""

RETURN = r"""
_value:
  description:
    - C(rows) (per move C(service), C(source), C(target), C(status), C(downtime_s), C(note)), C(record) (what to
      keep in reports/evacuate-<edge>.json), C(failed) (services that did not move) and C(table) (lines to print).
  type: dict
"""

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.edgemig.migration.plugins.filter.literal import literal
from ansible_collections.edgemig.migration.plugins.module_utils.planning.evacuation_record import outcome


def evacuation_outcome(plan: Any, done: Any, record: Any = None) -> dict:
    """``evacuation_record.outcome`` on plain copies: what the lanes reported is data, never a template."""
    if not isinstance(plan, dict) or not isinstance(done, list):
        raise AnsibleFilterError("evacuation_outcome expects the plan (a dict) and the lanes' reports (a list)")
    return outcome(literal(plan), literal(done), literal(record) if isinstance(record, dict) else None)


class FilterModule:
    def filters(self) -> dict:
        return {"evacuation_outcome": evacuation_outcome}
