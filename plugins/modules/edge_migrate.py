#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: edge_migrate
short_description: The downtime-critical part of a migration in one run - freeze, stream, restore, switch over
version_added: 0.1.0
description:
  - Runs on the source edge host. Checkpoints the container into O(dump_dir), takes the service address off
    this host, streams checkpoint, writable layer and volumes to the prepared target container (as
    M(edgemig.migration.checkpoint_transfer) does), and has the receiver on the target restore the container and take
    over the address the moment the last byte is verified. No Ansible round trip sits on the downtime path.
  - The end of the stream is a commit point (see docs/design.md). Before it, anything that fails (of any kind)
    restores the container here from its checkpoint (or starts it fresh when that fails too) and the address comes
    back. At it, this host records C(phase=committed) in C(<dump_dir>/.edgemig-state/<name>.json) and only then
    tells the receiver to restore. After it the target wins; this module rolls back only when the target answered
    that it failed and fenced itself. If the target's answer is lost, the module fails with RV(outcome=unknown),
    keeps the service down here with its checkpoint, and C(playbooks/recover.yml) (migrate.yml's rescue) converges.
  - Once the target serves, the stopped container here is removed (RV(source_removed)).
  - The target container must have been created with M(edgemig.migration.docker_checkpoint_restore)
    O(edgemig.migration.docker_checkpoint_restore#module:stage=prepare), which writes the one-time ticket
    O(target.ticket) names.
  - Before anything is frozen or the target is contacted, O(policy), O(address) (IPv4 only) and O(interface) (must
    exist on this host) are checked, and the receiver on the target checks its ticket (unused, unexpired, paths
    it may write) and the ticket's service interface when it starts; a refusal fails with
    RV(rolled_back=not_needed) and names the cause.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.action
  - edgemig.migration.docker
  - edgemig.migration.target
options:
  name:
    description: Container (service) to migrate.
    type: str
    required: true
  dump_dir:
    description: tmpfs directory for the checkpoint on this host.
    type: path
    default: /var/lib/edgemig/dumps
  checkpoint:
    description: Checkpoint name.
    type: str
    default: edgemig
  address:
    description: The service's stable address, moved from this host to the target.
    type: str
  interface:
    description: Interface of this host holding O(address).
    type: str
  health:
    description: Health check the target must pass before it takes the address (catalog C(health)).
    type: dict
  policy:
    description: Compression policy, see M(edgemig.migration.checkpoint_transfer).
    type: str
    default: model
  dedup:
    description: Page-level dedup.
    type: bool
    default: true
  pipelined:
    description: Overlap the transfer stages.
    type: bool
    default: true
  stall_timeout:
    description:
      - Seconds without any acknowledgement from the receiver while data is in flight after which the transfer
        is aborted (and the service rolled back here). A dropped link otherwise hangs in TCP for many minutes.
      - The receiver gives up after twice this time without data. V(0) disables both.
    type: int
    default: 30
  precopy:
    description:
      - Warm pre-copy before the freeze (docs/design.md, "Pre-copy"). While the service runs, rounds copy the
        writable layer and volumes (whole files first, then changed files, large files by changed 16 KiB block)
        and the memory of its processes (read through C(/proc/<pid>/mem), no pause) to the target; at the freeze
        the final round sends only what differs from what the target holds, memory pages that did not change
        as references. No kernel dirty tracking is needed.
      - V(false) is stop-and-copy, the paper's method (everything crosses the link while the service is frozen),
        kept for comparison (docs/benchmarks.md, "Pre-copy vs stop-and-copy").
    type: bool
    default: true
  downtime_target:
    description:
      - With O(precopy), warm rounds go on until the final round's transfer is predicted (changed bytes since the
        last round / the rate the rounds achieved) to take at most this many seconds, like QEMU's downtime-limit.
    type: float
    default: 1.0
  precopy_max_rounds:
    description:
      - With O(precopy), at most this many warm rounds; a service that changes its state about as fast as the link
        carries it stops earlier (a round that does not halve the rest) and migrates with what differs.
    type: int
    default: 5
  link_share:
    description:
      - The part of the link this migration may assume when it starts, in (0, 1]. The adaptive controller starts from
        the link probe's rate times this share (a probe taken while concurrent migrations pause between rounds sees
        the whole link); from then on it follows the goodput this migration measures. playbooks/evacuate.yml sets it
        to 1 / the moves running on the source link when the move starts.
    type: float
    default: 1.0
  progress_file:
    description:
      - While it runs, keep a small JSON file here saying where the migration is (phase, bytes sent of the total,
        rate, expected end), rewritten about once a second, removed at the end.
      - This module's action plugin sets it and prints the file every few seconds, so that a long migration shows
        progress in the playbook's output; set it yourself only to follow a run from elsewhere.
    type: path
  park:
    description:
      - A move parked ahead (docs/mobility.md, "Warm ahead and the decision path"). After the target is connected
        and the warm rounds ran, wait with the service running until a file C(go) or C(nogo) appears in
        O(park.dir) on this host, then freeze (C(go)) or give up (C(nogo), or O(park.timeout) reached) with
        nothing frozen and nothing changed (RV(parked)). Never frozen while parked; a failure while parked (the
        receiver gone, a refresh round failing) fails with RV(rolled_back=not_needed).
      - O(gate) sets this (O(park.dir) is then the action plugin's private job directory); set it yourself only
        to release the freeze by other means.
      - With O(precopy=false) the migration parks before it connects (a stop-and-copy session cannot be held
        open) and connects at the go.
    type: dict
    suboptions:
      dir:
        description:
          - The gate, on this host. A directory of the module's user that nobody else may write (whoever can
            create a file there releases the freeze), holding neither C(go) nor C(nogo) when the module starts.
        type: path
        required: true
      timeout:
        description: Seconds to wait for C(go) or C(nogo); then the migration gives up, nothing frozen.
        type: float
        default: 900.0
      refresh_s:
        description:
          - With O(precopy), one more warm round after this many seconds parked (and at least 9 x the last
            round's length, so that rounds take at most a tenth of the source's time), so that the final round
            carries only what changed since; V(0) runs none.
        type: float
        default: 10.0
      lease_s:
        description:
          - Give up, nothing frozen, when this many seconds pass without the file C(lease) in O(park.dir) being
            touched (counted from the park's start); V(0), no lease. With O(gate) the action plugin sets 45 and
            touches it every 10 s while it asks the gate, so that a controller that died (killed, its host down)
            leaves nothing parked for long, whatever O(gate_timeout) is.
        type: float
        default: 0.0
  gate:
    description:
      - Handled by the action plugin, on the controller (the module refuses it). A URL (C(http) or C(https),
        no redirects, no proxy) the controller asks with one GET once the module, started with O(park) on its
        job directory, is parked. A JSON object whose C(go) is V(true) releases the freeze; anything else (C(go)
        V(false) or not a boolean, not JSON, an HTTP error, no answer within O(gate_timeout)) gives up, nothing
        frozen. The follow rulebook's C(follow_gate) (playbooks/migrate.yml).
      - Needs pipelining on the source's connection; without it the gate is asked before the module starts
        (no parking ahead; the warm reaction then includes the module's start, connection and warm rounds).
    type: str
  gate_timeout:
    description:
      - Handled by the action plugin. Seconds the controller waits for the gate's answer; the module's own
        O(park.timeout) is this plus 30 s (unless O(park.timeout) is given); the park's lease
        (O(park.lease_s)) ends it sooner if the controller dies.
    type: float
    default: 900.0
requirements:
  - paramiko, lz4, zstandard (both ends)
  - numpy (the source, for the default pre-copy path O(precopy=true), which indexes CRIU's pages and hashes the warm
    rounds' memory with it; both ends for the C(wkdm) codec)
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: Move apache to edge2
  edgemig.migration.edge_migrate:
    name: apache
    address: 10.213.0.101
    interface: eth0
    target:
      host: 10.213.0.12
      docker_host: unix:///run/edgemig-lab/edge2/docker.sock
      checkpoint_dir: "{{ prepared.checkpoint_dir }}"
      upper_dir: "{{ prepared.upper_dir }}"
      volumes: "{{ prepared.volumes }}"
      interface: eth0
'''

RETURN = r'''
options:
  description: The options this migration ran with, defaults included (C(policy), C(pipelined), C(dedup),
    C(stall_timeout), C(precopy), C(downtime_target), C(precopy_max_rounds), C(link_share)).
  returned: always
  type: dict
durations:
  description: >-
    Seconds - C(checkpoint_s) (freeze+dump), C(transfer_s), C(restore_s), C(health_s), C(switch_s) (address),
    and C(downtime_s), from the freeze to the address answering on the target, measured on this host.
    Where the target's containerd keeps CRIU's restore stats, C(criu_restore_s) is CRIU's own run within
    C(restore_s) (its restore.log) and C(criu_restore_stage_s) its restore stage (stats-restore); the rest
    of C(restore_s) is Docker and containerd handling the images. Likewise C(criu_frozen_s) is CRIU's own
    freeze within C(checkpoint_s), when the dump went through containerd (RV(checkpoint_via)).
  returned: always
  type: dict
checkpoint_via:
  description: >-
    How the source was dumped - C(containerd) (CRIU wrote straight into the dump tmpfs) or C(docker)
    (Docker's checkpoint call, when the container's containerd could not be reached with C(ctr)).
  returned: success
  type: str
sizes:
  description: Bytes by kind (pages, other, layer, volumes, total).
  returned: success
  type: dict
stats:
  description: Transfer statistics (see M(edgemig.migration.checkpoint_transfer)).
  returned: success
  type: dict
timeline:
  description: Per-interval codec, level, RTT, loss and throughput.
  returned: success
  type: list
  elements: dict
clients_reset:
  description: >-
    Clients whose connection to the service was open at the freeze (it does not survive CRIU's tcp-close)
    and were sent a challenge ACK from the service address, so that they get a reset from the target at once
    instead of waiting for their own timeout.
  returned: success
  type: int
source_removed:
  description: >-
    Whether the stopped source container was removed once the target served (its held restart policy with it):
    true, false when it was not the copy this migration stopped, or why its removal failed (the migration still
    succeeded; the next migration of the service removes stopped leftovers).
  returned: success
  type: raw
rolled_back:
  description: >-
    On failure, how the service was kept up here - C(checkpoint), C(fresh_start), C(not_needed), C(failed), or
    C(no) when the migration had passed the commit point and the target's outcome is unknown.
  returned: failure
  type: str
phase:
  description: >-
    On failure, the phase the migration was in - C(prepare), C(freeze), C(stream), C(verified), C(committed).
  returned: failure
  type: str
precopy:
  description: >-
    With O(precopy), the warm rounds (bytes, seconds, rate, pause, predicted final bytes and seconds), why they
    stopped (C(converged), not converging, max rounds), and what the final round at the freeze carried
    (bytes, pages sent as references, transfer seconds); C({enabled: false}) otherwise.
  returned: success
  type: dict
preflight:
  description: >-
    The check of the container's processes before the freeze (docs/design.md, "What CRIU cannot move"):
    C(checked), C(processes), C(runc_conf) and C(runc_options) (what runc passes CRIU), C(ghost_limit), C(refused),
    C(notes), and C(findings), each with C(pid), C(comm), C(fd), C(kind), C(verdict) (C(refuse) or
    C(with_option)), C(what), C(why), C(action), C(option), C(handled), C(done) (what the migration did about it)
    and C(message).
  returned: always
  type: dict
outcome:
  description: C(unknown) when the commit was sent and the target's answer never came (run the recovery).
  returned: when the outcome is unknown
  type: str
parked:
  description: >-
    With O(park) or O(gate), how the park ended - C(released) (true - a go, the migration went on; false -
    nothing was frozen and nothing changed, C(changed=false), not failed), C(why) (when not released - C(no-go at
    the gate), C(park timeout (N s)), or the failure while parked), C(waited_s), C(refresh_rounds) (warm rounds
    run while parked, listed in C(precopy.refresh)), when released C(go_seen_at) and C(freeze_at) (wall-clock
    seconds: when the go was seen and when the freeze began), and, through O(gate), C(gate) (what the gate
    answered).
  returned: when O(park) or O(gate) is set
  type: dict
'''

import signal
from dataclasses import asdict

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.edgemig.migration.plugins.module_utils.common.options import (
    DEFAULT_DUMP_DIR,
    argument_spec,
    from_params,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.module_common import DOCKER_ARGS, docker_api
from ansible_collections.edgemig.migration.plugins.module_utils.driver.migration_driver import (
    MigrationDriver,
    MigrationFailed,
    check_options,
    read_faults,
)
from ansible_collections.edgemig.migration.plugins.module_utils.driver.park import GATE_TIMEOUT_S, PARK_OPTIONS
from ansible_collections.edgemig.migration.plugins.module_utils.driver.progress import ProgressFile
from ansible_collections.edgemig.migration.plugins.module_utils.sender.ssh_stream import (
    HAS_PARAMIKO,
    PARAMIKO_IMPORT_ERROR,
    TARGET_OPTIONS,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            dump_dir=dict(type="path", default=DEFAULT_DUMP_DIR),
            checkpoint=dict(type="str", default="edgemig"),
            target=dict(type="dict", required=True, options=TARGET_OPTIONS),  # doc fragment edgemig.migration.target
            address=dict(type="str"),
            interface=dict(type="str"),
            health=dict(type="dict"),
            progress_file=dict(type="path"),
            park=dict(type="dict", options=PARK_OPTIONS),
            # The action plugin's (it pops them); here only to be refused, never silently skipped.
            gate=dict(type="str"),
            gate_timeout=dict(type="float", default=GATE_TIMEOUT_S),
            **argument_spec(),  # policy, dedup, pipelined, stall_timeout, precopy, ...: options.MigrationOptions
            **DOCKER_ARGS,
        ),
        required_together=[("address", "interface")],
        supports_check_mode=False,
    )
    if not HAS_PARAMIKO:
        module.fail_json(msg=missing_required_lib("paramiko"), exception=str(PARAMIKO_IMPORT_ERROR))
    # If the controller dies (Ctrl-C, lost SSH), sshd hangs up on us: finish
    # the migration or the rollback anyway instead of dying with the service
    # frozen. A re-run of migrate.yml then resolves what is left.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    p = module.params
    if p["gate"]:
        # A gate skipped would move the service without its go.
        module.fail_json(msg="gate is asked by edge_migrate's action plugin on the controller, which did not run; "
                             "nothing was frozen", rolled_back="not_needed", durations={})
    # Refused before Docker, SSH or the freeze are touched.
    problem = check_options(p)
    if problem:
        module.fail_json(msg=problem, rolled_back="not_needed", durations={})
    try:
        faults = read_faults()
    except ValueError as exc:
        module.fail_json(msg=f"{exc}; nothing was frozen", rolled_back="not_needed", durations={})
    driver = MigrationDriver(docker_api(module), p, faults, progress=ProgressFile(p["progress_file"]))
    ran = asdict(from_params(p))  # the options that ran, defaults included: the report shows these
    try:
        result = driver.run()
    except MigrationFailed as exc:
        module.fail_json(msg=str(exc), options=ran, **exc.result)
    module.exit_json(options=ran, **result)


if __name__ == "__main__":
    main()
