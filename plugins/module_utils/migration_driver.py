# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The migration, source side: one driver with explicit phases, one rollback, one recovery decision.

    prepare -> freeze -> stream -> verified -> committed -> switched -> cleaned

* prepare: options checked, SSH connected and the receiver started; nothing
  frozen. A failure here needs no rollback.
* freeze: clients noted, checkpoint into the dump tmpfs; the source record
  says ``frozen`` (with where the checkpoint is).
* stream: address off the source, checkpoint + layer + volumes to the target.
* verified: the receiver wrote and checked every byte and waits for COMMIT.
* committed: THE COMMIT POINT. The source record says ``committed`` (durable)
  before COMMIT is sent. Before it the source wins: any failure, of any type,
  rolls back here (``roll_back``). After it the target wins: the driver never
  rolls back on its own; only a target that answered ``fenced`` (it took
  itself down) lets it. Silence after COMMIT is "committed, outcome unknown":
  the source stays down, keeps its checkpoint and its record, and
  ``decide`` (migration_recover) resolves it.
* switched: the target answered ok (restored, healthy, address taken);
  clients told (tcp_reset). cleaned: dump and record removed.

``decide`` is the recovery's decision table, on the facts each edge reports
(``local_facts``); ``bring_up`` and ``stand_down`` are its two actions, and
``bring_up`` is also the driver's rollback: one way to put a service back.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable

