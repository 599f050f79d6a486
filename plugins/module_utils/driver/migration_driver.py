# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The migration, source side: one driver with explicit phases and one rollback.

    prepare -> [parked] -> freeze -> stream -> verified -> committed -> switched -> cleaned

* prepare: options checked, SSH connected and the receiver started; nothing
  frozen. A failure here needs no rollback.
* parked (with ``park``, driver/park.py): connected and warm, the service
  running, the driver waits at its gate (``go``/``nogo`` in ``park.dir``),
  feeding the receiver's watchdog and refreshing the warm copy every
  ``park.refresh_s``. No-go or timeout: the connection closes and the result
  says ``parked.released=false`` (not failed, nothing changed). A failure:
  like one in prepare. No record is written while parked: nothing is in doubt.
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
  ``recovery.decide`` (migration_recover) resolves it.
* switched: the target answered ok (restored, healthy, address taken);
  clients told (tcp_reset). cleaned: dump and record removed.

The rollback is ``recovery.bring_up``, the recovery's own action: one way to
put a service back, whoever asks.
"""
from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Callable

from ansible_collections.edgemig.migration.plugins.module_utils.common.faults import read_faults
from ansible_collections.edgemig.migration.plugins.module_utils.common.migration_state import (
    clear_parked,
    clear_state,
    write_parked,
    write_state,
)
from ansible_collections.edgemig.migration.plugins.module_utils.common.options import MigrationOptions
from ansible_collections.edgemig.migration.plugins.module_utils.common.timeouts import (
    confirm_timeout_s,
    outcome_limit_s,
    outcome_silence_s,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.checkpoint import CheckpointError, create
from ansible_collections.edgemig.migration.plugins.module_utils.docker.container_spec import (
    pair_volumes,
    upper_dir,
    volumes,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.criu_preflight import check_container, refusal
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.module_common import ipv4_problem
from ansible_collections.edgemig.migration.plugins.module_utils.docker.switchover import interface_exists, set_address
from ansible_collections.edgemig.migration.plugins.module_utils.docker.tcp_reset import established_peers, poke_clients
from ansible_collections.edgemig.migration.plugins.module_utils.driver.park import (
    PACE,
    PARKED,
    PARKED_COLD,
    LeaseEnded,
    check_lease,
    park_problem,
    wait_release,
)
from ansible_collections.edgemig.migration.plugins.module_utils.driver.progress import ProgressFile, stream_progress
from ansible_collections.edgemig.migration.plugins.module_utils.driver.recovery import bring_up, stand_down
from ansible_collections.edgemig.migration.plugins.module_utils.sender.controller import parse_policy
from ansible_collections.edgemig.migration.plugins.module_utils.sender.precopy import refresh, warm_up
from ansible_collections.edgemig.migration.plugins.module_utils.sender.process_memory import container_processes
from ansible_collections.edgemig.migration.plugins.module_utils.sender.ssh_stream import (
    DEFAULT_KEY_FILE,
    DEFAULT_KNOWN_HOSTS,
    RECEIVER_DIR,
    OutcomeUnknown,
    SshStream,
    TransferError,
)

PHASES = ("prepare", "parked", "freeze", "stream", "verified", "committed", "switched", "cleaned")


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
    share = p.get("link_share", 1.0)
    if not 0 < share <= 1:
        return f"link_share must be in (0, 1], not {share}"
    return park_problem(p.get("park")) or preflight(p)


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
        self.criu_check = criu_check
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
        self.live: list[tuple[str, str]] = []  # what the warm rounds read: layer and volumes, memory
        self.pids: dict | None = None

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
    def prepare(self, connect: bool = True) -> tuple[dict, list]:
        """Everything checked that can be before the freeze; with ``connect``, the target connected."""
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
        if connect:
            self.connect()
        # Connections open now die with the freeze (CRIU tcp-close); remember
        # their clients so they can be told at once after the switch-over.
        clients = client_connections(inspect) if p.get("address") else []
        return inspect, clients

    def connect(self) -> None:
        """SSH to the target, its receiver started, the link probed: nothing frozen yet."""
        p, tgt = self.p, self.p["target"]
        try:
            # The request names the ticket the target's prepare wrote: where the stream
            # lands, which container is restored and how, are the target's to say.
            self.conn = self.stream_factory(
                tgt["ticket"], host=tgt["host"], port=int(tgt.get("port") or 22), user=tgt.get("user") or "root",
                key_file=tgt.get("key_file") or DEFAULT_KEY_FILE,
                known_hosts=tgt.get("known_hosts") or DEFAULT_KNOWN_HOSTS,
                receiver_dir=tgt.get("receiver_dir") or RECEIVER_DIR, commit=True,
                stall_timeout=p["stall_timeout"], link_share=p.get("link_share", 1.0)).open()
        except TransferError as exc:
            raise self._fail(f"connecting to the target: {exc}", rolled_back="not_needed", durations={}) from None

    def check_criu(self, inspect: dict) -> None:
        """Refuse, before anything freezes, a service CRIU would fail to dump (criu_preflight),
        naming each process, fd and cause; what CRIU handles through runc.conf goes on."""
        self.criu_report, refusing = check_container(inspect, container_processes, self.criu_check)
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
        self.live, self.pids = live, pids

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

    def park(self, inspect: dict) -> dict:
        """Wait at the gate (driver/park.py) with the service running: ``go`` in ``park.dir`` returns
        ``{released: True, ...}`` and the freeze follows; ``nogo`` or the timeout return
        ``{released: False, why, ...}`` with the connection closed and the progress file gone. While
        parked the receiver's watchdog is fed (KEEPALIVE frames between rounds), the session is
        checked about once a second, and every ``refresh_s`` (at least PACE x the last round's
        length) one more warm round keeps the final round small. Never frozen here: a failure
        (a refresh round, the receiver gone) ends as a warm pre-copy failure does."""
        spec, p = self.p["park"], self.p
        self.phase = "parked"
        limit, every = float(spec["timeout"]), float(spec["refresh_s"])
        warm = self.precopy is not None
        refreshes: list[dict] = []
        t0 = self.clock()
        deadline = t0 + limit
        next_round = t0 + every if warm and every > 0 else None

        since = time.time()

        def check() -> None:
            why = self.conn.broken() if self.conn is not None else None
            if why:
                raise RuntimeError(why)
            check_lease(spec["dir"], since, float(spec.get("lease_s") or 0))

        def said(released: bool, **fields) -> dict:
            out = {"released": released, "waited_s": round(self.clock() - t0, 3), "refresh_rounds": len(refreshes),
                   **fields}
            if warm:
                self.precopy["refresh"] = refreshes
            return out

        try:
            # For the recovery (recover.yml, a second migrate.yml): a migration parked here, nothing
            # frozen; removed however the park ends (a killed module's note names a process gone).
            write_parked(p["dump_dir"], p["name"], target=p["target"].get("name") or p["target"].get("host"),
                         job=spec["dir"])
            while True:
                self.progress.write({"phase": PARKED if self.conn is not None else PARKED_COLD,
                                     "refresh_rounds": len(refreshes)})
                lease_ended = None
                try:
                    with self.conn.keepalive() if self.conn is not None else contextlib.nullcontext():
                        answer = wait_release(spec["dir"],
                                              deadline if next_round is None else min(deadline, next_round),
                                              self.clock, check)
                except LeaseEnded as exc:
                    answer, lease_ended = "nogo", str(exc)
                if answer == "go":
                    # Wall clock, for the reaction's split (bench/mobility_bench.py): gate answered
                    # on the controller -> go seen here -> freeze begun (``freeze_at``).
                    return said(True, go_seen_at=round(time.time(), 3))
                if answer == "nogo" or self.clock() >= deadline:
                    why = lease_ended or ("no-go at the gate" if answer == "nogo" else f"park timeout ({limit:g} s)")
                    if self.conn is not None:
                        self.conn.close()   # the receiver ends on the EOF; it drops the warm copy
                    self.progress.remove()
                    return said(False, why=why)
                self._refresh_pids(inspect)
                refreshes.append(refresh(self.conn, self.live, self.pids, policy=p["policy"]))
                next_round = self.clock() + max(every, PACE * refreshes[-1]["seconds"])
        except Exception as exc:  # pylint: disable=broad-exception-caught  # nothing is frozen: any failure ends here
            if self.conn is not None:
                self.conn.close()
            self.progress.remove()
            raise self._fail(f"parked migration failed: {exc}; nothing was frozen, the service kept running",
                             rolled_back="not_needed", durations={},
                             parked=said(False, why=f"failed while parked: {exc}")) from None
        finally:
            clear_parked(p["dump_dir"], p["name"])

    def _refresh_pids(self, inspect: dict) -> None:
        """The container's processes as they are now (one forked while parked is warmed too); the
        last list when they cannot be read (its identities still guard every read)."""
        if self.pids is None:
            return   # memory was not pre-copied: not now either
        try:
            self.pids = container_processes(int(inspect["State"]["Pid"]))
        except (OSError, ValueError, KeyError):
            pass

    def not_moved(self, parked: dict) -> dict:
        """The result of a park that ended without a go: nothing frozen, nothing changed."""
        return dict(changed=False, parked=parked, durations={}, precopy=self.precopy or {"enabled": False},
                    preflight=self.criu_report)

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
        limit = outcome_limit_s(self.health_timeout)
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

    def remove_source(self) -> bool | str:
        """Once the target serves, the stopped source copy goes (recovery's stand_down: its held record
        too). Its checkpoint went with cleanup(), so it could only start fresh, a second copy with
        the state of its last start. True when removed; a failure is said, not raised: the migration
        succeeded, and the next migration removes stopped leftovers."""
        try:
            inspect = self.api.inspect_container(self.p["name"])
            if inspect is None or inspect["Id"] != self.ck["container_id"] or inspect["State"].get("Running"):
                return False  # not the copy this migration stopped
            stand_down(self.api, self.p["name"], held_dir=self.ck.get("held_dir"))
            return True
        except (DockerAPIError, OSError) as exc:
            return f"the stopped source container was not removed: {exc}"

    def cleanup(self) -> None:
        if self.ck is not None:
            shutil.rmtree(self.ck["work_dir"], ignore_errors=True)
        clear_state(self.p["dump_dir"], self.p["name"])
        self.phase = "cleaned" if self.phase == "switched" else self.phase

    def run(self) -> dict:
        park = self.p.get("park")
        # A stop-and-copy session cannot be held open (frames before HELLO are not allowed, and the
        # receiver gives up without one): parked without pre-copy, it connects at the go.
        cold = bool(park) and not self.p.get("precopy")
        inspect, clients = self.prepare(connect=not cold)
        if self.p.get("precopy"):
            self.warm(inspect)
        parked = None
        if park:
            parked = self.park(inspect)
            if not parked["released"]:
                return self.not_moved(parked)
            if cold:
                self.connect()
            # The clients to tell after the switch-over are those connected now, not at the park.
            clients = client_connections(inspect) if self.p.get("address") else []
            parked["freeze_at"] = round(time.time(), 3)
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
        source_removed = self.remove_source()
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
                    preflight=self.criu_report, source_removed=source_removed,
                    **({"parked": parked} if parked else {}))
