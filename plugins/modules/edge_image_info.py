#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: edge_image_info
short_description: Whether images are present on an edge host, with their IDs
version_added: 0.1.0
description:
  - Looks up images by name or ID. A migration restores only onto a host that holds the very same base image
    (same ID) as the source, so only the state and the writable layer travel.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.info_module
  - edgemig.migration.docker
options:
  images:
    description: Image names or IDs.
    type: list
    elements: str
    required: true
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: Does edge2 have apache's image?
  edgemig.migration.edge_image_info:
    images: [edgemig/apache:bookworm]
  register: imgs
'''

RETURN = r'''
images:
  description: One item per requested image, in order - C(name), C(present), C(id), C(size).
  returned: always
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.module_common import DOCKER_ARGS, docker_api


def main() -> None:
    module = AnsibleModule(argument_spec=dict(images=dict(type="list", elements="str", required=True),
                                              **DOCKER_ARGS),
                           supports_check_mode=True)
    api = docker_api(module)
    out = []
    try:
        for name in module.params["images"]:
            img = api.inspect_image(name)
            out.append({"name": name, "present": img is not None, "id": img["Id"] if img else None,
                        "size": img.get("Size") if img else None})
    except DockerAPIError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, images=out)


if __name__ == "__main__":
    main()