from ansible_collections.edgemig.migration.plugins.module_utils.checkpoint import (
    CheckpointError,
    RestartPolicyError,
    create,
    held_dir_of,
    held_policy,
    resume_restarts,
)
from ansible_collections.edgemig.migration.plugins.module_utils.container_spec import pair_volumes, upper_dir, volumes
from ansible_collections.edgemig.migration.plugins.module_utils.controller import parse_policy
from ansible_collections.edgemig.migration.plugins.module_utils.criu_preflight import (
    preflight as criu_preflight,
    refusal,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.faults import read_faults
from ansible_collections.edgemig.migration.plugins.module_utils.health import wait_healthy
from ansible_collections.edgemig.migration.plugins.module_utils.migration_state import (
    clear_held,
    clear_state,
    held_dir_for,
    read_held,
    read_state,
    write_state,
)
from ansible_collections.edgemig.migration.plugins.module_utils.module_common import ipv4_problem
from ansible_collections.edgemig.migration.plugins.module_utils.options import DEFAULT_DUMP_DIR, MigrationOptions
from ansible_collections.edgemig.migration.plugins.module_utils.precopy import warm_up
from ansible_collections.edgemig.migration.plugins.module_utils.process_memory import container_processes
from ansible_collections.edgemig.migration.plugins.module_utils.progress import ProgressFile, stream_progress
from ansible_collections.edgemig.migration.plugins.module_utils.ssh_stream import (
    DEFAULT_KEY_FILE,
    DEFAULT_KNOWN_HOSTS,
    RECEIVER_DIR,
    OutcomeUnknown,
    SshStream,
    TransferError,
)
from ansible_collections.edgemig.migration.plugins.module_utils.switchover import (
    address_present,
    interface_exists,
    set_address,
)
from ansible_collections.edgemig.migration.plugins.module_utils.tcp_reset import established_peers, poke_clients
from ansible_collections.edgemig.migration.plugins.module_utils.timeouts import confirm_timeout_s, outcome_silence_s
from ansible_collections.edgemig.migration.plugins.module_utils.tmpfs_restore import holds_images, start_from_checkpoint

PHASES = ("prepare", "freeze", "stream", "verified", "committed", "switched", "cleaned")
RESTORE_TIMEOUT_S = 300.0  # docker start --checkpoint, as switchover.restore_and_switch asks


class MigrationFailed(Exception):
    """The migration did not complete; ``result`` holds the report fields (rolled_back, phase, ...)."""

    def __init__(self, msg: str, **result):
        super().__init__(msg)
        self.result = result


def preflight(p: dict) -> str | None:
    """What is wrong with the options (a message for fail_json), checked before any freeze or connection."""
    try:
        parse_policy(p["policy"])
    except ValueError as exc:
        return (f"policy={p['policy']!r}: {exc} (edgemig_policy in migrate.yml); nothing was frozen")
    if p.get("address"):
        why = ipv4_problem(p["address"])
        if why:
            return f"address={p['address']!r} {why}; nothing was frozen"
        if not interface_exists(p["interface"]):
            return (f"interface={p['interface']!r}: no such interface on this host (the source's "
                    "edgemig_address_interface): set it to the interface holding the service address; "
                    "nothing was frozen")
    return None


def check_options(p: dict) -> str | None:
    """Everything that can be refused before Docker, SSH or the freeze: target keys, then preflight."""
    missing = [k for k in ("host", "ticket") if not p["target"].get(k)]
    if missing:
        return f"target is missing {', '.join(missing)} (prepare the target container first)"
    return preflight(p)


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


# ---------------------------------------------------------------- the one way back up, and down
def bring_up(api, name: str, checkpoint_path: str | None = None, *, address: str | None = None,
             interface: str | None = None, health: dict | None = None,
             restart_policy: dict | None = None, held_dir: str | None = None) -> str:
    """Make ``name`` serve on this host; returns how: not_needed, checkpoint or fresh_start.

    The single rollback of a migration (the driver's, the playbook's rescue
    and the recovery's all come here). A running container is left alone;
    else it is started from the checkpoint images at ``checkpoint_path`` (on
    the dump tmpfs; deleted once it runs), else fresh. The address comes back
    whatever happened to the container (a source that took it off must not
    keep it off). With ``health`` the service must answer. ``restart_policy``:
    the policy the checkpoint held (checkpoint.hold_restarts), given back once
    the container runs; the held record in ``held_dir`` (default: beside the
    dump dir ``checkpoint_path`` lies in) names it too, and is dropped once it
    is back. Docker refusing it raises RestartPolicyError, after the health check.
    """
    how = "checkpoint"
    refused = None
    try:
        inspect = api.inspect_container(name)
        if inspect is None:
            raise DockerAPIError(404, f"container {name!r} does not exist here: nothing to bring up")
        if inspect["State"].get("Running"):
            how = "not_needed"
        else:
            try:
                if not holds_images(checkpoint_path):
                    raise DockerAPIError(0, "no checkpoint to restore from")
                start_from_checkpoint(api, name, checkpoint_path, timeout=RESTORE_TIMEOUT_S)
            except (DockerAPIError, OSError):
                how = "fresh_start"
                api.start_container(name, allow_running=True)
        try:
            give_back_held(api, name, inspect["Id"], restart_policy, held_dir or held_dir_of(checkpoint_path))
        except RestartPolicyError as exc:
            refused = exc  # the service runs: still check it and put the address back, then say so
        if health and how != "not_needed":  # a copy that kept running is not second-guessed
            ok, _secs, reason = wait_healthy(health, api, name)
            if not ok:
                also = f"; {refused}" if refused else ""
                raise DockerAPIError(0, f"{name!r} is up ({how}) but its health check failed: {reason}{also}")
        if refused:
            raise refused
    finally:
        if address and interface:
            set_address(interface, address, True)
    return how


def give_back_held(api, name: str, container: str, restart_policy: dict | None, held_dir: str | None) -> None:
    """Give ``container`` back its held restart policy: the held record's (durable, names this very
    container), else ``restart_policy``; the record goes once the policy is back."""
    named, held = held_policy(held_dir, name, container) if held_dir else (False, None)
    resume_restarts(api, name, held if held is not None else restart_policy)
    if named:
        clear_held(held_dir, name, container)


def stand_down(api, name: str, *, address: str | None = None, interface: str | None = None,
               remove: bool = True, held_dir: str | None = None) -> list[str]:
    """Make sure ``name`` does not serve here: address dropped, container removed (or only stopped
    with ``remove=False``, kept for a later recovery, held record and all). Returns what was done.
    A removed container needs its restart policy no more: its held record (``held_dir``) goes."""
    done = []
    if address and interface and set_address(interface, address, False, garp_count=0):
        done.append("address dropped")
    inspect = api.inspect_container(name)
    if inspect is not None:
        if remove:
            api.remove_container(name, force=True)
            done.append("container removed")
            if clear_held(held_dir or held_dir_for(DEFAULT_DUMP_DIR), name, inspect["Id"]):
                done.append("held restart policy dropped")
        elif inspect["State"].get("Running"):
            api.stop_container(name)
            done.append("container stopped")
    return done


# ---------------------------------------------------------------- the driver
class MigrationDriver:
    """One migration from this (source) host; ``run()`` returns the report fields or raises MigrationFailed.

    ``p``: the edge_migrate options. ``stream_factory``: SshStream (tests pass a fake).
    """

    def __init__(self, api, p: dict, faults: dict | None = None, *, stream_factory=None,
                 progress: ProgressFile | None = None, clock: Callable[[], float] = time.monotonic,
                 poke: Callable | None = None, criu_check: Callable | None = None):
        self.api, self.p, self.faults = api, p, faults or read_faults({})
        # (inspect, host pids) -> (report, refusing findings): criu_preflight.preflight (tests pass a fake).
        self.criu_check = criu_check or criu_preflight
        self.criu_report: dict = {"checked": False}
        self.stream_factory = stream_factory or SshStream
        self.clock, self.poke = clock, poke or poke_clients
        self.progress = progress or ProgressFile(None)
        self.phase = "prepare"
        self.migration = uuid.uuid4().hex[:12]
        self.conn = None
        self.ck: dict | None = None
        self.durations: dict = {}
        self.precopy: dict | None = None  # the warm rounds' report, with pre-copy

    # -- records
    def _record(self, phase: str, **fields) -> None:
        write_state(self.p["dump_dir"], self.p["name"], "source", phase, migration=self.migration,
                    target=self.p["target"].get("host"), target_name=self.p["target"].get("name"),
                    checkpoint=self.p["checkpoint"],
                    work_dir=(self.ck or {}).get("work_dir"), checkpoint_dir=(self.ck or {}).get("checkpoint_dir"),
                    restart_policy=(self.ck or {}).get("restart_policy"), **fields)

    def _fail(self, msg: str, **result) -> MigrationFailed:
        result.setdefault("durations", self.durations)
        result.setdefault("preflight", self.criu_report)
        result.setdefault("phase", self.phase)
        return MigrationFailed(msg, **result)

    # -- phases
    def prepare(self) -> tuple[dict, list]:
        p, tgt = self.p, self.p["target"]
        problem = check_options(p)
        if problem:
            raise self._fail(problem, rolled_back="not_needed", durations={})
        self.progress.write({"phase": "connecting to the target"})
        # Everything the receiver needs is known before the freeze: connect, do
        # the SSH handshake and start the receiver now, off the downtime path.
        try:
            inspect = self.api.inspect_container(p["name"])
        except DockerAPIError as exc:
            raise self._fail(f"checkpoint: {exc}", rolled_back="not_needed", durations={}) from None
        if inspect is None or not inspect["State"].get("Running"):
            raise self._fail(f"checkpoint: container {p['name']!r} is not running here",
                             rolled_back="not_needed", durations={})
        # A volume another running container writes cannot be carried consistently,
        # and that container could swap files under the sender: refuse before the freeze.
        try:
            shared = {v["name"]: [c for c in self.api.containers_using_volume(v["name"]) if c != p["name"]]
                      for v in volumes(inspect)}
        except DockerAPIError as exc:
            raise self._fail(f"listing the users of the volumes: {exc}", rolled_back="not_needed",
                             durations={}) from None
        shared = {name: users for name, users in shared.items() if users}
        if shared:
            raise self._fail("volume(s) shared with other running containers cannot migrate with the service: "
                             + "; ".join(f"{n} (also mounted by {', '.join(u)})" for n, u in sorted(shared.items()))
                             + ". Stop those containers or give the service a volume of its own; nothing was frozen",
                             rolled_back="not_needed", durations={})
        self.check_criu(inspect)
        if tgt.get("volumes") is not None:
            # The target's ticket holds its volumes; a name missing there would only be refused
            # by the receiver at HELLO, after the freeze: say it now.
            try:
                pair_volumes(volumes(inspect), tgt["volumes"])
            except ValueError as exc:
                raise self._fail(f"{exc}: prepare the target container from the source's config",
                                 rolled_back="not_needed", durations={}) from None
        health = p.get("health")
        self.health_timeout = float((health or {}).get("timeout", 30) or 30)
        try:
            # The request names the ticket the target's prepare wrote: where the stream
            # lands, which container is restored and how, are the target's to say.
            self.conn = self.stream_factory(
                tgt["ticket"], host=tgt["host"], port=int(tgt.get("port") or 22), user=tgt.get("user") or "root",
                key_file=tgt.get("key_file") or DEFAULT_KEY_FILE,
                known_hosts=tgt.get("known_hosts") or DEFAULT_KNOWN_HOSTS,
                receiver_dir=tgt.get("receiver_dir") or RECEIVER_DIR, commit=True,
                stall_timeout=p["stall_timeout"]).open()
        except TransferError as exc:
            raise self._fail(f"connecting to the target: {exc}", rolled_back="not_needed", durations={}) from None
        # Connections open now die with the freeze (CRIU tcp-close); remember
        # their clients so they can be told at once after the switch-over.
        clients = client_connections(inspect) if p.get("address") else []
        return inspect, clients

    def check_criu(self, inspect: dict) -> None:
        """Refuse, before anything freezes, a service CRIU would fail to dump (criu_preflight),
        naming each process, fd and cause; what CRIU handles through runc.conf goes on."""
        pid = int((inspect.get("State") or {}).get("Pid") or 0)
        if not pid:
            self.criu_report = {"checked": False, "notes": ["no process id in Docker's inspect: not checked"]}
            return
        try:
            pids = list(container_processes(pid))
        except (OSError, LookupError, ValueError) as exc:
            # CRIU still judges every process at the dump; the init process is what we can see.
            pids, note = [pid], f"only the init process checked: the container's processes could not be listed ({exc})"
        else:
            note = None
        report, refusing = self.criu_check(inspect, pids)
        self.criu_report = {"checked": True, **report}
        if note:
            self.criu_report.setdefault("notes", []).append(note)
        if refusing:
            raise self._fail(refusal(refusing), rolled_back="not_needed", durations={})

    def warm(self, inspect: dict) -> None:
        """Warm pre-copy rounds while the service runs (precopy.warm_up); a failure freezes nothing."""
        p = self.p
        live = [("layer", upper_dir(inspect))] + [(f"volume/{v['name']}", v["path"]) for v in volumes(inspect)]
        note = None
        try:
            pids = container_processes(int(inspect["State"]["Pid"]))
        except (OSError, ValueError, KeyError) as exc:
            # Files are still pre-copied; memory then crosses at the freeze.
            pids, note = None, f"memory not pre-copied: the container's processes could not be listed ({exc})"

        def on_round(k: int, entry: dict) -> None:
            self.progress.write({"phase": f"warm round {k} done (service running)", "sent_bytes": entry["bytes_raw"],
                                 "eta_s": entry["predicted_final_s"]})

        self.progress.write({"phase": "warm round 1 (service running)"})
        try:
            self.precopy = warm_up(self.conn, live, pids, downtime_target=p.get("downtime_target", MigrationOptions.downtime_target),
                                   max_rounds=max(1, p.get("precopy_max_rounds", MigrationOptions.precopy_max_rounds)), policy=p["policy"],
                                   on_round=on_round)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # nothing is frozen: any failure ends here
            self.conn.close()
            self.progress.remove()
            raise self._fail(f"warm pre-copy failed: {exc}; nothing was frozen, the service kept running",
                             rolled_back="not_needed", durations={}) from None
        self.precopy["memory_processes"] = len(pids or {})
        if note:
            self.precopy["note"] = note

    def freeze(self) -> None:
        p = self.p
        self.phase = "freeze"
        self.progress.write({"phase": "checkpoint (service frozen)"})
        try:
            # After warm rounds the receiver's watchdog is armed: keep it fed while we dump
            # (a no-op before a pre-copy session's HELLO).
            with self.conn.keepalive():
                self.ck = create(self.api, p["name"], p["dump_dir"], p["checkpoint"])
        except CheckpointError as exc:
            # create() left the container running (or started it again).
            self.conn.close()
            raise self._fail(f"checkpoint: {exc}", rolled_back="not_needed", durations={}) from None
        self.durations.update(self.ck["durations"])
        self.durations["connect_s"] = round(self.conn.connect_s, 4)
        self._record("frozen")

    def stream(self) -> dict:
        p, ck, conn = self.p, self.ck, self.conn
        self.phase = "stream"
        if p.get("address"):
            set_address(p["interface"], p["address"], False)
        roots = [("checkpoint", ck["checkpoint_dir"]), ("layer", ck["upper_dir"])]
        roots += [(f"volume/{v['name']}", v["path"]) for v in ck["volumes"]]
        self.t1 = self.clock()
        total = ck["sizes"]["total"]

        def where() -> dict:
            sender = getattr(conn, "sender", None)
            fields = stream_progress("streaming", total, sender.timeline if sender else [])
            if fields.get("acked_bytes", 0) >= total > 0:
                fields["phase"] = "restoring on the target"
            return fields

        self.progress.follow(where)
        # Bounded: after END only the receiver's final check is left (the
        # stall watchdog covers unacknowledged bytes), never an hour.
        result = conn.stream(roots, policy=p["policy"], dedup=p["dedup"], pipelined=p["pipelined"],
                             timeout=confirm_timeout_s(p["stall_timeout"]),
                             warm=conn.warm if self.precopy is not None else None)
        self.phase = "verified"
        return result

    def commit(self) -> None:
        if self.faults["pause_verified"]:
            time.sleep(self.faults["pause_verified"])  # fault suite: a window between verified and commit
        # The commit point: durable here before the target may act on it.
        self._record("committed")
        self.phase = "committed"
        self.conn.commit(self.migration)

    def switched(self, result: dict, t0: float) -> dict:
        # Bounded by what the target may legitimately take (restore, health,
        # address), and by silence: it sends a heartbeat every 2 s.
        limit = RESTORE_TIMEOUT_S + self.health_timeout + 30.0
        silence = outcome_silence_s(self.p["stall_timeout"])
        final = self.conn.outcome(limit, silence)
        self.phase = "switched"
        result["receiver"] = final
        self.durations["downtime_s"] = round(self.clock() - t0, 4)
        switch = dict(final.get("switchover") or {})
        criu = switch.pop("criu_restore", None) or {}
        self.durations["transfer_s"] = round(self.clock() - self.t1 - sum(switch.values()), 4)
        self.durations.update(switch)
        # CRIU's own part of restore_s (stats-restore, restore.log): the rest is Docker's packing.
        for key, name in (("total_s", "criu_restore_s"), ("restore_s", "criu_restore_stage_s")):
            if isinstance(criu.get(key), (int, float)):
                self.durations[name] = criu[key]
        return result

    def roll_back(self, cause: BaseException) -> MigrationFailed:
        """Before the commit point (or after a fenced target): the source wins."""
        p = self.p
        self.progress.write({"phase": f"rolling back on the source: {cause}"})
        if self.conn is not None:
            if self.phase == "verified":
                self.conn.abort(f"source rolls back: {cause}")  # the receiver must not wait for COMMIT
            self.conn.close()
        if self.ck is not None:
            try:
                self._record("aborted", why=str(cause)[:500])
            except OSError:
                pass  # the source serves again below; "frozen" also means source wins
        try:
            how = bring_up(self.api, p["name"], (self.ck or {}).get("checkpoint_dir"),
                           address=p.get("address"), interface=p.get("interface"),
                           restart_policy=(self.ck or {}).get("restart_policy"))
        except Exception as rb_exc:  # report both; the playbook's rescue (recovery) tries again
            return self._fail(f"migration failed: {cause}; rollback on the source failed too: {rb_exc}",
                              rolled_back="failed", work_dir=(self.ck or {}).get("work_dir"),
                              checkpoint_dir=(self.ck or {}).get("checkpoint_dir"))
        self.cleanup()
        self.progress.remove()
        said = {"checkpoint": "restored from its checkpoint", "fresh_start": "started again",
                "not_needed": "still running"}[how]
        return self._fail(f"migration failed: {cause}; the service was {said} on the source", rolled_back=how)

    def cleanup(self) -> None:
        if self.ck is not None:
            shutil.rmtree(self.ck["work_dir"], ignore_errors=True)
        clear_state(self.p["dump_dir"], self.p["name"])
        self.phase = "cleaned" if self.phase == "switched" else self.phase

    def run(self) -> dict:
        inspect, clients = self.prepare()
        if self.p.get("precopy"):
            self.warm(inspect)
        t0 = self.clock()
        # The freeze window: from here until the commit point, ANY exception
        # rolls back (a list of types once let a KeyError leave the service frozen).
        try:
            self.freeze()
            result = self.stream()
            self.commit()
        except MigrationFailed:
            raise
        except Exception as exc:
            raise self.roll_back(exc) from None
        # Past the commit point: the target wins unless it says it fenced itself.
        try:
            result = self.switched(result, t0)
        except OutcomeUnknown as exc:
            self.conn.close()
            self.progress.remove()
            raise self._fail(
                f"migration committed, outcome unknown: {exc}. The source stays down with its checkpoint; "
                f"run playbooks/recover.yml -e svc={self.p['name']} (migrate.yml's rescue does) to converge",
                rolled_back="no", outcome="unknown", work_dir=self.ck["work_dir"]) from None
        except Exception as exc:
            if getattr(exc, "fenced", False):
                raise self.roll_back(f"{exc} (the target fenced itself)") from None
            self.conn.close()
            self.progress.remove()
            raise self._fail(f"migration committed, outcome unknown: {exc}; the target did not confirm it "
                             f"stopped serving, so the source stays down: run playbooks/recover.yml "
                             f"-e svc={self.p['name']}", rolled_back="no", outcome="unknown",
                             work_dir=self.ck["work_dir"]) from None
        # The service answers on the target now: make clients whose connection
        # died with the freeze notice it now instead of at their read timeout.
        poked = 0
        for port, peers in clients:
            try:
                poked += self.poke(self.p["address"], port, peers)
            except OSError:
                pass
        self.conn.close()
        self.progress.remove()
        self.cleanup()
        timeline = result.pop("timeline", [])
        if self.precopy is not None:
            # What the freeze still carried, next to what the warm rounds predicted it would.
            self.precopy["final"] = {k: result.get(k, 0) for k in (
                "bytes_raw", "bytes_wire", "files_sent", "files_patched", "files_deleted", "pages_referenced",
                "pages_literal")}
            self.precopy["final"]["transfer_s"] = self.durations.get("transfer_s")
        return dict(changed=True, durations=self.durations, sizes=self.ck["sizes"], stats=result,
                    checkpoint_via=self.ck.get("checkpoint_via"),
                    timeline=timeline, clients_reset=poked, precopy=self.precopy or {"enabled": False},
                    preflight=self.criu_report)


# ---------------------------------------------------------------- recovery
def receiver_running(name: str) -> bool:
    """Whether a receiver of ``name`` still runs here (its argv carries ``edgemig-receiver:<name>``)."""
    tag = f"edgemig-receiver:{name}".encode()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if tag in fh.read().split(b"\0"):
                        return True
            except OSError:
                continue
    return False


def held_here(api, name: str, inspect: dict | None, held_dir: str) -> dict | None:
    """The held record of this edge's container ``name`` (a checkpoint stopped it; its restart policy).

    One whose container is gone is dropped here: the migration succeeded and
    the source copy was removed (the target has the policy), or someone
    removed it: no container is left to give a policy back to.
    """
    held = read_held(held_dir, name)
    if held is None:
        return None
    if inspect is not None and held.get("container") in (inspect["Id"], None):
        return held
    if held.get("container") is None or api.inspect_container(held["container"]) is None:
        clear_held(held_dir, name, held.get("container"))
    return None


def local_facts(api, name: str, dump_dir: str, address: str | None = None,
                interface: str | None = None, held_dir: str | None = None) -> dict:
    """What this edge knows about ``name``: its record, its container, the checkpoint it holds, the address.

    ``checkpoint``: the images this edge's record points to, if they are still
    on its dump tmpfs (a source's dump, or what the stream wrote on a target);
    without a record, those its held record names (a dump cut short before the
    ``frozen`` record); ``has_checkpoint``: a target holds one (in doubt: it can
    restore). ``held``: the held record (``held_dir``, persistent; default beside
    ``dump_dir``) of this very container, which outlives a reboot of the edge.
    """
    record = read_state(dump_dir, name)
    inspect = api.inspect_container(name)
    held_rec = held_here(api, name, inspect, held_dir or held_dir_for(dump_dir))
    held = (record or held_rec or {}).get("checkpoint_dir")
    held = held if holds_images(held) else None
    facts = {"record": record, "exists": inspect is not None,
             "running": bool(inspect and inspect["State"].get("Running")),
             "checkpoint": held, "has_checkpoint": bool(held and inspect is not None and record
                                                        and record.get("role") == "target"),
             "held": held_rec, "address_here": False}
    if address and interface:
        try:
            facts["address_here"] = address_present(interface, address)[0]
        except Exception:
            facts["address_here"] = False
    return facts


def decide(edges: dict[str, dict | None]) -> dict:
    """The recovery's decision table. ``edges``: edge name -> local_facts (None: unreachable).

    Returns ``{"winner", "reason", "actions": {edge: serve|stand_down|stop|wait|none}, "complete"}``:
    ``serve`` = bring_up (restore from the checkpoint it holds if not running), ``stand_down`` =
    address off + container removed, ``stop`` = address off + container stopped but kept (with its
    checkpoint and record) until the winner is seen serving (then it is stood down), ``wait`` =
    unreachable, done on a later run.
    Never removes a copy that passed the commit point: with a committed source record the target
    is removed only if it confirmed it cannot serve (fenced, or no checkpoint and not running).
    """
    seen = {e: f for e, f in edges.items() if f is not None}
    gone = [e for e, f in edges.items() if f is None]
    role = {e: (f.get("record") or {}).get("role") for e, f in seen.items()}
    sources = [e for e in seen if role[e] == "source"]
    actions = {e: "none" for e in edges}

    def plan(winner: str | None, reason: str, keep: bool = False) -> dict:
        for e in edges:
            if e == winner:
                actions[e] = "wait" if e in gone else "serve"
            elif e in gone:
                actions[e] = "wait"
            elif keep:
                actions[e] = "stop"
            else:
                actions[e] = "stand_down" if (seen[e]["exists"] or seen[e]["address_here"]
                                              or seen[e].get("record")) else "none"
        return {"winner": winner, "reason": reason, "actions": dict(actions), "complete": not gone}

    if sources:
        return with_source(sources[0], edges, seen, gone, role, plan, actions)
    # No source record seen.
    committed = [e for e in seen if role[e] == "target" and (seen[e]["record"] or {}).get("phase") == "committed"]
    if committed:
        # The receiver got COMMIT, which the source sends only after recording it.
        return plan(committed[0], f"{committed[0]} received COMMIT: the target wins")
    running = [e for e in seen if seen[e]["running"]]
    held = [e for e in seen if seen[e].get("held") and not seen[e]["running"]]
    if held and not running:
        return held_source(held, gone, plan, actions)
    in_doubt = [e for e in seen if role[e] == "target"]
    if gone and in_doubt and not running:
        return {"winner": None, "reason": f"{in_doubt[0]} is in doubt and {gone} unreachable: "
                                          "the source's record decides; run again when it is reachable",
                "actions": actions, "complete": False}
    if len(running) == 1:
        return plan(running[0], f"no commit record: the one running copy ({running[0]}) stays")
    if len(running) > 1:
        holder = [e for e in running if seen[e]["address_here"]]
        return {"winner": None, "reason": f"no record and several running copies {running} "
                                          f"(address on {holder}): refusing to choose",
                "actions": actions, "complete": False}
    return {"winner": None, "reason": "no record and no running copy: nothing to recover",
            "actions": actions, "complete": not gone}


def with_source(src: str, edges: dict, seen: dict, gone: list[str], role: dict, plan: Callable,
                actions: dict) -> dict:
    """``decide`` when ``src`` holds a source record: before the commit point the source wins; after
    it the target wins if it runs or holds the checkpoint, the source only if the target cannot."""
    rec = seen[src]["record"]
    others = [e for e in edges if e != src]
    tgt = next((e for e in others if role.get(e) == "target"), None) \
        or next((e for e in others if e in seen and seen[e]["exists"]), None) \
        or (others[0] if len(others) == 1 else None)
    if rec.get("phase") != "committed":
        return plan(src, f"{src} never committed (phase {rec.get('phase')}): the source wins")
    if tgt is None:
        return {"winner": None, "reason": "committed, but the target edge is not known",
                "actions": actions, "complete": False}
    if tgt in gone:
        return plan(tgt, f"{src} committed to {tgt}, which is unreachable: the source stays down "
                         "with its checkpoint until it is seen", keep=True)
    t = seen[tgt]
    if t["running"] or t["has_checkpoint"]:
        how = "runs" if t["running"] else "holds the checkpoint (in doubt): restore it"
        # The source only stops here (copy and checkpoint kept): it is removed once the
        # target serves (the playbook's last step, or the next run), never before.
        return plan(tgt, f"{src} passed the commit point: the target wins; {tgt} {how}", keep=True)
    return plan(src, f"{src} committed, but {tgt} neither runs nor holds the checkpoint "
                     f"(target phase {(t.get('record') or {}).get('phase', 'none')}): the source wins back")


def held_source(held: list[str], gone: list[str], plan: Callable, actions: dict) -> dict:
    """``decide`` for a copy a checkpoint stopped (held record) with no source record left (a reboot
    emptied the dump tmpfs, or the process died before its ``frozen`` record), no copy running
    and no target that got COMMIT: it serves again, unless an edge that cannot be seen may serve."""
    if gone:
        return {"winner": None, "reason": f"{held[0]} was stopped by a migration whose record is lost (its "
                                          f"restart policy is held) and {gone} unreachable, where the "
                                          "service may run: run again when every edge is reachable",
                "actions": actions, "complete": False}
    if len(held) > 1:
        return {"winner": None, "reason": f"copies stopped by migrations on {held}, none running and no "
                                          "record: refusing to choose", "actions": actions, "complete": False}
    return plan(held[0], f"{held[0]} was stopped by a migration that left no record (its restart policy held) "
                         "and no copy runs anywhere: it serves again, its policy given back")
