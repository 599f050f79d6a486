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
  - If anything fails after the freeze, the container is restored here from its checkpoint (or started fresh when
    that fails too) and the address comes back, so the service is never left down. The dump is always removed.
  - The target container must have been created with M(edgemig.migration.docker_checkpoint_restore)
    O(edgemig.migration.docker_checkpoint_restore#module:stage=prepare).
  - Before anything is frozen or the target is contacted, O(policy), O(address) (IPv4 only) and O(interface) (must
    exist on this host) are checked, and the receiver on the target checks C(target.interface) when it starts; a
    refusal fails with RV(rolled_back=not_needed) and names the option to change.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.action
  - edgemig.migration.docker
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
  target:
    description: >-
      The target - C(host), C(port) (22), C(user) (root), C(key_file), C(known_hosts), C(receiver_dir) (where the
      pinned receiver is installed, /usr/local/lib/edgemig/receiver),
      C(docker_host), C(checkpoint_dir), C(upper_dir), C(volumes) (from the prepare stage) and C(interface)
      (where the service address goes).
    type: dict
    required: true
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
        writable layer and volumes (whole files first, then changed files, large files by changed 64 KiB block)
        and the memory of its processes (read through C(/proc/<pid>/mem), no pause) to the target; at the freeze
        the final round sends only what differs from what the target holds, memory pages that did not change
        as references. No kernel dirty tracking is needed.
      - V(false) is stop-and-copy, the paper's method (everything crosses the link while the service is frozen).
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
  progress_file:
    description:
      - While it runs, keep a small JSON file here saying where the migration is (phase, bytes sent of the total,
        rate, expected end), rewritten about once a second, removed at the end.
      - This module's action plugin sets it and prints the file every few seconds, so that a long migration shows
        progress in the playbook's output; set it yourself only to follow a run from elsewhere.
    type: path
requirements:
  - paramiko, lz4, zstandard (both ends)
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
durations:
  description: >-
    Seconds - C(checkpoint_s) (freeze+dump), C(transfer_s), C(restore_s), C(health_s), C(switch_s) (address),
    and C(downtime_s), from the freeze to the address answering on the target, measured on this host.
  returned: always
  type: dict
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
rolled_back:
  description: On failure, how the service was kept up here - C(checkpoint), C(fresh_start) or C(not_needed).
  returned: failure
  type: str
'''

import json
import os
import shutil
import signal
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.edgemig.migration.plugins.module_utils.checkpoint import (
    CheckpointError,
    create,
    stage_checkpoint,
)
from ansible_collections.edgemig.migration.plugins.module_utils.container_spec import pair_volumes, upper_dir, volumes
from ansible_collections.edgemig.migration.plugins.module_utils.controller import parse_policy
from ansible_collections.edgemig.migration.plugins.module_utils.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.module_common import (
    DOCKER_ARGS,
    docker_api,
    interface_exists,
    ipv4_problem,
)
from ansible_collections.edgemig.migration.plugins.module_utils.precopy import warm_up
from ansible_collections.edgemig.migration.plugins.module_utils.process_memory import container_processes
from ansible_collections.edgemig.migration.plugins.module_utils.progress import ProgressFile, stream_progress
from ansible_collections.edgemig.migration.plugins.module_utils.switchover import SwitchoverError, set_address
from ansible_collections.edgemig.migration.plugins.module_utils.tcp_reset import established_peers, poke_clients
from ansible_collections.edgemig.migration.plugins.module_utils.transfer import (
    DEFAULT_KEY_FILE,
    DEFAULT_KNOWN_HOSTS,
    HAS_PARAMIKO,
    PARAMIKO_IMPORT_ERROR,
    RECEIVER_DIR,
    SshStream,
    TransferError,
)


def roll_back(api, p: dict, ck: dict) -> str:
    """Bring the service back here: from its checkpoint, else fresh."""
    how = "checkpoint"
    try:
        inspect = api.inspect_container(p["name"])
        if inspect and inspect["State"].get("Running"):
            how = "not_needed"
        else:
            try:
                stage_checkpoint(api, ck["container_id"], p["checkpoint"], ck["checkpoint_dir"])
                api.start_container(p["name"], checkpoint=p["checkpoint"], timeout=300)
            except (DockerAPIError, OSError):
                how = "fresh_start"
                api.start_container(p["name"])
    finally:
        if p["address"] and p["interface"]:
            set_address(p["interface"], p["address"], True)
    return how


def client_connections(inspect: dict) -> list[tuple[int, list[tuple[str, int]]]]:
    """(published host port, [(client ip, client port)]) of the connections
    established to the container's published TCP ports, read from the
    container's network namespace just before the freeze."""
    pid = (inspect.get("State") or {}).get("Pid")
    bindings = (inspect.get("HostConfig") or {}).get("PortBindings") or {}
    if not pid:
        return []
    try:
        with open(f"/proc/{pid}/net/tcp") as fh:
            table = fh.read()
    except OSError:
        return []
    # Keyed by host port: one published port may be listed once per host
    # address (0.0.0.0 and ::), and each client must be counted once.
    by_port: dict[int, list[tuple[str, int]]] = {}
    for key, binds in bindings.items():
        cport, _unused, proto = key.partition("/")
        if proto != "tcp" or not binds:
            continue
        peers = established_peers(table, int(cport))
        for b in binds:
            if peers and b.get("HostPort"):
                by_port[int(b["HostPort"])] = peers
    return list(by_port.items())


FAULTS_ENV = "EDGEMIG_FAULTS"
# Where the dump tmpfs is unless the inventory says (edgemig_dump_dir).
DEFAULT_DUMP_DIR = "/var/lib/edgemig/dumps"


def read_faults() -> dict:
    """Fault injection for the fault suite only (docs/reliability.md), never a module option.

    ``EDGEMIG_FAULTS='{"corrupt_every": 3}'`` (the receiver flips a byte in every
    3rd chunk) or ``'{"restore": true}'`` (the target restores a checkpoint that
    does not exist), set in the module's environment by migrate.yml from the
    ``edgemig_faults`` variable. Unknown keys or bad JSON raise ValueError.
    """
    raw = os.environ.get(FAULTS_ENV, "").strip()
    if not raw:
        return {"corrupt_every": 0, "restore": False}
    faults = json.loads(raw)
    if not isinstance(faults, dict) or set(faults) - {"corrupt_every", "restore"}:
        raise ValueError(f"{FAULTS_ENV} must be a JSON object with corrupt_every and/or restore, got {raw!r}")
    return {"corrupt_every": int(faults.get("corrupt_every") or 0), "restore": bool(faults.get("restore"))}


def preflight(p: dict) -> str | None:
    """What is wrong with the options (a message for fail_json), checked before any freeze or connection."""
    try:
        parse_policy(p["policy"])
    except ValueError as exc:
        return (f"policy={p['policy']!r}: {exc} (edgemig_policy in migrate.yml); nothing was frozen")
    if p["address"]:
        why = ipv4_problem(p["address"])
        if why:
            return f"address={p['address']!r} {why}; nothing was frozen"
        if not interface_exists(p["interface"]):
            return (f"interface={p['interface']!r}: no such interface on this host (the source's "
                    "edgemig_address_interface): set it to the interface holding the service address; "
                    "nothing was frozen")
    return None


def warm_phase(module, p: dict, conn, inspect: dict, progress: ProgressFile) -> dict:
    """Warm pre-copy rounds while the service runs; a failure here freezes nothing."""
    live = [("layer", upper_dir(inspect))] + [(f"volume/{v['name']}", v["path"]) for v in volumes(inspect)]
    note = None
    try:
        pids = container_processes(int(inspect["State"]["Pid"]))
    except (OSError, ValueError, KeyError) as exc:
        # Files are still pre-copied; memory then crosses at the freeze.
        pids, note = None, f"memory not pre-copied: the container's processes could not be listed ({exc})"

    def on_round(k: int, entry: dict) -> None:
        progress.write({"phase": f"warm round {k} done (service running)", "sent_bytes": entry["bytes_raw"],
                        "eta_s": entry["predicted_final_s"]})

    progress.write({"phase": "warm round 1 (service running)"})
    try:
        report = warm_up(conn, live, pids, downtime_target=p["downtime_target"],
                         max_rounds=max(1, p["precopy_max_rounds"]), policy=p["policy"], on_round=on_round)
    except Exception as exc:  # pylint: disable=broad-exception-caught  # nothing is frozen: any failure just ends here
        conn.close()
        progress.remove()
        module.fail_json(msg=f"warm pre-copy failed: {exc}; nothing was frozen, the service kept running",
                         rolled_back="not_needed", durations={})
    report["memory_processes"] = len(pids or {})
    if note:
        report["note"] = note
    return report


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            dump_dir=dict(type="path", default=DEFAULT_DUMP_DIR),
            checkpoint=dict(type="str", default="edgemig"),
            target=dict(type="dict", required=True),
            address=dict(type="str"),
            interface=dict(type="str"),
            health=dict(type="dict"),
            policy=dict(type="str", default="model"),
            dedup=dict(type="bool", default=True),
            pipelined=dict(type="bool", default=True),
            stall_timeout=dict(type="int", default=30),
            precopy=dict(type="bool", default=True),
            downtime_target=dict(type="float", default=1.0),
            precopy_max_rounds=dict(type="int", default=5),
            progress_file=dict(type="path"),
            **DOCKER_ARGS,
        ),
        required_together=[("address", "interface")],
        supports_check_mode=False,
    )
    if not HAS_PARAMIKO:
        module.fail_json(msg=missing_required_lib("paramiko"), exception=str(PARAMIKO_IMPORT_ERROR))
    # If the controller dies (Ctrl-C, lost SSH), sshd hangs up on us: finish
    # the migration or the rollback anyway instead of dying with the service
    # frozen. A re-run of migrate.yml then finds exactly one running copy.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    p = module.params
    tgt = p["target"]
    missing = [k for k in ("host", "checkpoint_dir", "upper_dir") if not tgt.get(k)]
    if missing:
        module.fail_json(msg=f"target is missing {', '.join(missing)} (prepare the target container first)",
                         rolled_back="not_needed", durations={})
    problem = preflight(p)
    if problem:
        module.fail_json(msg=problem, rolled_back="not_needed", durations={})
    try:
        faults = read_faults()
    except ValueError as exc:
        module.fail_json(msg=f"{exc}; nothing was frozen", rolled_back="not_needed", durations={})
    api = docker_api(module)
    progress = ProgressFile(p["progress_file"])
    progress.write({"phase": "connecting to the target"})
    # Everything the receiver needs is known before the freeze: connect, do
    # the SSH handshake and start the receiver now, off the downtime path.
    # A failure here (unreachable target, unknown host key) freezes nothing.
    try:
        inspect = api.inspect_container(p["name"])
    except DockerAPIError as exc:
        module.fail_json(msg=f"checkpoint: {exc}", rolled_back="not_needed", durations={})
    if inspect is None or not inspect["State"].get("Running"):
        module.fail_json(msg=f"checkpoint: container {p['name']!r} is not running here",
                         rolled_back="not_needed", durations={})
    dest = {"checkpoint": tgt["checkpoint_dir"], "layer": tgt["upper_dir"]}
    clear = ["layer"]
    create_roots = []
    if p["precopy"]:
        # The target keeps warm memory pages in its dump tmpfs (never on disk).
        dest["warm"] = os.path.join(tgt.get("dump_dir") or DEFAULT_DUMP_DIR, f"{p['name']}.warm")
        clear.append("warm")
        create_roots.append("warm")
    # A volume another running container writes cannot be carried consistently,
    # and that container could swap files under the sender: refuse before the freeze.
    try:
        shared = {v["name"]: [c for c in api.containers_using_volume(v["name"]) if c != p["name"]]
                  for v in volumes(inspect)}
    except DockerAPIError as exc:
        module.fail_json(msg=f"listing the users of the volumes: {exc}", rolled_back="not_needed", durations={})
    shared = {name: users for name, users in shared.items() if users}
    if shared:
        module.fail_json(msg="volume(s) shared with other running containers cannot migrate with the service: "
                             + "; ".join(f"{n} (also mounted by {', '.join(u)})" for n, u in sorted(shared.items()))
                             + ". Stop those containers or give the service a volume of its own; nothing was frozen",
                         rolled_back="not_needed", durations={})
    try:
        pairs = pair_volumes(volumes(inspect), tgt.get("volumes"))
    except ValueError as exc:
        module.fail_json(msg=f"{exc}: prepare the target container from the source's config",
                         rolled_back="not_needed", durations={})
    for name, _src, target_path in pairs:
        dest[f"volume/{name}"] = target_path
        clear.append(f"volume/{name}")
    then_restore = {"docker_host": tgt.get("docker_host"), "name": p["name"],
                    "checkpoint": "edgemig-fault-missing" if faults["restore"] else p["checkpoint"],
                    "health": p["health"], "address": p["address"], "interface": tgt.get("interface")}
    try:
        conn = SshStream(dest, host=tgt["host"], port=int(tgt.get("port", 22)), user=tgt.get("user", "root"),
                         key_file=tgt.get("key_file", DEFAULT_KEY_FILE),
                         known_hosts=tgt.get("known_hosts", DEFAULT_KNOWN_HOSTS),
                         receiver_dir=tgt.get("receiver_dir") or RECEIVER_DIR, clear=clear, create=create_roots,
                         fault_corrupt_every=faults["corrupt_every"], then_restore=then_restore,
                         stall_timeout=p["stall_timeout"]).open()
    except TransferError as exc:
        module.fail_json(msg=f"connecting to the target: {exc}", rolled_back="not_needed", durations={})
    # Connections open now die with the freeze (CRIU tcp-close); remember
    # their clients so they can be told at once after the switch-over.
    clients = client_connections(inspect) if p["address"] else []
    warm = None
    if p["precopy"]:
        warm = warm_phase(module, p, conn, inspect, progress)
    t0 = time.monotonic()
    progress.write({"phase": "checkpoint (service frozen)"})
    try:
        ck = create(api, p["name"], p["dump_dir"], p["checkpoint"])
    except (CheckpointError, DockerAPIError, OSError) as exc:
        conn.close()
        module.fail_json(msg=f"checkpoint: {exc}", rolled_back="not_needed", durations={})
    durations = dict(ck["durations"])
    durations["connect_s"] = round(conn.connect_s, 4)
    try:
        if p["address"]:
            set_address(p["interface"], p["address"], False)
        roots = [("checkpoint", ck["checkpoint_dir"]), ("layer", ck["upper_dir"])]
        roots += [(f"volume/{v['name']}", v["path"]) for v in ck["volumes"]]
        t1 = time.monotonic()
        total = ck["sizes"]["total"]

        def where() -> dict:
            fields = stream_progress("streaming", total, conn.sender.timeline if conn.sender else [])
            if fields.get("acked_bytes", 0) >= total > 0:
                fields["phase"] = "restoring on the target"
            return fields

        progress.follow(where)
        result = conn.stream(roots, policy=p["policy"], dedup=p["dedup"], pipelined=p["pipelined"],
                             warm=conn.warm if warm is not None else None)
        durations["downtime_s"] = round(time.monotonic() - t0, 4)
        switch = (result.get("receiver") or {}).get("switchover") or {}
        durations["transfer_s"] = round(time.monotonic() - t1 - sum(switch.values()), 4)
        durations.update(switch)
    except (TransferError, SwitchoverError, DockerAPIError, OSError, ValueError) as exc:
        progress.write({"phase": f"rolling back on the source: {exc}"})
        conn.close()
        try:
            how = roll_back(api, p, ck)
        except Exception as rb_exc:  # report both; the playbook's rescue tries again
            module.fail_json(msg=f"migration failed: {exc}; rollback on the source failed too: {rb_exc}",
                             rolled_back="failed", work_dir=ck["work_dir"], checkpoint_dir=ck["checkpoint_dir"],
                             durations=durations)
        shutil.rmtree(ck["work_dir"], ignore_errors=True)
        progress.remove()
        module.fail_json(msg=f"migration failed: {exc}; the service was "
                             f"{'restored from its checkpoint' if how == 'checkpoint' else 'started again'} on the source",
                         rolled_back=how, durations=durations)
    # The service answers on the target now: make clients whose connection
    # died with the freeze notice it now instead of at their read timeout.
    poked = 0
    for port, peers in clients:
        try:
            poked += poke_clients(p["address"], port, peers)
        except OSError:
            pass
    conn.close()
    progress.remove()
    shutil.rmtree(ck["work_dir"], ignore_errors=True)
    timeline = result.pop("timeline", [])
    if warm is not None:
        # What the freeze still carried, next to what the warm rounds predicted it would.
        warm["final"] = {k: result.get(k, 0) for k in ("bytes_raw", "bytes_wire", "files_sent", "files_patched",
                                                       "files_deleted", "pages_referenced", "pages_literal")}
        warm["final"]["transfer_s"] = durations.get("transfer_s")
    module.exit_json(changed=True, durations=durations, sizes=ck["sizes"], stats=result, timeline=timeline,
                     clients_reset=poked, precopy=warm or {"enabled": False})


if __name__ == "__main__":
    main()
