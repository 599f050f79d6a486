# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Engine API client against a small HTTP server on a unix socket in tmp (no Docker, no root).

The server answers the unversioned ``GET /version`` as the daemon it plays (``Handler.daemon``:
Docker 20.10 by default) and, as dockerd does, refuses a versioned path outside its API range.
"""
from __future__ import annotations

import json
import re
import socketserver
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.docker import docker_api as d

DOCKER_20_10 = {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}
DOCKER_26 = {"Version": "26.1.5+dfsg1", "ApiVersion": "1.45", "MinAPIVersion": "1.24"}
DOCKER_29 = {"Version": "29.0.1", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}


def _key(version):
    return tuple(int(p) for p in version.split("."))


class Handler(BaseHTTPRequestHandler):
    routes: dict = {}
    seen: list = []
    daemon: dict = DOCKER_20_10

    def _answer(self):
        path = self.path.split("?")[0]
        if (self.command, path) == ("GET", "/version"):
            return Handler.routes.get(("GET", "/version"), (200, dict(Handler.daemon, Os="linux")))
        m = re.match(r"^/v(\d+\.\d+)/", path)
        if m and _key(m.group(1)) < _key(Handler.daemon["MinAPIVersion"]):
            return 400, {"message": f"client version {m.group(1)} is too old. Minimum supported API version is "
                                    f"{Handler.daemon['MinAPIVersion']}, please upgrade your client to a newer version"}
        if m and _key(m.group(1)) > _key(Handler.daemon["ApiVersion"]):
            return 400, {"message": f"client version {m.group(1)} is too new. "
                                    f"Maximum supported API version is {Handler.daemon['ApiVersion']}"}
        return Handler.routes.get((self.command, path), (404, {"message": "page not found"}))

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        Handler.seen.append((self.command, self.path, body))
        status, payload = self._answer()
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
    # socketserver listens with a backlog of 5: eight clients connecting at once on a busy machine
    # were refused now and then (test_concurrent_first_calls_negotiate_once).
    request_queue_size = 64

    def get_request(self):
        sock, _addr = super().get_request()
        return sock, ("local", 0)


@pytest.fixture
def api(tmp_path):
    Handler.routes, Handler.seen, Handler.daemon = {}, [], DOCKER_20_10
    path = str(tmp_path / "docker.sock")
    srv = Server(path, Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield d.DockerAPI(f"unix://{path}", timeout=5)
    srv.shutdown()
    srv.server_close()


V = "/v1.41"   # what the client negotiates with Docker 20.10


def test_socket_path():
    assert d.socket_path("unix:///run/docker.sock") == "/run/docker.sock"
    assert d.socket_path("/run/docker.sock") == "/run/docker.sock"
    with pytest.raises(ValueError, match="not a unix:// socket"):
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


# -- API version negotiation (issue 24) ------------------------------------------------------------

@pytest.mark.parametrize(("daemon", "expected"), [(DOCKER_29, "1.45"), (DOCKER_26, "1.45"), (DOCKER_20_10, "1.41")])
def test_the_version_is_asked_once_unversioned_and_every_path_carries_the_negotiated_one(api, daemon, expected):
    Handler.daemon = daemon
    for version in ("1.41", "1.45"):
        Handler.routes[("GET", f"/v{version}/containers/apache/json")] = (200, {"Id": "abc", "v": version})
        Handler.routes[("POST", f"/v{version}/containers/apache/start")] = (204, b"")
    assert api.inspect_container("apache") == {"Id": "abc", "v": expected}
    api.start_container("apache", checkpoint="edgemig")
    assert api.inspect_container("apache")["v"] == expected
    assert api.api_version == expected and api.version()["ApiVersion"] == daemon["ApiVersion"]
    paths = [p for _m, p, _b in Handler.seen]
    assert paths == ["/version", f"/v{expected}/containers/apache/json",
                     f"/v{expected}/containers/apache/start?checkpoint=edgemig", f"/v{expected}/containers/apache/json"]


def test_the_old_fixed_version_is_what_docker_29_refuses(api):
    # The failure the negotiation removes: a client pinned to 1.41 against Docker 29.
    Handler.daemon = DOCKER_29
    api._api_version = "1.41"
    with pytest.raises(d.DockerAPIError, match="client version 1.41 is too old. Minimum supported API version is 1.44"):
        api.info()


def test_negotiate_takes_the_lower_of_the_two_maxima():
    assert d.negotiate(DOCKER_29) == d.MAX_API_VERSION == "1.45"
    assert d.negotiate(DOCKER_20_10) == "1.41"
    assert d.negotiate({"ApiVersion": "1.43", "MinAPIVersion": "1.12"}) == "1.43"      # Docker 24
    # numbers, not strings: "1.9" < "1.41" < "1.100"
    assert d.version_tuple("1.9") < d.version_tuple("1.41") < d.version_tuple("1.100")
    assert d.negotiate({"ApiVersion": "1.100", "MinAPIVersion": "1.40"}) == "1.45"


@pytest.mark.parametrize(("doc", "words"), [
    ({"Version": "40.0", "ApiVersion": "1.70", "MinAPIVersion": "1.60"},
     ["Docker 40.0 at unix:///x speaks 1.60-1.70", "this client speaks API 1.41-1.45", "newer than"]),
    ({"Version": "19.03", "ApiVersion": "1.40", "MinAPIVersion": "1.12"},
     ["Docker 19.03 at unix:///x speaks 1.12-1.40", "Docker 20.10 (API 1.41) or newer is needed"]),
    ({"Version": "x"}, ["did not say which API version"]),
])
def test_a_daemon_outside_our_range_is_refused_naming_both_ranges(doc, words):
    with pytest.raises(d.DockerVersionError) as exc:
        d.negotiate(doc, "unix:///x")
    assert exc.value.status == 0 and all(w in str(exc.value) for w in words), str(exc.value)


def test_a_refused_daemon_gets_no_versioned_call_and_the_refusal_is_not_cached(api):
    Handler.daemon = {"Version": "40.0", "ApiVersion": "1.70", "MinAPIVersion": "1.60"}
    for _attempt in range(2):
        with pytest.raises(d.DockerVersionError, match="newer than edgemig.migration supports"):
            api.inspect_container("apache")
    assert [p for _m, p, _b in Handler.seen] == ["/version", "/version"]     # asked again: a fixed daemon is seen
    Handler.daemon = DOCKER_29
    Handler.routes[("GET", "/v1.45/info")] = (200, {"Driver": "overlay2"})
    assert api.info() == {"Driver": "overlay2"}


def test_a_version_answer_that_is_not_a_document_is_an_error(api):
    Handler.routes[("GET", "/version")] = (200, b"hello")
    with pytest.raises(d.DockerVersionError, match="not a version document"):
        api.info()


def test_no_daemon_is_still_status_0_at_the_negotiation(tmp_path):
    api = d.DockerAPI(f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(d.DockerAPIError) as exc:
        api.inspect_container("x")
    assert exc.value.status == 0 and "cannot talk to Docker" in str(exc.value)
    assert not isinstance(exc.value, d.DockerVersionError)


def test_making_a_client_asks_nothing(api):
    d.DockerAPI(api.base_url)
    assert Handler.seen == []


def test_concurrent_first_calls_negotiate_once(api):
    Handler.daemon = DOCKER_29
    Handler.routes[("GET", "/v1.45/info")] = (200, {"ok": 1})
    errors = []

    def call():
        try:
            api.info()
        except Exception as exc:  # a failed call must fail the test with its cause, not vanish in the thread
            errors.append(exc)
    threads = [threading.Thread(target=call) for _n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p for _m, p, _b in Handler.seen].count("/version") == 1 and len(Handler.seen) == 9
