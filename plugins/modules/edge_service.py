#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: edge_service
short_description: Run a service of the edgemig catalog on an edge host, or remove it
version_added: 0.1.0
description:
  - Creates and starts the container of a catalog service (image, command, env, ports, volumes) and waits for its
    health check, or removes it.
  - The container is labelled with the service name and a hash of its catalog entry; a running container with the
    same hash and the current image ID is left alone, one with another hash or an outdated image is replaced
    (O(recreate=true)) or reported.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.state
  - edgemig.migration.docker
options:
  name:
    description: Service name (also the container name).
    type: str
    required: true
  spec:
    description: The catalog entry (C(edgemig_services[name])). Required with O(state=started).
    type: dict
  state:
    description: C(started) runs the service, C(absent) removes the container (volumes are kept unless O(remove_volumes)).
    type: str
    choices: [started, absent]
    default: started
  recreate:
    description: Replace a container whose catalog entry changed.
    type: bool
    default: true
  remove_volumes:
    description: With O(state=absent), remove the container's anonymous volumes too.
    type: bool
    default: false
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: Deploy apache from the catalog
  edgemig.migration.edge_service:
    name: apache
    spec: "{{ edgemig_services.apache }}"
    docker_host: "{{ edgemig_docker_host }}"
'''

RETURN = r'''
container:
  description: Summary of the container after the change.
  returned: always
  type: dict
actions:
  description: What was done, in order.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.docker.container_spec import (
    LABEL_SPEC,
    from_catalog,
    spec_hash,
    summary,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.health import wait_healthy
from ansible_collections.edgemig.migration.plugins.module_utils.docker.module_common import DOCKER_ARGS, docker_api


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            spec=dict(type="dict"),
            state=dict(type="str", choices=["started", "absent"], default="started"),
            recreate=dict(type="bool", default=True),
            remove_volumes=dict(type="bool", default=False),
            **DOCKER_ARGS,
        ),
        required_if=[("state", "started", ["spec"])],
        supports_check_mode=True,
    )
    p = module.params
    api = docker_api(module)
    actions = []
    try:
        current = api.inspect_container(p["name"])
        if p["state"] == "absent":
            if current is not None:
                actions.append("removed")
                if not module.check_mode:
                    api.remove_container(p["name"], force=True, volumes=p["remove_volumes"])
            module.exit_json(changed=bool(actions), actions=actions, container=summary(None))
        try:
            body = from_catalog(p["name"], p["spec"])
        except (KeyError, TypeError, ValueError) as exc:
            module.fail_json(msg=f"spec of {p['name']!r} is not a valid catalog entry: {exc}")
        image = api.inspect_image(body["Image"])
        if image is None:
            module.fail_json(msg=f"image {body['Image']!r} of service {p['name']!r} is not present on this host "
                                 "(run the base_images role)")
        # Same catalog entry AND the image that name points to now (a rebuilt
        # base image must not leave the service on the old one).
        same = (current is not None
                and (current["Config"].get("Labels") or {}).get(LABEL_SPEC) == spec_hash(p["spec"])
                and current.get("Image") == image["Id"])
        if current is not None and not same:
            if not p["recreate"]:
                module.fail_json(msg=f"container {p['name']!r} exists with another configuration and recreate=false")
            actions.append("removed outdated container")
            if not module.check_mode:
                api.remove_container(p["name"], force=True)
            current = None
        if current is None:
            actions.append("created")
            if not module.check_mode:
                api.create_container(p["name"], body)
        if current is None or not current["State"].get("Running"):
            actions.append("started")
            if not module.check_mode:
                api.start_container(p["name"], allow_running=True)
                ok, _secs, reason = wait_healthy(p["spec"].get("health"), api, p["name"])
                if not ok:
                    module.fail_json(msg=f"service {p['name']!r} started but its health check failed: {reason}",
                                     actions=actions)
        module.exit_json(changed=bool(actions), actions=actions,
                         container=summary(api.inspect_container(p["name"])) if not module.check_mode else {})
    except DockerAPIError as exc:
        module.fail_json(msg=f"service {p['name']!r}: {exc}", actions=actions)


if __name__ == "__main__":
    main()
