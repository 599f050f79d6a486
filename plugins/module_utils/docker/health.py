# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Health checks of a catalog service, run on the host that runs it."""
from __future__ import annotations

import http.client
import socket
import time

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPI, DockerAPIError


def container_endpoint(inspect: dict | None, port: int) -> tuple[str, int] | None:
    """(container IP, container port) behind published host ``port``, or None (no own IP: host network).

    Why not 127.0.0.1:<published port>: Docker's userland proxy accepts that
    connection even when nothing listens inside the container, so a restored
    but dead service would pass. The container's own address only answers
    when the service does. A ``port`` that is not a published host port is
    taken as the container port.
    """
    net = (inspect or {}).get("NetworkSettings") or {}
    ip = net.get("IPAddress") or next((n.get("IPAddress") for n in (net.get("Networks") or {}).values()
                                       if n.get("IPAddress")), None)
    if not ip:
        return None
    for key, binds in ((inspect.get("HostConfig") or {}).get("PortBindings") or {}).items():
        cport, _unused, proto = key.partition("/")
        if proto in ("tcp", "") and any(str(b.get("HostPort")) == str(port) for b in binds or []):
            return ip, int(cport)
    return ip, int(port)


def check_once(health: dict, api: DockerAPI, container: str, host: str = "127.0.0.1") -> str | None:
    """None when healthy, else a short reason.

    tcp and http checks connect to the container's own address and port
    (``container_endpoint``); ``host`` and the published port are used only
    for a container without an address of its own (host network).
    """
    kind = health.get("type", "tcp")
    port = health.get("port")
    try:
        if kind in ("http", "tcp"):
            inside = container_endpoint(api.inspect_container(container), int(port))
            if inside is not None:
                host, port = inside
        if kind == "http":
            conn = http.client.HTTPConnection(host, int(port), timeout=2)
            try:
                conn.request("GET", health.get("path", "/"))
                resp = conn.getresponse()
                resp.read()
            finally:
                conn.close()
            return None if resp.status < 400 else f"HTTP {resp.status}"
        if kind == "tcp":
            with socket.create_connection((host, int(port)), timeout=2):
                return None
        if kind == "cmd":
            code, out = api.exec_run(container, list(health["command"]), timeout=10)
            return None if code == 0 else f"exit {code}: {out[-200:].decode(errors='replace')}"
        return f"unknown health check type {kind!r}"
    except (OSError, http.client.HTTPException, DockerAPIError) as exc:
        return str(exc)


def wait_healthy(health: dict | None, api: DockerAPI, container: str, timeout: float | None = None,
                 interval: float = 0.02) -> tuple[bool, float, str | None]:
    """Poll until healthy; returns (ok, seconds waited, last reason)."""
    t0 = time.monotonic()
    if not health:
        return True, 0.0, None
    limit = float(timeout if timeout is not None else health.get("timeout", 30))
    reason = None
    while True:
        reason = check_once(health, api, container)
        if reason is None:
            return True, time.monotonic() - t0, None
        inspect = api.inspect_container(container)
        if inspect is None or not inspect["State"].get("Running"):
            return False, time.monotonic() - t0, "container is not running"
        if time.monotonic() - t0 > limit:
            return False, time.monotonic() - t0, reason
        time.sleep(interval)
