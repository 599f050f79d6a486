#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: edge_load_info
short_description: What an edge host runs and what it can still take - memory, ports, images, CPU
version_added: 0.1.0
description:
  - Reports the host's available memory, the host ports its running containers publish, its CPU features, the IDs
    of the images it holds, and for each of O(names) whether it runs here, its image ID and the memory it uses.
  - playbooks/evacuate.yml feeds it to the P(edgemig.migration.evacuation_plan#filter) filter. Changes nothing.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.info_module
  - edgemig.migration.docker
options:
  names:
    description: Containers (catalog services) to report on.
    type: list
    elements: str
    default: []
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: What edge2 runs and can take
  edgemig.migration.edge_load_info:
    names: [apache, mysql]
    docker_host: unix:///run/edgemig-lab/edge2/docker.sock
'''

RETURN = r'''
mem_available:
  description: MemAvailable of the host in bytes (null when unknown).
  returned: always
  type: int
ports_in_use:
  description: Host ports published by running containers.
  returned: always
  type: list
  elements: int
cpu:
  description: The CPU's instruction-set features, as M(edgemig.migration.migration_host_info) reports them.
  returned: always
  type: dict
images:
  description: The IDs of the images present here.
  returned: always
  type: list
  elements: str
containers:
  description: For each of O(names) that exists here - C(running), C(image_id), C(memory) (bytes in use).
  returned: always
  type: dict
'''

import concurrent.futures

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.host_readiness import cpu_features, read_text
from ansible_collections.edgemig.migration.plugins.module_utils.docker.module_common import DOCKER_ARGS, docker_api
from ansible_collections.edgemig.migration.plugins.module_utils.planning.edge_load import (
    mem_available,
    memory_in_use,
    published_ports,
)


def memory_of_each(api, ids: list[str]) -> dict[str, int]:
    """Each running container's memory in use, read at once: Docker 20.10 answers a one-shot stats
    request at its collector's next tick (up to 1 s), so one after another an edge with eight services
    took eight seconds before an evacuation's plan; side by side they take one tick."""
    if not ids:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(ids), 16)) as pool:
        stats = pool.map(lambda cid: api.get(f"/containers/{cid}/stats", params={"stream": "false", "one-shot": "true"}),
                         ids)
        return {cid: memory_in_use(s) for cid, s in zip(ids, stats)}


def main() -> None:
    module = AnsibleModule(argument_spec=dict(names=dict(type="list", elements="str", default=[]),
                                              **DOCKER_ARGS),
                           supports_check_mode=True)
    api = docker_api(module)
    containers = {}
    try:
        found = {}
        for name in module.params["names"]:
            inspect = api.inspect_container(name)
            if inspect is not None:
                found[name] = inspect
        memory = memory_of_each(api, [i["Id"] for i in found.values() if (i.get("State") or {}).get("Running")])
        for name, inspect in found.items():
            running = bool((inspect.get("State") or {}).get("Running"))
            containers[name] = {"running": running, "image_id": inspect.get("Image"),
                                "memory": memory.get(inspect["Id"], 0) if running else 0}
        images = sorted({i.get("Id") for i in api.get("/images/json") or [] if isinstance(i, dict) and i.get("Id")})
        ports = published_ports(api.get("/containers/json"))
    except DockerAPIError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, mem_available=mem_available(read_text("/proc/meminfo") or ""),
                     ports_in_use=ports, cpu=cpu_features(read_text("/proc/cpuinfo") or ""),
                     images=images, containers=containers)


if __name__ == "__main__":
    main()
