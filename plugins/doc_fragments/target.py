# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations


class ModuleDocFragment:
    # The target of a stream as its sender sees it (ssh_stream.TARGET_OPTIONS).
    DOCUMENTATION = r'''
options:
  target:
    description:
      - The target edge host and the ticket its prepare stage wrote. Everything the target writes and restores
        (the checkpoint, layer and volume directories, the container, its health check, the service address and
        interface) is in that ticket, on the target; the sender names only the ticket (docs/security.md).
    type: dict
    required: true
    suboptions:
      host:
        description: Address of the target's sshd (its C(edgemig_migration_address)).
        type: str
        required: true
      port:
        description: SSH port of the target.
        type: int
        default: 22
      user:
        description: SSH user on the target.
        type: str
        default: root
      key_file:
        description: This host's migration key (the migration_trust role's).
        type: path
        default: /etc/edgemig/migration_key
      known_hosts:
        description: known_hosts holding the target's host key; an unknown or changed key is refused.
        type: path
        default: /etc/edgemig/known_hosts
      receiver_dir:
        description: Where the pinned receiver is installed on the target (the inventory variable C(edgemig_receiver_dir)).
        type: path
        default: /usr/local/lib/edgemig/receiver
      ticket:
        description: RV(edgemig.migration.docker_checkpoint_restore#module:ticket) of the target's prepare stage.
        type: str
        required: true
      volumes:
        description: RV(edgemig.migration.docker_checkpoint_restore#module:volumes) of the prepare stage; when given,
          a source volume the target lacks is refused before anything is frozen or sent.
        type: list
        elements: dict
      name:
        description: The target's inventory name, recorded for the recovery.
        type: str
'''
