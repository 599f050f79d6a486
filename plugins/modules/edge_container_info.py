#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: edge_container_info
short_description: Where a container runs, its writable layer, volumes and the config to recreate it
version_added: 0.1.0
description:
  - Inspects one container through the Docker Engine API and reports whether it exists and runs,
    its image ID, its overlay2 writable layer (UpperDir), its named volumes and a create body
    that reproduces it on another Docker daemon (used by the migration to prepare the target).
  - The returned RV(config) contains the container's environment; use C(no_log) on the task if it holds secrets.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.info_module
  - edgemig.migration.docker
options:
  name:
    description: Container name or ID.
    type: str
    required: true
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: Find out whether apache runs on this edge
  edgemig.migration.edge_container_info:
    name: apache
    docker_host: unix:///run/edgemig-lab/edge1/docker.sock
  register: apache
'''

RETURN = r'''
container:
  description: Summary of the container; C(exists=false) when there is none.
  returned: always
  type: dict
  sample: {exists: true, running: true, id: 4f1c..., image_id: "sha256:...", upper_dir: /var/lib/docker/overlay2/x/diff, volumes: []}
config:
  description: Create body reproducing the container (image by ID). Empty when it does not exist.
  returned: always
  type: dict
docker:
  description: Daemon facts needed by a migration (data root, storage driver, experimental).
  returned: always
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.docker.container_spec import from_inspect, summary
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.module_common import DOCKER_ARGS, docker_api


def main() -> None:
    module = AnsibleModule(argument_spec=dict(name=dict(type="str", required=True), **DOCKER_ARGS),
                           supports_check_mode=True)
    api = docker_api(module)
    try:
        info = api.info()
        inspect = api.inspect_container(module.params["name"])
    except DockerAPIError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(
        changed=False,
        container=summary(inspect),
        config=from_inspect(inspect) if inspect else {},
        docker={"data_root": info.get("DockerRootDir"), "storage_driver": info.get("Driver"),
                "experimental": bool(info.get("ExperimentalBuild")), "version": info.get("ServerVersion")},
    )


if __name__ == "__main__":
    main()
