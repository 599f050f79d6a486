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
extends_documentation_fragment: []
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
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
  - edgemig developers
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
import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.garp import send_garp


def link_state(module, interface: str, address: str) -> tuple[bool, str]:
    """(address present on the interface, the interface's MAC)."""
    rc, out, err = module.run_command(["ip", "-j", "addr", "show", "dev", interface])
    if rc != 0:
        module.fail_json(msg=f"interface={interface!r}: {err.strip() or 'no such interface'}")
    links = json.loads(out or "[]")
    present = any(a.get("local") == address for link in links for a in link.get("addr_info", []))
    return present, (links[0].get("address", "") if links else "")


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
    present, mac = link_state(module, p["interface"], p["address"])
    want = p["state"] == "present"
    changed = present != want
    if changed and not module.check_mode:
        verb = "add" if want else "del"
        rc, _out, err = module.run_command(["ip", "addr", verb, f"{p['address']}/{p['prefix']}",
                                            "dev", p["interface"]])
        if rc != 0:
            module.fail_json(msg=f"ip addr {verb} {p['address']} on {p['interface']} failed: {err.strip()}")
    if want and not module.check_mode and p["garp_count"] > 0:
        try:
            send_garp(p["interface"], mac, p["address"], p["garp_count"])
        except OSError as exc:
            module.warn(f"gratuitous ARP on {p['interface']} failed: {exc}")
    module.exit_json(changed=changed, present=want if not module.check_mode else present)


if __name__ == "__main__":
    main()
