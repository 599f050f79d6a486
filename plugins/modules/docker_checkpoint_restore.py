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
    It refuses, before creating anything, a target without the image (by ID) and one where something already
    answers on a TCP host port the container publishes (at C(127.0.0.1)), since the restore would fail there with
    the service frozen on the source.
    The checkpoint directory is C(<dump_dir>/<name>.restore/<checkpoint>), on the dump tmpfs, so that memory images
    never touch persistent storage.
  - O(stage=prepare) also writes a one-time migration ticket on this host (root only, C(<dump_dir>/tickets/), valid
    O(ticket_ttl) seconds) and returns its ID in RV(ticket). The ticket holds every path and parameter of the
    migration into this host, taken from this host's own Docker and from the options here - the checkpoint, layer,
    volume and warm-page directories, the container by ID, O(health), O(address), O(interface), O(docker_host).
    A sender edge names only the ticket (O(edgemig.migration.edge_migrate#module:target.ticket)), and the
    receiver uses it once. Earlier unused tickets of the same container are revoked.
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
  address:
    description: With O(stage=prepare), the service address the receiver adds to O(interface) once the restored
      service is healthy (written into the ticket).
    type: str
  interface:
    description: With O(stage=prepare), this host's interface for O(address).
    type: str
  stall_timeout:
    description: With O(stage=prepare), the migration's stall timeout in seconds (the receiver gives up after twice it).
    type: int
    default: 30
  ticket_ttl:
    description: With O(stage=prepare), how long the ticket stays valid, in seconds (a parked follow migration
      connects only when released).
    type: int
    default: 3600
  allow_host_access:
    description:
      - With O(stage=prepare), create the container even when O(config) asks for access to this host (privileged,
        added capabilities, devices, bind mounts, the host's namespaces, a loose security profile). Off by default -
        O(config) comes from the source edge, and catalog services never ask for it.
    type: bool
    default: false
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
ticket:
  description: ID of the one-time migration ticket written on this host (give it to the sender).
  returned: stage=prepare
  type: str
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
import socket
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.common.faults import read_faults
from ansible_collections.edgemig.migration.plugins.module_utils.common.options import DEFAULT_DUMP_DIR, MigrationOptions
from ansible_collections.edgemig.migration.plugins.module_utils.docker.container_spec import upper_dir, volumes
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.health import wait_healthy
from ansible_collections.edgemig.migration.plugins.module_utils.docker.module_common import DOCKER_ARGS, docker_api
from ansible_collections.edgemig.migration.plugins.module_utils.docker.tmpfs_restore import (
    restore_parent,
    start_from_checkpoint,
)
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.ticket import issue, revoke, warm_dir


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


# What in a create body reaches past the container into the host. The body comes from the
# source edge (its Docker's inspect of the service); a compromised source must not get a
# privileged container or the host's file system on the target through it.
HOST_NAMESPACES = ("NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode")
LOOSE_SECURITY = ("unconfined", "label=disable", "label:disable", "no-new-privileges=false")


def host_access(config: dict) -> list[str]:
    """What ``config`` asks for that reaches into the host (empty when nothing)."""
    hc = config.get("HostConfig") or {}
    found = []
    if hc.get("Privileged"):
        found.append("Privileged")
    if hc.get("CapAdd"):
        found.append(f"CapAdd {hc['CapAdd']}")
    for key in ("Devices", "DeviceRequests", "DeviceCgroupRules", "VolumesFrom", "Links"):
        if hc.get(key):
            found.append(key)
    if hc.get("Binds"):
        found.append(f"Binds {hc['Binds']}")
    binds = [m.get("Source") for m in hc.get("Mounts") or [] if m.get("Type") not in (None, "volume", "tmpfs")]
    if binds:
        found.append(f"bind Mounts {binds}")
    for key in HOST_NAMESPACES:
        if str(hc.get(key) or "").startswith(("host", "container:")):
            found.append(f"{key}={hc[key]}")
    loose = [o for o in hc.get("SecurityOpt") or [] if any(w in str(o) for w in LOOSE_SECURITY)]
    if loose:
        found.append(f"SecurityOpt {loose}")
    return found


def ports_taken(config: dict, host: str = "127.0.0.1", timeout: float = 1.0) -> list[int]:
    """The TCP host ports ``config`` publishes that something on this host already answers (a
    container publishing it, a daemon). Checked before the freeze: Docker would only find out when
    it starts the restored container, with the service already frozen on the source."""
    taken = []
    for key, bindings in sorted(((config.get("HostConfig") or {}).get("PortBindings") or {}).items()):
        if not str(key).endswith("/tcp"):
            continue  # nothing to connect to; Docker's own bind at the restore still checks them
        for port in sorted({int(b["HostPort"]) for b in bindings or [] if str(b.get("HostPort") or "").isdigit()}):
            try:
                with socket.create_connection((host, port), timeout=timeout):
                    taken.append(port)
            except OSError:
                pass
    return sorted(set(taken))


def prepare(module, api) -> None:
    p = module.params
    t0 = time.monotonic()
    reach = host_access(p["config"])
    if reach and not p["allow_host_access"]:
        module.fail_json(msg=f"the container config of {p['name']!r} asks for access to this host: {'; '.join(reach)}. "
                             "A catalog service is created without it, so this config did not come from the "
                             "catalog (a compromised source edge?); set allow_host_access=true only for a "
                             "service you run that way on purpose; nothing was created")
    try:
        current = api.inspect_container(p["name"])
        if current is not None:
            if current["State"].get("Running"):
                module.fail_json(msg=f"container {p['name']!r} is already running on this host; "
                                     "refusing to replace a running service")
            api.remove_container(p["name"], force=True)
        image = p["config"].get("Image")
        if not image or api.inspect_image(image) is None:
            module.fail_json(msg=f"this host does not have image {image!r} of {p['name']!r}: the base image must "
                                 "be shared (run playbooks/provision.yml --tags images, the base_images role); "
                                 "nothing was frozen")
        taken = ports_taken(p["config"])
        if taken:
            module.fail_json(msg=f"{p['name']!r} publishes host port(s) {', '.join(map(str, taken))}, already "
                                 "answered on this host: the restored service could not bind them. Free them or "
                                 "pick another target; nothing was frozen")
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
    try:
        tid = write_ticket(p, api, cid, ckpt, inspect)
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"cannot write the migration ticket under {p['dump_dir']}: {exc}")
    module.exit_json(changed=True, container_id=cid, upper_dir=upper_dir(inspect), checkpoint_dir=ckpt,
                     volumes=volumes(inspect), ticket=tid,
                     durations={"prepare_s": round(time.monotonic() - t0, 4)})


def write_ticket(p: dict, api, cid: str, ckpt: str, inspect: dict) -> str:
    """The one-time ticket of a migration into the container just created: every path from this
    host's own Docker (its endpoint and TLS settings as this module reached it), every parameter
    from this module's options (ticket.py)."""
    faults = read_faults()  # fault suite only: EDGEMIG_FAULTS in this module's environment
    roots = {"checkpoint": ckpt, "layer": upper_dir(inspect), "warm": warm_dir(p["dump_dir"], p["name"])}
    roots.update({f"volume/{v['name']}": v["path"] for v in volumes(inspect)})
    clear = [name for name in roots if name != "checkpoint"]
    restore = {"name": p["name"], "container_id": cid, "docker_host": api.base_url,
               "docker_tls": api.tls.as_dict(), "health": p["health"],
               "address": p["address"], "interface": p["interface"] if p["address"] else None}
    revoke(p["dump_dir"], p["name"])
    return issue(p["dump_dir"], roots=roots, clear=clear, create=["warm"], service=p["name"], restore=restore,
                 stall_timeout=p["stall_timeout"], ttl=p["ticket_ttl"], faults=faults)


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
        start_from_checkpoint(api, cid, ckpt)
    except (DockerAPIError, OSError) as exc:
        error = f"restore of {p['name']!r} from checkpoint {ckpt!r} failed: {exc}"
    if error and p["fallback_start"]:
        from_checkpoint = False
        try:
            api.start_container(cid, allow_running=True)
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
            dump_dir=dict(type="path", default=DEFAULT_DUMP_DIR),
            health=dict(type="dict"),
            address=dict(type="str"),
            interface=dict(type="str"),
            stall_timeout=dict(type="int", default=MigrationOptions.stall_timeout),
            ticket_ttl=dict(type="int", default=3600),
            allow_host_access=dict(type="bool", default=False),
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
