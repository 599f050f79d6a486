# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``recovery_decision`` filter: which copy of a service wins, from every edge's facts.

The decision table (``recovery.decide``) is a pure function of the facts the
edges reported (``migration_recover mode=inspect``): computing it needs no
host, no Docker and no module run, so the controller computes it in the
template where the facts meet (playbooks/tasks/recover_service.yml).
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: recovery_decision
short_description: Which copy of an interrupted migration wins, and what each edge must do
version_added: 0.1.0
description:
  - Takes, per edge host, the RV(edgemig.migration.migration_recover#module:facts) that
    M(edgemig.migration.migration_recover) reported with O(edgemig.migration.migration_recover#module:mode=inspect)
    (null for an edge that could not be reached) and returns the recovery's decision.
  - A source record that passed the commit point makes the target win, restored from the checkpoint it kept if it
    does not run; without one the source wins. A copy that passed the commit point is never removed unless it
    confirmed it cannot serve. A copy stopped by a checkpoint (held record) whose migration record is lost serves
    again when no copy runs anywhere and no target received COMMIT, and waits while an edge is unreachable
    (docs/design.md, "Recovery").
  - The same decision as O(edgemig.migration.migration_recover#module:mode=decide), computed on the controller
    without running a module.
options:
  _input:
    description: Edge host name -> that edge's inspect facts, or null when the edge was unreachable.
    type: dict
    required: true
author:
  - edgemig developers (@edgemig)
"""

EXAMPLES = r"""
- name: Decide which copy wins
  ansible.builtin.set_fact:
    decision: "{{ {'edge1': seen_edge1.facts, 'edge2': None} | edgemig.migration.recovery_decision }}"
"""

RETURN = r"""
_value:
  description:
    - C(winner) (the edge that serves, or null), C(reason), C(actions) (edge -> C(serve), C(stand_down), C(stop),
      C(wait) or C(none), the O(edgemig.migration.migration_recover#module:action) of its converge) and
      C(complete) (false while an edge must be seen again).
  type: dict
"""

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.edgemig.migration.plugins.filter.literal import literal
from ansible_collections.edgemig.migration.plugins.module_utils.driver.recovery import decide


def recovery_decision(edges: Any) -> dict:
    """``recovery.decide`` on plain copies of the facts: what edges reported is data, never a template."""
    if not isinstance(edges, dict):
        raise AnsibleFilterError(f"recovery_decision expects a dict of edge -> facts, got {type(edges).__name__}")
    facts = literal(edges)
    bad = sorted(e for e, f in facts.items() if f is not None and not isinstance(f, dict))
    if bad:
        raise AnsibleFilterError(f"recovery_decision: the facts of {', '.join(bad)} are not a dict (nor null)")
    return decide(facts)


class FilterModule:
    def filters(self) -> dict:
        return {"recovery_decision": recovery_decision}
