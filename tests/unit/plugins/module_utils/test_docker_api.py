# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Engine API client against a small HTTP server on a unix socket in tmp (no Docker, no root)."""
from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils import docker_api as d


class Handler(BaseHTTPRequestHandler):
    routes: dict = {}
    seen: list = []

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        Handler.seen.append((self.command, self.path, body))
        status, payload = Handler.routes.get((self.command, self.path.split("?")[0]), (404, {"message": "page not found"}))
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, *a):
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        sock, _addr = super().get_request()
        return sock, ("local", 0)


@pytest.fixture
def api(tmp_path):
    Handler.routes, Handler.seen = {}, []
    path = str(tmp_path / "docker.sock")
    srv = Server(path, Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield d.DockerAPI(f"unix://{path}", timeout=5)
    srv.shutdown()
    srv.server_close()


V = f"/v{d.API_VERSION}"


def test_socket_path():
    assert d.socket_path("unix:///run/docker.sock") == "/run/docker.sock"
    assert d.socket_path("/run/docker.sock") == "/run/docker.sock"
    with pytest.raises(ValueError, match="only unix:// sockets"):
        d.socket_path("tcp://127.0.0.1:2375")


def test_inspect_found_and_missing(api):
    Handler.routes[("GET", f"{V}/containers/apache/json")] = (200, {"Id": "abc"})
    assert api.inspect_container("apache") == {"Id": "abc"}
    assert api.inspect_container("ghost") is None
    assert api.inspect_image("repo/img:tag") is None
    assert Handler.seen[-1][1] == f"{V}/images/repo%2Fimg%3Atag/json"     # the name is one path segment


def test_errors_carry_status_and_the_daemon_message(api):
    Handler.routes[("POST", f"{V}/containers/apache/start")] = (500, {"message": " custom checkpointdir is not supported\n"})
    with pytest.raises(d.DockerAPIError) as exc:
        api.start_container("apache", checkpoint="cp1")
    assert exc.value.status == 500 and exc.value.message == "custom checkpointdir is not supported"
    assert str(exc.value) == "Docker API error 500: custom checkpointdir is not supported"
    assert Handler.seen[-1][1] == f"{V}/containers/apache/start?checkpoint=cp1"   # None params are dropped


def test_no_daemon_is_status_0(tmp_path):
    api = d.DockerAPI(f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(d.DockerAPIError) as exc:
        api.info()
    assert exc.value.status == 0 and "cannot talk to Docker" in str(exc.value)


def test_checkpoint_body_and_create(api):
    Handler.routes[("POST", f"{V}/containers/abc/checkpoints")] = (201, b"")
    Handler.routes[("POST", f"{V}/containers/create")] = (201, {"Id": "new"})
    api.create_checkpoint("abc", "cp1", "/dev/shm/x", exit_container=False)
    assert Handler.seen[-1][2] == {"CheckpointID": "cp1", "Exit": False, "CheckpointDir": "/dev/shm/x"}
    assert api.create_container("apache", {"Image": "sha256:x"}) == "new"
    assert Handler.seen[-1][1] == f"{V}/containers/create?name=apache"


def test_stop_already_stopped_and_remove_missing(api):
    Handler.routes[("POST", f"{V}/containers/apache/stop")] = (304, b"")
    api.stop_container("apache")                                      # 304: already stopped, fine
    assert api.remove_container("ghost") is False
    Handler.routes[("DELETE", f"{V}/containers/apache")] = (204, b"")
    assert api.remove_container("apache", volumes=True) is True
    assert Handler.seen[-1][1] == f"{V}/containers/apache?force=true&v=true"


def test_exec_run_demultiplexes_output(api):
    Handler.routes[("POST", f"{V}/containers/db/exec")] = (201, {"Id": "e1"})
    Handler.routes[("POST", f"{V}/exec/e1/start")] = (200, b"\1\0\0\0\0\0\0\3ok\n" + b"\2\0\0\0\0\0\0\4err\n")
    Handler.routes[("GET", f"{V}/exec/e1/json")] = (200, {"ExitCode": 3})
    assert api.exec_run("db", ["true"]) == (3, b"ok\nerr\n")


def test_demux_passes_unframed_output_through():
    assert d._demux(b"plain tty output") == b"plain tty output"
    assert d._demux(b"\1\0\0\0\0\0\0\2hi" + b"tail") == b"hitail"


def test_a_start_answered_304_is_an_error_unless_running_either_way_is_asked(api):
    # Docker answers 304 Not Modified to starting a container that already runs, and does nothing.
    Handler.routes[("POST", f"{V}/containers/web/start")] = (304, b"")
    with pytest.raises(d.DockerAPIError) as exc:
        api.start_container("web", checkpoint="edgemig")
    assert exc.value.status == 304
    assert exc.value.message == "container web is already running: not restored from its checkpoint"
    with pytest.raises(d.DockerAPIError, match="already running: not started by this call"):
        api.start_container("web")
    api.start_container("web", allow_running=True)                      # the caller wants it running, either way
    with pytest.raises(ValueError, match="never to a start from a checkpoint"):
        api.start_container("web", checkpoint="edgemig", allow_running=True)
    Handler.routes[("POST", f"{V}/containers/web/start")] = (204, b"")
    api.start_container("web", checkpoint="edgemig")                    # 204: started
