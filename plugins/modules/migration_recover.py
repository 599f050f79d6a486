#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: migration_recover
short_description: Resolve an interrupted migration - exactly one running copy, holding the address
version_added: 0.1.0
description:
  - Three steps, run by C(playbooks/recover.yml) and by the rescue of C(playbooks/migrate.yml).
  - O(mode=inspect), on every edge host - what this host knows of the service - its migration record
    (C(<dump_dir>/.edgemig-state/<name>.json)), whether its container exists and runs, whether it holds a received
    checkpoint, whether the service address is here, and its held record (O(held_dir)), which says that a checkpoint
    stopped this container and which restart policy it took away; unlike the migration record it survives a reboot.
    A held record whose container is gone is removed.
  - O(mode=decide), anywhere (no Docker needed) - the decision from the facts of all edge hosts (O(edges)); the same
    pure function as the P(edgemig.migration.recovery_decision#filter) filter, which the playbooks use instead (no
    module run just to compute); kept for compatibility. A source
    record that passed the commit point makes the target win, restored from the checkpoint it kept if it does not
    run; without one the source wins. A copy that passed the commit point is never removed unless it confirmed it
    cannot serve. A copy stopped by a checkpoint (held record) whose migration record is lost (a reboot emptied the
    dump tmpfs) serves again when no copy runs anywhere and no target received COMMIT, and waits while an edge is
    unreachable.
  - Wherever the service is brought up again, the restart policy the checkpoint held is given back and the held record
    removed; a removed container's held record goes too. Docker refusing the policy fails the task, naming the policy.
  - O(mode=converge), on each edge host, losers first - apply O(action) (from the decision) here.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.action_staged
  - edgemig.migration.docker
options:
  name:
    description: The service (container) name.
    type: str
    required: true
  mode:
    description: What to do, see the description.
    type: str
    choices: [inspect, decide, converge]
    required: true
  dump_dir:
    description: This host's dump tmpfs (where the migration records live).
    type: path
    default: /var/lib/edgemig/dumps
  held_dir:
    description:
      - Where this host keeps the held restart policies, on persistent storage (C(<held_dir>/<name>.json)).
      - Default C(held) beside O(dump_dir) (C(/var/lib/edgemig/held)), where C(edge_migrate) and
        C(docker_checkpoint) write them.
    type: path
  address:
    description: The service address.
    type: str
  interface:
    description: This host's interface for O(address).
    type: str
  health:
    description: Health check a copy brought up here must pass (catalog C(health)).
    type: dict
  edges:
    description: With O(mode=decide), edge host name -> the RV(facts) of O(mode=inspect) (null when unreachable).
    type: dict
  action:
    description: >-
      With O(mode=converge), this host's part of the decision - V(serve), V(stand_down), V(stop), V(wait), V(none).
    type: str
    choices: [serve, stand_down, stop, wait, none]
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: What edge2 knows of mysql
  edgemig.migration.migration_recover:
    name: mysql
    mode: inspect
    dump_dir: /var/lib/edgemig/dumps
    address: 10.213.0.102
    interface: eth0
  register: seen
'''

RETURN = r'''
facts:
  description:
    - With O(mode=inspect) - record, exists, running, checkpoint (the images its record names, still on the
      dump tmpfs), has_checkpoint (a target holding them), held (the held record of this container, or null),
      address_here, parked (the note of a migration of the service parked here at its gate, while its process
      runs - target, job, since - or null).
  returned: mode=inspect
  type: dict
decision:
  description:
    - With O(mode=decide) - winner, reason, actions (edge -> action), complete.
    - When a migration of the service is parked on an edge (nothing frozen), also parked (that edge); then every
      action is none and the reason says so.
  returned: mode=decide
  type: dict
done:
  description: With O(mode=converge) - what was done here.
  returned: mode=converge
  type: list
  elements: str
