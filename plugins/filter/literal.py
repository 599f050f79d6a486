# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``literal`` filter: a variable's value as it was written, without templating.

The service catalog is data: an env value may hold a config file or a script
with ``{{`` or ``{%`` in it, which Ansible would otherwise render (or fail on)
when the playbook reads ``edgemig_services[svc]``. ansible-core 2.19 renders
a variable's nested strings lazily, when they are read; this filter takes the
container's raw contents instead and returns plain Python data, which Ansible
never renders again.
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: literal
short_description: A variable's value as written, never templated
version_added: 0.1.0
description:
  - Returns the value (a dict, list or scalar) with every nested string exactly as it was written in the
    inventory or vars file; C({{ }}) and C({% %}) in it are kept, not rendered.
  - The playbooks of this collection read the service catalog (C(edgemig_services)) through it.
options:
  _input:
    description: The value to take literally.
    type: raw
    required: true
author:
  - edgemig developers (@edgemig)
"""

EXAMPLES = r"""
- name: A catalog entry exactly as written
  ansible.builtin.set_fact:
    spec: "{{ edgemig_services['apache'] | edgemig.migration.literal }}"
"""

RETURN = r"""
_value:
  description: The same value, as plain data.
  type: raw
"""

from typing import Any


def _raw(value: Any) -> Any:
    # ansible-core 2.19's lazy containers render an element when it is read;
    # _non_lazy_copy() gives the stored elements unrendered. On containers
    # without it (plain data, other ansible-core versions) nothing is lazy.
    copy = getattr(value, "_non_lazy_copy", None)
    return copy() if callable(copy) else value


def literal(value: Any) -> Any:
    """Plain (untagged, so never templated) copy of ``value`` with its strings as written."""
    value = _raw(value)
    if isinstance(value, dict):
        return {str(k): literal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [literal(v) for v in value]
    if isinstance(value, str):
        # A new str object carries none of Ansible's tags (trusted-as-template).
        return "".join((value,))
    return value


class FilterModule:
    def filters(self) -> dict:
        return {"literal": literal}
