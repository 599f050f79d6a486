# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Migration tickets: the target decides what a stream may write and restore.

A sender edge may be hostile (docs/security.md). So it names nothing on the
target but a ticket: the controller, which is trusted and prepares the target
over its own connection, has the target write the ticket (root only, on the
dump tmpfs) when it creates the target container
(``docker_checkpoint_restore stage=prepare``). The ticket holds every path and
parameter of one migration: the stream's roots (from the target's own Docker),
what to empty first, the container to restore (by ID), its health check,
service address and interface, the timeouts, an expiry. The receiver is
started with the ticket's ID only, claims the ticket (a second use is
refused), checks it against its own configuration (``receiver.json``:
the directories it may write, the dump dir) and derives everything from it.

Standard library only (and common.options, the TLS options' names): the receiver ships it.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import fields

from ansible_collections.edgemig.migration.plugins.module_utils.common.options import TLS_FILES, DockerTLSOptions

# Where tickets live: beside the checkpoints on the target's dump tmpfs (they hold
# no memory, but are one-shot: a reboot may well forget them).
TICKETS = "tickets"
TICKET_ID = re.compile(r"^[0-9a-f]{32}$")
# Root names a stream may use, and the only ones a ticket may hold.
ROOT_NAME = re.compile(r"^(checkpoint|layer|warm|volume/[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$")
SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_TTL = 3600.0  # a parked follow migration waits up to 900 s at its gate before it connects
FAULT_KEYS_TARGET = ("corrupt_every", "restore", "health", "pause_restore")


class TicketError(Exception):
    """The ticket is missing, used, expired, or does not fit this receiver's configuration."""


def ticket_dir(dump_dir: str) -> str:
    return os.path.join(dump_dir, TICKETS)


def warm_dir(dump_dir: str, name: str) -> str:
    """Where a target keeps the warm memory pages of ``name`` during a pre-copy session."""
    return os.path.join(dump_dir, f"{name}.warm")


def _path(dump_dir: str, ticket_id: str, suffix: str) -> str:
    if not isinstance(ticket_id, str) or not TICKET_ID.match(ticket_id):
        raise TicketError("a ticket ID is 32 lowercase hex digits")
    return os.path.join(ticket_dir(dump_dir), ticket_id + suffix)


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def check_roots(roots: dict, allowed: list[str], forbidden: list[str] = ()) -> dict[str, str]:
    """The roots as real paths, or TicketError: each an absolute directory path under one of
    ``allowed`` (compared by real path, so a symlink or ``..`` that leaves them is seen),
    no two the same or one inside another (a directory under two names would take the
    rules of the laxer one), none holding or inside a ``forbidden`` path."""
    if not isinstance(roots, dict) or not roots:
        raise TicketError("a ticket names at least one root")
    allowed = [os.path.realpath(a) for a in allowed]
    real = {}
    for name, path in roots.items():
        if not isinstance(name, str) or not ROOT_NAME.match(name):
            raise TicketError(f"root name {name!r} is not checkpoint, layer, warm or volume/<name>")
        if not isinstance(path, str) or not os.path.isabs(path) or "\0" in path:
            raise TicketError(f"root {name}: {path!r} is not an absolute path")
        rp = os.path.realpath(path)
        if not any(_under(rp, a) and rp != a for a in allowed):
            raise TicketError(f"root {name}={path} is outside the directories this receiver may write "
                              f"({', '.join(allowed)})")
        for f in forbidden:
            f = os.path.realpath(f)
            if _under(rp, f) or _under(f, rp):
                raise TicketError(f"root {name}={path} overlaps {f}, which no stream may write")
        real[name] = rp
    names = sorted(real)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if _under(real[a], real[b]) or _under(real[b], real[a]):
                raise TicketError(f"roots {a} ({real[a]}) and {b} ({real[b]}) are the same directory "
                                  "or one holds the other")
    return real


def issue(dump_dir: str, *, roots: dict[str, str], clear: list[str] = (), create: list[str] = (),
          service: str = "", restore: dict | None = None, stall_timeout: float = 30.0,
          ttl: float = DEFAULT_TTL, faults: dict | None = None, now: float | None = None) -> str:
    """Write a ticket (root only) on this host; returns its ID. Expired tickets are swept."""
    now = time.time() if now is None else now
    tid = secrets.token_hex(16)
    body = {"v": 1, "id": tid, "service": service, "issued": now, "expires": now + float(ttl),
            "roots": dict(roots), "clear": list(clear), "create": list(create),
            "stall_timeout": float(stall_timeout), "restore": restore,
            "faults": {k: v for k, v in (faults or {}).items() if k in FAULT_KEYS_TARGET and v}}
    d = ticket_dir(dump_dir)
    os.makedirs(d, mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    sweep(dump_dir, now)
    path = _path(dump_dir, tid, ".json")
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(body, fh, sort_keys=True)
    os.replace(path + ".tmp", path)
    return tid


def sweep(dump_dir: str, now: float | None = None) -> None:
    """Delete used tickets and expired ones (best effort)."""
    now = time.time() if now is None else now
    d = ticket_dir(dump_dir)
    try:
        names = os.listdir(d)
    except OSError:
        return
    for name in names:
        path = os.path.join(d, name)
        try:
            if name.endswith(".used") or os.lstat(path).st_mtime < now - 2 * DEFAULT_TTL:
                os.unlink(path)
            elif name.endswith(".json") and _read(path).get("expires", 0) < now:
                os.unlink(path)
        except (OSError, ValueError):
            continue


def revoke(dump_dir: str, service: str) -> int:
    """Delete the unused tickets of ``service`` (a new prepare replaces the container they name)."""
    d, n = ticket_dir(dump_dir), 0
    try:
        names = [x for x in os.listdir(d) if x.endswith(".json")]
    except OSError:
        return 0
    for name in names:
        path = os.path.join(d, name)
        try:
            if _read(path).get("service") == service:
                os.unlink(path)
                n += 1
        except (OSError, ValueError, TicketError):
            continue
    return n


def _read(path: str) -> dict:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as fh:
        st = os.fstat(fh.fileno())
        if st.st_uid != 0 and st.st_uid != os.getuid():
            raise TicketError(f"ticket {path} is not owned by root")
        if st.st_mode & 0o077:
            raise TicketError(f"ticket {path} is readable or writable by others")
        body = json.load(fh)
    if not isinstance(body, dict):
        raise TicketError(f"ticket {path} is not a JSON object")
    return body


def peek(dump_dir: str, ticket_id: str, now: float | None = None) -> dict:
    """The ticket, if it exists, is unused and has not expired (it stays unused)."""
    path = _path(dump_dir, ticket_id, ".json")
    try:
        body = _read(path)
    except FileNotFoundError:
        raise TicketError(f"no ticket {ticket_id} on this edge (never issued, already used, or swept "
                          "after it expired)") from None
    except (OSError, ValueError) as exc:
        raise TicketError(f"ticket {ticket_id} cannot be read: {exc}") from None
    now = time.time() if now is None else now
    if body.get("id") != ticket_id or body.get("v") != 1:
        raise TicketError(f"ticket {ticket_id} is not a version 1 ticket of that ID")
    if not isinstance(body.get("expires"), (int, float)) or body["expires"] < now:
        raise TicketError(f"ticket {ticket_id} expired: prepare the target again")
    return body


def claim(dump_dir: str, ticket_id: str, now: float | None = None) -> dict:
    """Take the ticket for this stream: a second claim of it is refused (the rename is atomic)."""
    body = peek(dump_dir, ticket_id, now)
    path = _path(dump_dir, ticket_id, ".json")
    try:
        os.rename(path, _path(dump_dir, ticket_id, ".used"))
    except FileNotFoundError:
        raise TicketError(f"ticket {ticket_id} was used already") from None
    return body


def check_docker_tls(tls, writable: list[str] = ()) -> None:
    """The ticket's docker_tls, or TicketError: DockerTLSOptions' fields only, each unset (None) or of its
    type (a string "false" would be true: tcp_without_tls, plain HTTP to a root port), the files absolute
    paths (the receiver's working directory is not the prepare's) whose real path is under none of
    ``writable`` (the directories streams write: a certificate there would be a sender's to choose)."""
    if tls is None:
        return
    if not isinstance(tls, dict):
        raise TicketError("restore docker_tls must be an object of the TLS options")
    known = {f.name: f.type for f in fields(DockerTLSOptions)}
    for key, value in tls.items():
        if key not in known:
            raise TicketError(f"restore docker_tls {key!r} is not a TLS option ({', '.join(known)})")
        if value is None:
            continue
        if known[key] == "bool" and not isinstance(value, bool):
            raise TicketError(f"restore docker_tls {key} must be true or false, not {value!r}")
        if known[key] != "bool" and not isinstance(value, str):
            raise TicketError(f"restore docker_tls {key} must be a string, not {value!r}")
        if known[key] != "bool" and "\0" in value:
            raise TicketError(f"restore docker_tls {key} {value!r} holds a NUL")
        if key not in TLS_FILES:
            continue
        if not os.path.isabs(value):
            raise TicketError(f"restore docker_tls {key} {value!r} is not an absolute path")
        real = os.path.realpath(value)
        for w in writable:
            if _under(real, os.path.realpath(w)):
                raise TicketError(f"restore docker_tls {key} {value!r} lies under {w}, which streams write")


def check_restore(spec: dict | None, roots: dict[str, str], dump_dir: str, writable: list[str] = ()) -> dict | None:
    """The ticket's restore part, checked: the container by ID, the checkpoint where prepare put it, the Docker
    client's TLS settings (``writable``: receiver.json's allowed_roots, see check_docker_tls)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise TicketError("the ticket's restore part is not an object")
    name, cid = spec.get("name"), spec.get("container_id")
    if not isinstance(name, str) or not SERVICE_NAME.match(name):
        raise TicketError(f"restore name {name!r} is not a container name")
    if not isinstance(cid, str) or not CONTAINER_ID.match(cid):
        raise TicketError(f"restore container_id {cid!r} is not a full container ID")
    ckpt = roots.get("checkpoint")
    want_parent = os.path.realpath(os.path.join(dump_dir, f"{name}.restore"))
    if not ckpt or os.path.dirname(ckpt) != want_parent:
        raise TicketError(f"the checkpoint root {ckpt!r} is not under {want_parent}, where the target's "
                          "prepare puts it")
    for key in ("address", "interface", "docker_host"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise TicketError(f"restore {key} must be a string")
    check_docker_tls(spec.get("docker_tls"), writable)
    if spec.get("health") is not None and not isinstance(spec["health"], dict):
        raise TicketError("restore health must be an object")
    return {**spec, "checkpoint_dir": ckpt, "state_dir": dump_dir}