'''

import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.common.migration_state import (
    clear_state,
    held_dir_for,
    read_held,
    read_state,
)
from ansible_collections.edgemig.migration.plugins.module_utils.common.options import DEFAULT_DUMP_DIR
from ansible_collections.edgemig.migration.plugins.module_utils.docker.module_common import DOCKER_ARGS, docker_api
from ansible_collections.edgemig.migration.plugins.module_utils.docker.tmpfs_restore import restore_parent
from ansible_collections.edgemig.migration.plugins.module_utils.driver.recovery import (
    bring_up,
    decide,
    local_facts,
    receiver_running,
    stand_down,
)
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.ticket import warm_dir

# A receiver still at work here (waiting for COMMIT, restoring) decides by itself within its own
# bounds (commit timeout, restore + health): wait for it rather than race its restore.
RECEIVER_WAIT_S = 400.0


def inside(parent: str, path: str | None) -> bool:
    """Whether ``path`` lies strictly below ``parent`` (real paths): only such a dir is ever removed here."""
    if not path:
        return False
    parent = os.path.realpath(parent)
    return os.path.realpath(path).startswith(parent + os.sep)


def converge(module, api) -> list[str]:
    p = module.params
    name, action = p["name"], p["action"]
    held_dir = p["held_dir"] or held_dir_for(p["dump_dir"])
    record = read_state(p["dump_dir"], name) or {}
    done: list[str] = []
    deadline = time.monotonic() + RECEIVER_WAIT_S
    while receiver_running(name) and time.monotonic() < deadline:
        time.sleep(0.5)
    # Read before bring_up / stand_down drop it: its dump is to go too.
    held = read_held(held_dir, name) or {}
    if action == "serve":
        facts = local_facts(api, name, p["dump_dir"], held_dir=held_dir)
        # A source brings back the dump its record names (after a reboot none: started cold);
        # a target what the stream wrote (kept on its dump tmpfs while in doubt). The held
        # restart policy comes back here.
        how = bring_up(api, name, facts["checkpoint"], address=p["address"], interface=p["interface"],
                       health=p["health"], restart_policy=record.get("restart_policy"), held_dir=held_dir)
        done.append({"not_needed": "already running", "checkpoint": "restored from its checkpoint",
                     "fresh_start": "started without a checkpoint"}[how])
        if facts["held"]:
            done.append("restart policy given back")
        if p["address"]:
            done.append("address here")
    elif action in ("stand_down", "stop"):
        done += stand_down(api, name, address=p["address"], interface=p["interface"],
                           remove=action == "stand_down", held_dir=held_dir)
    if action in ("serve", "stand_down"):
        # Decided: no memory image is needed here any more - the record's checkpoint, and whatever
        # a stream that never reached verified (no record) left in this edge's restore and warm dirs.
        # Only dirs inside this edge's dump dir, whatever a record says.
        for path in (record.get("work_dir"), held.get("work_dir"), restore_parent(p["dump_dir"], name),
                     warm_dir(p["dump_dir"], name)):
            if inside(p["dump_dir"], path):
                shutil.rmtree(path, ignore_errors=True)
        if clear_state(p["dump_dir"], name):
            done.append("record cleared")
    return done


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            mode=dict(type="str", choices=["inspect", "decide", "converge"], required=True),
            dump_dir=dict(type="path", default=DEFAULT_DUMP_DIR),
            held_dir=dict(type="path"),
            address=dict(type="str"),
            interface=dict(type="str"),
            health=dict(type="dict"),
            edges=dict(type="dict"),
            action=dict(type="str", choices=["serve", "stand_down", "stop", "wait", "none"]),
            **DOCKER_ARGS,
        ),
        required_if=[("mode", "decide", ["edges"]), ("mode", "converge", ["action"])],
        supports_check_mode=False,
    )
    p = module.params
    if p["mode"] == "decide":
        module.exit_json(changed=False, decision=decide(p["edges"]))
    if p["mode"] == "converge" and p["action"] in ("wait", "none"):
        module.exit_json(changed=False, done=[])
    api = docker_api(module)
    facts = done = None
    try:
        if p["mode"] == "inspect":
            facts = local_facts(api, p["name"], p["dump_dir"], p["address"], p["interface"], held_dir=p["held_dir"])
        else:
            done = converge(module, api)
    except Exception as exc:  # one message naming the step, whatever failed underneath
        module.fail_json(msg=f"{p['mode']} of {p['name']!r}: {type(exc).__name__}: {exc}")
    if facts is not None:
        module.exit_json(changed=False, facts=facts)
    module.exit_json(changed=any(d not in ("already running", "address here") for d in done), done=done)


if __name__ == "__main__":
    main()
