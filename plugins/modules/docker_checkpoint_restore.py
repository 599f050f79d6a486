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
    The checkpoint directory is C(<dump_dir>/<name>.restore/<checkpoint>), on the dump tmpfs, so that memory images
    never touch persistent storage.
  - O(stage=restore) starts the container from the checkpoint (C(docker start --checkpoint)) and waits for the
    O(health) check. The images are read where they are, on the dump tmpfs (O(checkpoint_source), by default the
    directory O(stage=prepare) made). Docker 20.10 refuses custom directories on restore, so the container's
    C(checkpoints) directory is a symlink to it for the length of the start. The images are deleted once the
    container runs. With O(fallback_start=true), if the restore from the checkpoint fails
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
    description:
      - Directory holding the CRIU images (for example RV(edgemig.migration.docker_checkpoint#module:checkpoint_dir)
        on the source, to roll a failed migration back). Its last component is the checkpoint's name.
      - Default C(<dump_dir>/<name>.restore/<checkpoint>), where O(stage=prepare) puts it.
    type: path
  dump_dir:
    description: This host's dump tmpfs (the C(edgemig.migration.dump_tmpfs) role mounts it).
    type: path
    default: /var/lib/edgemig/dumps
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
  description: Directory the checkpoint images must be written to (on the dump tmpfs), or were restored from.
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
import shutil
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.container_spec import upper_dir, volumes
from ansible_collections.edgemig.migration.plugins.module_utils.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.health import wait_healthy
from ansible_collections.edgemig.migration.plugins.module_utils.module_common import DOCKER_ARGS, docker_api
from ansible_collections.edgemig.migration.plugins.module_utils.tmpfs_restore import (
    restore_parent,
    start_from_checkpoint,
)


def restore_dir(p: dict) -> str:
    """Where the checkpoint of ``p['name']`` lands on this host's dump tmpfs."""
    return os.path.join(restore_parent(p["dump_dir"], p["name"]), p["checkpoint"])


# Volume options that say the data lives elsewhere (possibly on the very storage the source uses).
REMOTE_TYPES = ("nfs", "nfs4", "cifs", "smb", "ceph", "glusterfs")


def volume_conflicts(api, name: str, config: dict) -> str | None:
    """Why the service's named volumes cannot be written on this host, if they cannot.

    The stream clears a volume before it writes the service's data into it: a volume another
    container mounts here would lose that container's data, and a volume that is not local
    (NFS, CIFS, a plugin driver) may be the storage the source still uses.
    """
    for mount in (config.get("HostConfig") or {}).get("Mounts") or []:
        if mount.get("Type") != "volume" or not mount.get("Source"):
            continue
        vol = mount["Source"]
        users = [c for c in api.containers_using_volume(vol, running_only=False) if c != name]
        if users:
            return (f"volume {vol!r} of {name!r} is also mounted by {', '.join(users)} on this host: the migration "
                    "would overwrite their data. Remove them or rename the volume; nothing was frozen")
        info = api.volume_inspect(vol) or {}
        opts = info.get("Options") or {}
        kind = opts.get("type", "")
        if info and (info.get("Driver", "local") != "local" or kind in REMOTE_TYPES or "addr=" in opts.get("o", "")):
            return (f"volume {vol!r} of {name!r} on this host is not local storage (driver {info.get('Driver')!r}, "
                    f"type {kind!r}): it may be the storage the source uses, which the migration would clear. "
                    "Give the service a local volume; nothing was frozen")
    return None


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
        conflict = volume_conflicts(api, p["name"], p["config"])
        if conflict:
            module.fail_json(msg=conflict)
        cid = api.create_container(p["name"], p["config"])
        inspect = api.inspect_container(cid)
    except DockerAPIError as exc:
        module.fail_json(msg=f"preparing {p['name']!r}: {exc}")
    ckpt = restore_dir(p)
    shutil.rmtree(os.path.dirname(ckpt), ignore_errors=True)  # images of an earlier, abandoned attempt
    os.makedirs(ckpt, mode=0o700, exist_ok=True)
    module.exit_json(changed=True, container_id=cid, upper_dir=upper_dir(inspect), checkpoint_dir=ckpt,
                     volumes=volumes(inspect), durations={"prepare_s": round(time.monotonic() - t0, 4)})


def restore(module, api) -> None:
    p = module.params
    inspect = api.inspect_container(p["name"])
    if inspect is None:
        module.fail_json(msg=f"container {p['name']!r} does not exist on this host: prepare it first")
    cid = inspect["Id"]
    ckpt = p["checkpoint_source"] or restore_dir(p)
    if inspect["State"].get("Running"):
        module.exit_json(changed=False, container_id=cid, checkpoint_dir=ckpt, restored_from_checkpoint=False,
                         durations={}, msg="already running")
    t0 = time.monotonic()
    error = None
    from_checkpoint = True
    try:
        start_from_checkpoint(api, cid, ckpt, timeout=300)
    except (DockerAPIError, OSError) as exc:
        error = f"restore of {p['name']!r} from checkpoint {ckpt!r} failed: {exc}"
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
            dump_dir=dict(type="path", default="/var/lib/edgemig/dumps"),
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
