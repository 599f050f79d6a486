# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``evacuation_plan`` filter: where each service of an edge goes, in which order and lanes.

The plan (``module_utils/planning/evacuation_plan.py``) is a pure function of what the edges reported: the
controller computes it where the facts meet (playbooks/evacuate.yml), also in check mode.
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: evacuation_plan
short_description: Plan an evacuation (or the return) of an edge's services
version_added: 0.1.0
description:
  - Places each service running on O(_input.edge) on another edge that can take it (free memory, published
    ports, address, image, CPU features; the edge its users are near first), orders the moves by a stated rule
    and splits them into lanes that keep at most O(_input.per_source) moves at once per source link and
    O(_input.per_target) per target. With O(_input.mode=return), places the services running elsewhere back on
    O(_input.edge).
  - Each move gets C(share), the part of its source link it starts with (1 / moves running then on that link),
    for M(edgemig.migration.edge_migrate)'s O(edgemig.migration.edge_migrate#module:link_share).
  - Services no edge can take are listed in C(stays) with each candidate's reason.
  - Names and values are data, never templates.
options:
  _input:
    description:
      - C(edge) (the edge to empty, or to return to), C(mode) (V(evacuate) or V(return)), C(order) (V(shortest),
        V(user_facing), V(catalog), V(largest)), C(per_source), C(per_target).
      - C(catalog), the service catalog (C(edgemig_services); its entries' C(ports), C(address) and the optional
        C(near), C(user_facing), C(pullable) count).
      - C(seen), edge name -> M(edgemig.migration.edge_load_info)'s result, or null for an edge that did not answer;
        or that module's results looped over the edges (failed and unreachable ones count as null).
      - C(interfaces), edge name -> its C(edgemig_address_interface) (empty when unset, so it cannot take an address);
        C(links), edge name -> C(edgemig_link_mbit), the rate of its link the plan assumes (100 when unset).
      - C(near), service -> the edge its users are near (optional; the catalog's C(near) otherwise).
      - C(only), the services to consider (optional; the return's record).
    type: dict
    required: true
author:
  - edgemig developers (@edgemig)
"""

EXAMPLES = r"""
- name: Plan the evacuation of edge1
  ansible.builtin.set_fact:
    plan: "{{ {'edge': 'edge1', 'catalog': edgemig_services, 'seen': seen} | edgemig.migration.evacuation_plan }}"
"""

RETURN = r"""
_value:
  description:
    - C(moves) (each C(service), C(source), C(target), C(bytes), C(solo_s), C(expected_s), C(start_s), C(share),
      C(lane), C(pull), C(near), C(user_facing)), C(lanes) (service names per lane, in run order), C(stays)
      (C(service), C(runs_on), C(reason)), C(makespan_s), C(sum_completion_s), C(sum_solo_s),
      C(sum_completion_by_order), C(lines) (the plan as printed), C(record) (the moves as C(planned) records), and the request's C(edge), C(mode), C(order),
      C(per_source), C(per_target).
  type: dict
"""

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.edgemig.migration.plugins.filter.literal import literal
from ansible_collections.edgemig.migration.plugins.module_utils.planning.evacuation_plan import (
    PlanError,
    plan,
    plan_lines,
    request_from_facts,
)
from ansible_collections.edgemig.migration.plugins.module_utils.planning.evacuation_record import planned


def evacuation_plan(ask: Any) -> dict:
    """The plan (``evacuation_plan.plan``) for what the edges reported, on a plain copy, with its printed lines."""
    try:
        result = plan(*request_from_facts(literal(ask)))
    except PlanError as exc:
        raise AnsibleFilterError(f"evacuation plan: {exc}") from None
    result["lines"] = plan_lines(result)
    result["record"] = planned(result)
    return result


class FilterModule:
    def filters(self) -> dict:
        return {"evacuation_plan": evacuation_plan}
