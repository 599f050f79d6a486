# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Health checks against real listeners on loopback (no Docker: a fake API for cmd checks)."""
from __future__ import annotations

import http.server
import socket
import threading

import pytest
from fakes import FakeDockerAPI, container

from ansible_collections.edgemig.migration.plugins.module_utils.docker import health


@pytest.fixture
def http_port():
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ok" else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


_HELD: list[socket.socket] = []


def free_port() -> int:
    """A loopback port nothing listens on, for the whole run: bound here and never listened on, so no
    other process can listen on it and no connect picks it as its own source port (a connect from
    port P to P on loopback connects to itself: seen once in make check, a dead container "healthy")."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _HELD.append(s)
    return s.getsockname()[1]


def test_http_and_tcp(http_port):
    api = FakeDockerAPI()
    assert health.check_once({"type": "http", "port": http_port, "path": "/ok"}, api, "c") is None
    assert health.check_once({"type": "http", "port": http_port, "path": "/bad"}, api, "c") == "HTTP 503"
    assert health.check_once({"type": "tcp", "port": http_port}, api, "c") is None
    assert "refused" in health.check_once({"type": "tcp", "port": free_port()}, api, "c").lower()
    assert health.check_once({"type": "smtp", "port": 25}, api, "c") == "unknown health check type 'smtp'"


def test_cmd_check_runs_in_the_container():
    api = FakeDockerAPI()
    assert health.check_once({"type": "cmd", "command": ["mysqladmin", "ping"]}, api, "db") is None
    assert api.calls == [("exec", "db", ("mysqladmin", "ping"))]
    api.exec_run = lambda name, cmd, timeout=30: (1, b"x" * 300 + b"connect failed")
    reason = health.check_once({"type": "cmd", "command": ["false"]}, api, "db")
    assert reason.startswith("exit 1: ") and reason.endswith("connect failed") and len(reason) == len("exit 1: ") + 200


def test_wait_healthy_without_a_check_is_at_once():
    assert health.wait_healthy(None, FakeDockerAPI(), "c") == (True, 0.0, None)


def test_wait_healthy_gives_up_when_the_container_died():
    api = FakeDockerAPI(containers={"c": container("c", running=False)})
    ok, _secs, reason = health.wait_healthy({"type": "tcp", "port": free_port()}, api, "c", timeout=5)
    assert not ok and reason == "container is not running"


def test_wait_healthy_times_out_with_the_last_reason():
    api = FakeDockerAPI(containers={"c": on_loopback("c", free_port())})
    ok, secs, reason = health.wait_healthy({"type": "tcp", "port": 4004}, api, "c", timeout=0.1)
    assert not ok and secs >= 0.1 and "refused" in reason.lower()


def on_loopback(name: str, container_port: int, host_port: int = 4004) -> dict:
    """A container whose own address is 127.0.0.1 (where the test's listener is), port published as host_port."""
    c = container(name)
    c["NetworkSettings"] = {"IPAddress": "", "Networks": {"bridge": {"IPAddress": "127.0.0.1"}}}
    c["HostConfig"]["PortBindings"] = {f"{container_port}/tcp": [{"HostIp": "", "HostPort": str(host_port)}]}
    return c


def test_wait_healthy_succeeds_once_the_service_answers(http_port):
    api = FakeDockerAPI(containers={"c": on_loopback("c", http_port)})
    ok, _secs, reason = health.wait_healthy({"type": "http", "port": 4004, "path": "/ok"}, api, "c")
    assert ok and reason is None


def test_tcp_and_http_go_to_the_container_not_the_published_port(http_port):
    """The published port (userland proxy) may accept with nothing inside: ask the container's own address."""
    api = FakeDockerAPI(containers={"c": on_loopback("c", http_port, host_port=free_port())})
    published = int(api.containers["c"]["HostConfig"]["PortBindings"][f"{http_port}/tcp"][0]["HostPort"])
    assert health.container_endpoint(api.containers["c"], published) == ("127.0.0.1", http_port)
    assert health.check_once({"type": "tcp", "port": published}, api, "c") is None
    assert health.check_once({"type": "http", "port": published, "path": "/ok"}, api, "c") is None
    # Listening on the published port but not in the container: unhealthy.
    dead = on_loopback("d", free_port(), host_port=http_port)
    api.containers["d"] = dead
    assert "refused" in health.check_once({"type": "tcp", "port": http_port}, api, "d").lower()
    assert health.container_endpoint({"NetworkSettings": {"IPAddress": ""}}, 80) is None
