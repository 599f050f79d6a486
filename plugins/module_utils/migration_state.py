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
Standard library only: the receiver (shipped to the target) writes records.
"""
from __future__ import annotations

import json
import os
import time

STATE_DIR = ".edgemig-state"

# Source phases (edge_migrate's driver): frozen -> committed -> (removed when cleaned);
# aborted = the source won (rollback under way or done), the target must not serve.
SOURCE_PHASES = ("frozen", "committed", "aborted")
# Target phases (the receiver): verified -> committed -> serving (removed then) | fenced; in_doubt.
TARGET_PHASES = ("verified", "in_doubt", "committed", "fenced")


def state_path(dump_dir: str, service: str) -> str:
    if not service or "/" in service or service.startswith("."):
        raise ValueError(f"bad service name for a state file: {service!r}")
    return os.path.join(dump_dir, STATE_DIR, f"{service}.json")


def write_state(dump_dir: str, service: str, role: str, phase: str, **fields) -> dict:
    """Replace the record of ``service``; returns it. Durable when this returns."""
    path = state_path(dump_dir, service)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    record = {"service": service, "role": role, "phase": phase, "time": time.time(), **fields}
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(record, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    # The rename is durable only once the directory is: without this a
    # power loss could bring back the previous phase.
    dfd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return record


def read_state(dump_dir: str, service: str) -> dict | None:
    """The record of ``service``, or None (none, or unreadable: reported as such by the caller)."""
    try:
        with open(state_path(dump_dir, service), encoding="utf-8") as fh:
            record = json.load(fh)
    except FileNotFoundError:
        return None
    except ValueError:
        return {"service": service, "role": "unknown", "phase": "corrupt"}
    return record if isinstance(record, dict) else {"service": service, "role": "unknown", "phase": "corrupt"}


def clear_state(dump_dir: str, service: str) -> bool:
    """Remove the record; returns whether there was one."""
    try:
        os.unlink(state_path(dump_dir, service))
    except FileNotFoundError:
        return False
    return True
