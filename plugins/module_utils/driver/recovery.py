# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The recovery of an interrupted migration: what each edge knows, who wins, and the two actions.

* ``local_facts`` (and ``receiver_running``): what one edge knows of a service: its migration
  record, its container, the checkpoint it holds, its held restart policy, the address.
* ``decide``: the decision table over every edge's facts. Pure: no Docker, no file, no clock, so
  the controller computes it where the facts meet (the ``recovery_decision`` filter) and the tests
  call it on plain dicts.
* ``bring_up`` / ``stand_down``: the two actions a decision asks of an edge. ``bring_up`` is also
  the driver's rollback (migration_driver imports it): one way to put a service back.

Below the driver and above the Docker side: it imports the Docker side and shared leaves, never
the stream engine, so ``migration_recover`` does not ship the engine (docs/design.md, import rules).
"""
from __future__ import annotations

import os
from collections.abc import Callable

from ansible_collections.edgemig.migration.plugins.module_utils.common.migration_state import (
    clear_held,
    held_dir_for,
    read_held,
    read_parked,
    read_state,
)
from ansible_collections.edgemig.migration.plugins.module_utils.common.options import DEFAULT_DUMP_DIR
from ansible_collections.edgemig.migration.plugins.module_utils.docker.checkpoint import (
    RestartPolicyError,
    held_dir_of,
    held_policy,
    resume_restarts,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.health import wait_healthy
from ansible_collections.edgemig.migration.plugins.module_utils.docker.switchover import address_present, set_address
from ansible_collections.edgemig.migration.plugins.module_utils.docker.tmpfs_restore import (
    holds_images,
    start_from_checkpoint,
)


# ---------------------------------------------------------------- what an edge knows
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
             "held": held_rec, "address_here": False, "parked": read_parked(dump_dir, name)}
    if address and interface:
        try:
            facts["address_here"] = address_present(interface, address)[0]
        except Exception:
            facts["address_here"] = False
    return facts


# ---------------------------------------------------------------- who wins (pure)
def decide(edges: dict[str, dict | None]) -> dict:
    """The recovery's decision table. ``edges``: edge name -> local_facts (None: unreachable).

    Returns ``{"winner", "reason", "actions": {edge: serve|stand_down|stop|wait|none}, "complete"}``
    (and ``parked``: the edge where a migration of the service is parked, when one is: then nothing
    is done anywhere):
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

    parked = [e for e in seen if seen[e].get("parked") and role[e] is None]
    if parked:
        # Nothing frozen, nothing in doubt: the parked run ends by itself (its gate, its lease or
        # its timeout) and gives back what it prepared; acting here would undo its target under it.
        note = seen[parked[0]]["parked"]
        return {"winner": None, "parked": parked[0],
                "reason": f"a migration is parked on {parked[0]} (to {note.get('target') or '?'}): nothing is "
                          "frozen and nothing to recover; it ends at its gate, its lease or its timeout",
                "actions": actions, "complete": not gone}
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
                start_from_checkpoint(api, name, checkpoint_path)
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
