#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: service_address
short_description: Put a service's stable address on an edge host, or take it away
version_added: 0.1.0
description:
  - Clients reach a migrated service at one address. The migration removes it from the source and adds it on the
    target; with O(state=present) the module also broadcasts gratuitous ARP so that neighbours (routers, clients on
    the segment) switch to the new host at once instead of waiting for their ARP cache to expire.
  - Docker publishes ports on all local addresses, so traffic to the service address reaches the container on
    whichever host holds the address.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.state
options:
  address:
    description: The service address (IPv4).
    type: str
    required: true
  prefix:
    description: Prefix length the address is added with.
    type: int
    default: 32
  interface:
    description: Interface to add the address to.
    type: str
    required: true
  state:
    description: C(present) adds the address and announces it, C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  garp_count:
    description: Gratuitous ARP packets to send after adding the address.
    type: int
    default: 3
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: Move apache's address to this edge
  edgemig.migration.service_address:
    address: 10.213.0.101
    interface: eth0
'''

RETURN = r'''
present:
  description: Whether the address is on the interface now.
  returned: always
  type: bool
'''

import ipaddress

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.docker.switchover import (
    SwitchoverError,
    address_present,
    set_address,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            address=dict(type="str", required=True),
            prefix=dict(type="int", default=32),
            interface=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            garp_count=dict(type="int", default=3),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        ipaddress.IPv4Address(p["address"])
    except ValueError:
        module.fail_json(msg=f"address={p['address']!r} is not an IPv4 address")
    want = p["state"] == "present"
    try:
        present, _mac = address_present(p["interface"], p["address"])
        if module.check_mode:
            module.exit_json(changed=present != want, present=present)
        changed = set_address(p["interface"], p["address"], want, p["prefix"], p["garp_count"])
    except SwitchoverError as exc:
        module.fail_json(msg=f"interface={p['interface']!r}: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"gratuitous ARP on {p['interface']} failed: {exc}")
    module.exit_json(changed=changed, present=want)


if __name__ == "__main__":
    main()
