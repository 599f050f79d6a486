#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: docker_checkpoint_restore
short_description: Prepare a container for a checkpoint and restore it from one
version_added: 0.1.0
description:
  - O(stage=prepare) creates (not starts) the container from O(config) - the create body of the source
    container, image referenced by ID - and makes the directory the checkpoint must land in. Run it on the
    target before the source is frozen, so container creation stays off the downtime path. A stopped
    leftover of the same name is replaced; a running one is an error (the service already runs here).
  - O(stage=restore) starts the container from the checkpoint (C(docker start --checkpoint)) and waits for the
    O(health) check. With O(checkpoint_source) the checkpoint is first copied from a dump directory into the
    container's checkpoints directory (Docker 20.10 refuses custom directories on restore); this is how a failed
    migration is rolled back on the source. With O(fallback_start=true), if the restore from the checkpoint fails
    the container is started fresh, so the service is never left down. O(stage=restore) does nothing when the
    container already runs.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.action_staged
  - edgemig.migration.docker
options:
  name:
    description: Container name.
    type: str
    required: true
  stage:
    description: C(prepare) or C(restore), see the description.
    type: str
    choices: [prepare, restore]
    required: true
  config:
    description: Create body of the container (RV(edgemig.migration.edge_container_info#module:config)). Required for O(stage=prepare).
    type: dict
  checkpoint:
    description: Checkpoint name.
    type: str
    default: edgemig
  checkpoint_source:
    description: Directory holding the CRIU images to copy into place before restoring.
    type: path
  health:
    description: Health check of the service (catalog C(health) entry) - C(type) C(http), C(tcp) or C(cmd), C(port), C(path), C(command), C(timeout).
    type: dict
  fallback_start:
    description: If the restore from the checkpoint fails, start the container without it.
    type: bool
    default: false
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: Create the target container before the freeze
  edgemig.migration.docker_checkpoint_restore:
    name: apache
    stage: prepare
    config: "{{ source_info.config }}"
  register: prepared
  no_log: true

- name: Restore it from the transferred checkpoint
  edgemig.migration.docker_checkpoint_restore:
    name: apache
    stage: restore
    health: {type: http, port: 4004, path: /}
'''

RETURN = r'''
container_id:
  description: Full ID of the container.
  returned: success
  type: str
upper_dir:
  description: Writable layer of the prepared container (where the layer diff goes).
  returned: stage=prepare
  type: str
checkpoint_dir:
  description: Directory the checkpoint images must be written to.
  returned: always
  type: str
volumes:
  description: Named volumes of the prepared container with their host paths.
  returned: stage=prepare
  type: list
  elements: dict
restored_from_checkpoint:
  description: False when O(fallback_start) had to start the container fresh.
  returned: stage=restore
  type: bool
durations:
  description: C(restore_s) (start from checkpoint), C(health_s) (until the health check passed), C(prepare_s).
  returned: success
  type: dict
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.checkpoint import stage_checkpoint
from ansible_collections.edgemig.migration.plugins.module_utils.container_spec import checkpoint_dir, upper_dir, volumes
from ansible_collections.edgemig.migration.plugins.module_utils.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.health import wait_healthy
from ansible_collections.edgemig.migration.plugins.module_utils.module_common import DOCKER_ARGS, docker_api


def prepare(module, api) -> None:
    p = module.params
    t0 = time.monotonic()
    try:
        current = api.inspect_container(p["name"])
        if current is not None:
            if current["State"].get("Running"):
                module.fail_json(msg=f"container {p['name']!r} is already running on this host; "
                                     "refusing to replace a running service")
            api.remove_container(p["name"], force=True)
        image = p["config"].get("Image")
        if not image or api.inspect_image(image) is None:
            module.fail_json(msg=f"image {image!r} of {p['name']!r} is not present on this host: the base "
                                 "image must be shared (run the base_images role)")
        cid = api.create_container(p["name"], p["config"])
        inspect = api.inspect_container(cid)
        data_root = api.info()["DockerRootDir"]
    except DockerAPIError as exc:
        module.fail_json(msg=f"preparing {p['name']!r}: {exc}")
    ckpt = checkpoint_dir(data_root, cid, p["checkpoint"])
    os.makedirs(ckpt, mode=0o700, exist_ok=True)
    vols = volumes(inspect)
    module.exit_json(changed=True, container_id=cid, upper_dir=upper_dir(inspect), checkpoint_dir=ckpt,
                     volumes=vols, durations={"prepare_s": round(time.monotonic() - t0, 4)})


def restore(module, api) -> None:
    p = module.params
    inspect = api.inspect_container(p["name"])
    if inspect is None:
        module.fail_json(msg=f"container {p['name']!r} does not exist on this host: prepare it first")
    cid = inspect["Id"]
    data_root = api.info()["DockerRootDir"]
    ckpt = checkpoint_dir(data_root, cid, p["checkpoint"])
    if inspect["State"].get("Running"):
        module.exit_json(changed=False, container_id=cid, checkpoint_dir=ckpt, restored_from_checkpoint=False,
                         durations={}, msg="already running")
    t0 = time.monotonic()
    error = None
    from_checkpoint = True
    try:
        if p["checkpoint_source"]:
            ckpt = stage_checkpoint(api, cid, p["checkpoint"], p["checkpoint_source"])
        api.start_container(cid, checkpoint=p["checkpoint"], timeout=300)
    except (DockerAPIError, OSError) as exc:
        error = f"restore of {p['name']!r} from checkpoint {p['checkpoint']!r} failed: {exc}"
    if error and p["fallback_start"]:
        from_checkpoint = False
        try:
            api.start_container(cid)
        except DockerAPIError as exc:
            module.fail_json(msg=f"{error}; starting it without the checkpoint failed too: {exc}")
    elif error:
        module.fail_json(msg=error)
    restore_s = time.monotonic() - t0
    ok, health_s, reason = wait_healthy(p["health"], api, cid)
    durations = {"restore_s": round(restore_s, 4), "health_s": round(health_s, 4)}
    if not ok:
        module.fail_json(msg=f"{p['name']!r} was restored but its health check failed: {reason}",
                         container_id=cid, durations=durations)
    result = dict(changed=True, container_id=cid, checkpoint_dir=ckpt, restored_from_checkpoint=from_checkpoint,
                  durations=durations)
    if error:
        module.warn(f"{error}; the container was started without its checkpoint (memory state lost)")
        result["restore_error"] = error
    module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            stage=dict(type="str", choices=["prepare", "restore"], required=True),
            config=dict(type="dict"),
            checkpoint=dict(type="str", default="edgemig"),
            checkpoint_source=dict(type="path"),
            health=dict(type="dict"),
            fallback_start=dict(type="bool", default=False),
            **DOCKER_ARGS,
        ),
        required_if=[("stage", "prepare", ["config"])],
        supports_check_mode=False,
    )
    api = docker_api(module)
    if module.params["stage"] == "prepare":
        prepare(module, api)
    else:
        restore(module, api)


if __name__ == "__main__":
    main()
