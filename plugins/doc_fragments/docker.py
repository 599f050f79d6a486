# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r'''
options:
  docker_host:
    description:
      - The Docker Engine API endpoint on the managed host, a C(unix://) socket.
      - Falls back to the E(DOCKER_HOST) environment variable, then C(unix:///var/run/docker.sock).
    type: str
    aliases: [ docker_url ]
attributes:
  action_group:
    description: Use C(group/edgemig.migration.docker) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - edgemig.migration.docker
'''
