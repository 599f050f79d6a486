# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Restore and address switch-over, run by the receiver on the target the
moment the sender committed (no round trip through Ansible on the downtime
path), and fencing when that fails. Standard library only: it is shipped
with the receiver.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import (
    DEFAULT_DOCKER_HOST,
    DockerAPI,
    DockerAPIError,
    DockerTLS,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.garp import send_garp
from ansible_collections.edgemig.migration.plugins.module_utils.docker.health import wait_healthy
from ansible_collections.edgemig.migration.plugins.module_utils.docker.tmpfs_restore import (
    discard,
    restore_parent,
    start_from_checkpoint,
)


class SwitchoverError(Exception):
    pass


def _ip(*args: str) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SwitchoverError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def interface_exists(name: str) -> bool:
    """Whether ``name`` is an interface of this host's network namespace (the one check of it:
    the source's preflight and the receiver's start both ask here).

    ``if_nametoindex`` asks the kernel for the caller's namespace (``/sys/class/net``
    may show another one, see design.md's lab notes).
    """
    try:
        socket.if_nametoindex(name)
    except (OSError, ValueError):
        return False
    return True


def address_present(interface: str, address: str) -> tuple[bool, str]:
    links = json.loads(_ip("-j", "addr", "show", "dev", interface) or "[]")
    present = any(a.get("local") == address for link in links for a in link.get("addr_info", []))
    return present, (links[0].get("address", "") if links else "")


def set_address(interface: str, address: str, present: bool, prefix: int = 32, garp_count: int = 3) -> bool:
    """Add or remove the service address; returns whether anything changed."""
    have, mac = address_present(interface, address)
    changed = have != present
    if changed:
        _ip("addr", "add" if present else "del", f"{address}/{prefix}", "dev", interface)
    if present and garp_count:
        send_garp(interface, mac, address, garp_count)
    return changed


class DockerReady(threading.Thread):
    """What the restore needs from Docker besides the container, asked while the source still serves.

    A client that has negotiated its API version (``GET /version``) and Docker's data root
    (``GET /info``: Docker 20.10 runs ``runc --version`` and ``docker-init --version`` for it,
    ~10-20 ms): neither changes while dockerd runs, and both were on the downtime path
    (docs/benchmarks.md, "The floor under the restore"). Started when the receiver starts,
    long before the freeze; one that failed or has not finished leaves the restore to ask itself.
    """

    def __init__(self, spec: dict):
        super().__init__(name="edgemig-docker-ready", daemon=True)
        self.spec = spec
        self.api: DockerAPI | None = None
        self.docker_root: str | None = None
        self.start()

    def run(self) -> None:
        try:
            api = docker_client(self.spec)
            root = api.info()["DockerRootDir"]
        except Exception:  # the restore asks again and reports what Docker says then
            return
        self.api, self.docker_root = api, root

    def ready(self) -> tuple[DockerAPI | None, str | None]:
        """(client, data root) when asked in time, else (None, None); never waits."""
        if self.is_alive():
            return None, None
        return self.api, self.docker_root


def prepared_inspect(api: DockerAPI, spec: dict) -> dict:
    """The inspect of the container the ticket names, checked: it exists under the service's name and
    is not running (a running one would only answer "already started": never a restore)."""
    ref = spec.get("container_id") or spec["name"]
    inspect = api.inspect_container(ref)
    if inspect is None:
        raise SwitchoverError(f"container {ref} of {spec['name']!r} does not exist here: prepare the target again")
    if (inspect.get("Name") or "").lstrip("/") != spec["name"]:
        raise SwitchoverError(f"container {ref} is not {spec['name']!r}: refusing to restore into it")
    if (inspect.get("State") or {}).get("Running"):
        raise SwitchoverError(f"container {spec['name']!r} already runs here: not restored from its checkpoint")
    return inspect


NEVER_STARTED = "0001-01-01T00:00:00Z"


def give_back_prepared(spec: dict, api: DockerAPI | None = None) -> bool:
    """Remove the container the ticket's prepare created, if it was never started: the stream it waited
    for ended before ``verified`` (the sender gave up, was killed, or its edge went down: a parked move
    whose controller died ends so). Its ticket is used, so nothing can restore into it any more, and a
    later prepare would replace it; removing it now leaves nothing behind. Only that container (by ID,
    under the service's name), only never started (a copy that ever ran may hold state); best effort:
    True when removed."""
    if not spec.get("container_id"):     # by its ID only: never whatever now holds the name
        return False
    try:
        api = api or docker_client(spec)
        state = prepared_inspect(api, spec).get("State") or {}
        if state.get("Status") != "created" or state.get("StartedAt", NEVER_STARTED) != NEVER_STARTED:
            return False
        removed = api.remove_container(spec["container_id"], force=False)
        if removed and spec.get("state_dir"):   # and what the stream had put where it would restore from
            shutil.rmtree(restore_parent(spec["state_dir"], spec["name"]), ignore_errors=True)
        return removed
    except Exception:  # the recovery sees it and stands it down; the receiver's own failure is what is said
        return False


def docker_client(spec: dict) -> DockerAPI:
    """The target's Docker as the ticket names it: the endpoint and TLS settings its prepare used."""
    return DockerAPI(spec.get("docker_host") or DEFAULT_DOCKER_HOST, tls=DockerTLS.from_dict(spec.get("docker_tls")))


def prepared_container(api: DockerAPI, spec: dict) -> str:
    """The ID of :func:`prepared_inspect`'s container."""
    return prepared_inspect(api, spec)["Id"]


def restore_and_switch(spec: dict, ready: DockerReady | None = None) -> dict:
    """``spec`` (from the ticket): docker_host, docker_tls, name, container_id, checkpoint_dir (the images
    on the dump tmpfs), health, address, interface. ``ready``: the receiver's :class:`DockerReady`, if any."""
    api, docker_root = ready.ready() if ready is not None else (None, None)
    api = api or docker_client(spec)
    t0 = time.monotonic()
    try:
        inspect = prepared_inspect(api, spec)
        cid = inspect["Id"]
        criu = start_from_checkpoint(api, cid, spec["checkpoint_dir"], inspect=inspect,
                                     docker_root=docker_root)
    except DockerAPIError as exc:
        raise SwitchoverError(f"restore of {spec['name']!r} from its checkpoint failed: {exc.message}") from None
    except OSError as exc:
        raise SwitchoverError(f"restore of {spec['name']!r} from its checkpoint failed: {exc}") from None
    restore_s = time.monotonic() - t0
    ok, health_s, reason = wait_healthy(spec.get("health"), api, cid)
    if not ok:
        raise SwitchoverError(f"{spec['name']!r} was restored but its health check failed: {reason}")
    t1 = time.monotonic()
    if spec.get("address") and spec.get("interface"):
        set_address(spec["interface"], spec["address"], True)
    out = {"restore_s": round(restore_s, 4), "health_s": round(health_s, 4),
           "switch_s": round(time.monotonic() - t1, 4)}
    if criu:
        out["criu_restore"] = criu  # CRIU's own share of restore_s (the rest is Docker's and containerd's)
    return out


def fence(spec: dict) -> bool:
    """Make sure this host does not serve ``spec['name']``: container removed, address dropped.

    Called by the receiver when the restore, the health check or the address
    move failed past the commit point. Only a target that fenced itself lets
    the source roll back; returns whether it is certain (both steps done).
    The checkpoint images go too: the source's own copy is the one that counts now.
    """
    ok = True
    discard(spec.get("checkpoint_dir"))
    try:
        api = docker_client(spec)
        # By ID when the ticket names one: the fence removes the container prepared for this
        # migration, never another one that happens to carry the name.
        ref = spec.get("container_id") or spec["name"]
        api.remove_container(ref, force=True)
        ok = api.inspect_container(ref) is None
    except (DockerAPIError, OSError, ValueError):
        ok = False
    if spec.get("address") and spec.get("interface"):
        try:
            set_address(spec["interface"], spec["address"], False)
        except (SwitchoverError, OSError):
            ok = False
    return ok
