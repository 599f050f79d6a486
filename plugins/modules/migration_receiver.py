#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: migration_receiver
short_description: Install the pinned migration receiver on an edge host
version_added: 0.1.0
description:
  - Writes the receiver of this collection (its sources, a launcher and a small config) into O(dir). Migrations
    into this host run that launcher; the sender sends no code and no paths, only the version it expects and
    the ID of a ticket this host wrote when the controller prepared the target; a host whose receiver is of
    another version refuses before anything is frozen.
  - The launcher is meant as the forced command (C(command="<dir>/edgemig-receiver")) of the other edges'
    migration keys (the migration_trust role writes those C(authorized_keys) entries). It accepts nothing but
    C(--expect-version), C(--ticket) and C(--commit), and writes only where the ticket says, under O(allowed_roots).
  - Run by the migration_trust role; docs/security.md says what the receiver may still do.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.state
options:
  dir:
    description: Directory to install into (the inventory variable C(edgemig_receiver_dir)).
    type: path
    default: /usr/local/lib/edgemig/receiver
  python:
    description: The Python interpreter the launcher runs with (needs lz4 and zstandard).
    type: str
    default: /usr/bin/python3
  allowed_roots:
    description:
      - Directories the receiver may write into; every stream root must lie under one. Give Docker's data root
        (where the target container's layer, volumes and checkpoint are) and the dump tmpfs.
    type: list
    elements: path
    required: true
  dump_dir:
    description:
      - This host's dump tmpfs (the inventory variable C(edgemig_dump_dir)). The receiver takes its migration tickets
        from C(<dump_dir>/tickets), where M(edgemig.migration.docker_checkpoint_restore) writes them.
    type: path
    default: /var/lib/edgemig/dumps
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: Install the receiver
  edgemig.migration.migration_receiver:
    allowed_roots: [/var/lib/docker, /var/lib/edgemig/dumps]
'''

RETURN = r'''
version:
  description: The receiver's version (a digest of its sources); a sender of the same collection expects it.
  returned: always
  type: str
launcher:
  description: Path of the launcher, the forced command of the migration keys.
  returned: always
  type: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.common.options import DEFAULT_DUMP_DIR
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.receiver_install import (
    LAUNCHER_NAME,
    RECEIVER_DIR,
    install_receiver,
    receiver_version,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            dir=dict(type="path", default=RECEIVER_DIR),
            python=dict(type="str", default="/usr/bin/python3"),
            allowed_roots=dict(type="list", elements="path", required=True),
            dump_dir=dict(type="path", default=DEFAULT_DUMP_DIR),
        ),
        supports_check_mode=True,
    )
    p = module.params
    bad = [r for r in p["allowed_roots"] if not os.path.isabs(r) or os.path.realpath(r) == "/"]
    if bad or not p["allowed_roots"]:
        module.fail_json(msg=f"allowed_roots={p['allowed_roots']!r}: give absolute directories other than / "
                             "(Docker's data root and the dump tmpfs)")
    try:
        changed = install_receiver(p["dir"], p["python"], p["allowed_roots"], p["dump_dir"],
                                   check_mode=module.check_mode)
    except OSError as exc:
        module.fail_json(msg=f"cannot install the receiver into {p['dir']}: {exc}")
    module.exit_json(changed=changed, version=receiver_version(), launcher=os.path.join(p["dir"], LAUNCHER_NAME))


if __name__ == "__main__":
    main()
