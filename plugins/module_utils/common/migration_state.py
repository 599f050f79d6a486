# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Durable per-service migration records: ``<dump_dir>/.edgemig-state/<svc>.json``.

Both ends keep one (docs/design.md, "Commit point, fencing, recovery"). The
source's record is the commit point: once it says ``phase=committed`` the
target wins, whatever happens to the link or to the processes afterwards;
before it the source wins. The target's record says what the receiver did
with the checkpoint it holds (``in_doubt``: verified but no COMMIT came, so it
did not restore; ``fenced``: it restored, failed, and took itself down).

Written atomically (temporary file, fsync, rename, fsync of the directory):
a record is either the old one or the new one after a crash, never half.
Standard library and common/ only: the receiver (shipped to the target) writes records.

The *held* record (``<held_dir>/<svc>.json``, by default ``held`` beside the
dump dir: ``/var/lib/edgemig/held``) is the one record that must survive a
reboot: the dump tmpfs, and the migration records in it, do not. It says that a
checkpoint stopped this container and which restart policy it took away (set to
``no`` so that Docker does not start the stopped source again beside the
target). Written before the policy is changed, removed only once the policy was
given back or the container is gone. It holds no memory, only names and the policy.

The *parked* note (``<dump_dir>/.edgemig-state/<svc>.parked``) says that a migration of the service
is parked on this edge (driver/park.py): connected and warm, nothing frozen, waiting at its gate.
Not a record: nothing is in doubt while it stands. It names the process that holds it, so a note
whose process is gone (killed) is no parked migration (:func:`read_parked` checks).
"""
from __future__ import annotations

import json
import os
import time

from ansible_collections.edgemig.migration.plugins.module_utils.common.proc_stat import parse_start_time

STATE_DIR = ".edgemig-state"

# The phases a record holds (docs/design.md, "State files"). Source (edge_migrate's driver):
# frozen -> committed -> (removed when cleaned); aborted = the source won (rollback under way
# or done), the target must not serve. Target (the receiver): verified -> committed -> serving
# (removed then) | fenced; in_doubt.


def state_path(dump_dir: str, service: str) -> str:
    if not service or "/" in service or service.startswith("."):
        raise ValueError(f"bad service name for a state file: {service!r}")
    return os.path.join(dump_dir, STATE_DIR, f"{service}.json")


def _fsync_dir(path: str) -> None:
    dfd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _write_json(path: str, record: dict) -> dict:
    """Replace ``path`` with ``record`` (0600, in a 0700 dir); durable when this returns."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, json.dumps(record, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    # The rename is durable only once the directory is: without this a
    # power loss could bring back the previous record.
    _fsync_dir(os.path.dirname(path))
    return record


def write_state(dump_dir: str, service: str, role: str, phase: str, **fields) -> dict:
    """Replace the record of ``service``; returns it. Durable when this returns."""
    record = {"service": service, "role": role, "phase": phase, "time": time.time(), **fields}
    return _write_json(state_path(dump_dir, service), record)


def _read_json(path: str, corrupt: dict) -> dict | None:
    """The JSON object at ``path``; None when there is no file; ``corrupt`` when it is not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except FileNotFoundError:
        return None
    except ValueError:
        record = None
    return record if isinstance(record, dict) else corrupt


def read_state(dump_dir: str, service: str) -> dict | None:
    """The record of ``service``, or None (none, or unreadable: reported as such by the caller)."""
    return _read_json(state_path(dump_dir, service), {"service": service, "role": "unknown", "phase": "corrupt"})


def clear_state(dump_dir: str, service: str) -> bool:
    """Remove the record; returns whether there was one."""
    try:
        os.unlink(state_path(dump_dir, service))
    except FileNotFoundError:
        return False
    return True


# ---------------------------------------------------------------- held restart policies
HELD_DIR = "held"


def held_dir_for(dump_dir: str) -> str:
    """The held records' dir of an edge whose dump tmpfs is ``dump_dir``: ``held`` beside it.

    The one place the default is declared. Beside, never inside: the tmpfs is
    empty after a reboot, and this record must outlive one. Per dump dir, so
    that edges sharing a file system (the lab) never read each other's.
    """
    return os.path.join(os.path.dirname(os.path.normpath(dump_dir)), HELD_DIR)


def held_path(held_dir: str, service: str) -> str:
    return os.path.join(held_dir, os.path.basename(state_path(held_dir, service)))


def write_held(held_dir: str, service: str, container: str, restart_policy: dict | None, **fields) -> dict:
    """Record that a checkpoint is about to stop ``container`` (its id) and the policy it had.

    Durable (file and dir fsynced) when this returns: call it before the policy changes.
    """
    record = {"service": service, "container": container, "restart_policy": restart_policy,
              "time": time.time(), **fields}
    return _write_json(held_path(held_dir, service), record)


def read_held(held_dir: str, service: str) -> dict | None:
    """The held record of ``service``, or None. An unreadable one comes back as
    ``{"corrupt": True}``: a checkpoint did stop the service, its policy is unknown."""
    return _read_json(held_path(held_dir, service),
                      {"service": service, "container": None, "restart_policy": None, "corrupt": True})


def clear_held(held_dir: str, service: str, container: str | None = None) -> bool:
    """Remove the held record of ``service``; with ``container``, only one naming that container
    (a record of another container by the same name is not this one's to drop). Returns whether
    one was removed."""
    path = held_path(held_dir, service)
    if container is not None:
        held = read_held(held_dir, service)
        if held is None or held.get("container") not in (container, None):
            return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    _fsync_dir(held_dir)
    return True


# ---------------------------------------------------------------- the parked note
PARKED_SUFFIX = ".parked"


def parked_path(dump_dir: str, service: str) -> str:
    """Beside the record; never a record's name (those end in ``.json``)."""
    return state_path(dump_dir, service)[: -len(".json")] + PARKED_SUFFIX


def process_start(pid: int, proc: str = "/proc") -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22): with the pid, one
    process; None when there is no such process."""
    try:
        with open(os.path.join(proc, str(pid), "stat"), encoding="utf-8", errors="replace") as fh:
            return parse_start_time(fh.read())
    except (OSError, ValueError):
        return None


def write_parked(dump_dir: str, service: str, **fields) -> dict:
    """Note that this process holds a parked migration of ``service``."""
    note = {"service": service, "pid": os.getpid(), "started": process_start(os.getpid()), "since": time.time(),
            **fields}
    return _write_json(parked_path(dump_dir, service), note)


def clear_parked(dump_dir: str, service: str) -> None:
    try:
        os.unlink(parked_path(dump_dir, service))
    except FileNotFoundError:
        pass


def read_parked(dump_dir: str, service: str, proc: str = "/proc") -> dict | None:
    """The parked note of ``service`` while the very process that wrote it runs, else None."""
    note = _read_json(parked_path(dump_dir, service), {}) or {}
    pid, started = note.get("pid"), note.get("started")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(started, int):
        return None
    return note if process_start(pid, proc) == started else None
