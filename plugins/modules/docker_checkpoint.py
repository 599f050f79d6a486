#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: docker_checkpoint
short_description: CRIU checkpoint of a running container into a tmpfs dump dir
version_added: 0.1.0
description:
  - Checkpoints a running container through the Docker Engine API (experimental C(POST /containers/{id}/checkpoints))
    into a fresh directory under O(dump_dir), which should be a tmpfs so that the dump never waits for a disk.
  - Reports what a migration will have to move, split the way it travels - memory pages (C(pages-*.img)),
    the other CRIU images, the container's writable layer (overlay2 UpperDir, whiteouts included) and its named volumes -
    with the time the container was frozen and dumped.
  - If CRIU fails the container keeps running; if Docker stopped it anyway it is started again.
  - A checkpoint that stops the container first records, on persistent storage (O(held_dir)), that it stops this
    container and which restart policy it had, then sets the policy to C(no) so that Docker does not start it again
    cold. C(playbooks/recover.yml) (M(edgemig.migration.migration_recover)) reads that record, also after a reboot
    emptied O(dump_dir), gives the policy back and removes the record; so does a failed checkpoint. A give-back
    Docker refuses fails the task, naming the policy.
  - With O(state=absent) removes a dump directory made earlier (O(work_dir)).
  - Every run with O(state=present) takes a new checkpoint; in check mode nothing is frozen.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.action_check_mode
  - edgemig.migration.docker
options:
  name:
    description: Container to checkpoint. Required with O(state=present).
    type: str
  dump_dir:
    description: Directory (tmpfs) under which the dump directory is created, mode 0700.
    type: path
    default: /var/lib/edgemig/dumps
  held_dir:
    description:
      - Where the held restart policy is recorded (C(<held_dir>/<name>.json), 0600, written and synced before the
        policy changes). Must be on persistent storage, not on the dump tmpfs.
      - Default C(held) beside O(dump_dir) (C(/var/lib/edgemig/held)), where M(edgemig.migration.migration_recover)
        looks by default.
    type: path
  checkpoint:
    description: Checkpoint name.
    type: str
    default: edgemig
  leave_running:
    description:
      - Keep the container running after the checkpoint. A migration wants it stopped (the default),
        so that nothing changes after the state was captured.
    type: bool
    default: false
  state:
    description: C(present) takes a checkpoint, C(absent) removes O(work_dir).
    type: str
    choices: [present, absent]
    default: present
  work_dir:
    description: Dump directory to remove with O(state=absent) (the RV(work_dir) of an earlier run).
    type: path
requirements:
  - Docker daemon with the experimental API enabled and CRIU on its PATH.
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: Freeze and dump apache
  edgemig.migration.docker_checkpoint:
    name: apache
    dump_dir: /var/lib/edgemig/dumps
  register: ckpt

- name: Clean up the dump
  edgemig.migration.docker_checkpoint:
    state: absent
    work_dir: "{{ ckpt.work_dir }}"
'''

RETURN = r'''
work_dir:
  description: The dump directory made for this checkpoint.
  returned: state=present, not in check mode
  type: str
checkpoint_dir:
  description: The CRIU image directory (inside O(work_dir)).
  returned: state=present, not in check mode
  type: str
container_id:
  description: Full ID of the checkpointed container.
  returned: state=present, not in check mode
  type: str
upper_dir:
  description: The container's overlay2 writable layer.
  returned: state=present, not in check mode
  type: str
volumes:
  description: Named volumes of the container (name, path, destination).
  returned: state=present, not in check mode
  type: list
  elements: dict
sizes:
  description: Bytes to migrate by kind (pages, other, layer, volumes, total).
  returned: state=present, not in check mode
  type: dict
  sample: {pages: 7850000, other: 160000, layer: 12000, volumes: 0, total: 8022000}
durations:
  description: >-
    Seconds spent; C(checkpoint_s) is the freeze+dump time. Through containerd also CRIU's own
    C(criu_frozen_s), C(criu_memdump_s) and C(criu_memwrite_s) (its stats-dump).
  returned: state=present, not in check mode
  type: dict
checkpoint_via:
  description: >-
    C(containerd) when CRIU wrote the images straight into O(dump_dir) (the container's containerd
    shim named its containerd, and C(ctr) is installed), C(docker) when Docker's checkpoint call made
    them (its copies through containerd's content store make it slower).
  returned: state=present, not in check mode
  type: str
restart_policy:
  description: >-
    The restart policy the container had, if any: a checkpoint that stops the container sets it to
    C(no) so that Docker does not start the container again cold. Give it back with
    C(docker update --restart) when you start the container again yourself, and remove the held record
    (RV(held_dir)), or let M(edgemig.migration.migration_recover) do both.
  returned: state=present, not in check mode
  type: dict
  sample: {Name: unless-stopped, MaximumRetryCount: 0}
held_dir:
  description: Where the held restart policy is recorded (null with O(leave_running=true)).
  returned: state=present, not in check mode
  type: str
held_fs:
  description: File system type of RV(held_dir) (a tmpfs there would not outlive a reboot).
  returned: state=present, not in check mode
  type: str
dump_fs:
  description: File system type of the dump directory (C(tmpfs) expected).
  returned: state=present, not in check mode
  type: str
'''

import os
import shutil

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.common.options import DEFAULT_DUMP_DIR
from ansible_collections.edgemig.migration.plugins.module_utils.docker.checkpoint import CheckpointError, create
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.module_common import DOCKER_ARGS, docker_api


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            dump_dir=dict(type="path", default=DEFAULT_DUMP_DIR),
            held_dir=dict(type="path"),
            checkpoint=dict(type="str", default="edgemig"),
            leave_running=dict(type="bool", default=False),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            work_dir=dict(type="path"),
            **DOCKER_ARGS,
        ),
        required_if=[("state", "present", ["name"]), ("state", "absent", ["work_dir"])],
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "absent":
        exists = os.path.isdir(p["work_dir"])
        if exists and not module.check_mode:
            shutil.rmtree(p["work_dir"])
        module.exit_json(changed=exists, work_dir=p["work_dir"])
    api = docker_api(module)
    if module.check_mode:
        module.exit_json(changed=True, msg=f"would checkpoint {p['name']}")
    try:
        result = create(api, p["name"], p["dump_dir"], p["checkpoint"], exit_container=not p["leave_running"],
                        held_dir=p["held_dir"])
    except (CheckpointError, DockerAPIError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"dump_dir {p['dump_dir']}: {exc}")
    warnings = []
    if result["dump_fs"] != "tmpfs":
        warnings.append(f"dump_dir {p['dump_dir']} is on {result['dump_fs']}, not tmpfs: dumps will be slower")
    if result["held_fs"] in ("tmpfs", "ramfs"):
        warnings.append(f"held_dir {result['held_dir']} is on {result['held_fs']}: the held restart policy "
                        "would not outlive a reboot; put it on persistent storage")
    for w in warnings:
        module.warn(w)
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
