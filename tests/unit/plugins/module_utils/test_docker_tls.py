# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``tcp://`` Docker endpoints with TLS, against a real TLS server on loopback (issue 24).

The server plays ``dockerd --tlsverify -H tcp://127.0.0.1:PORT`` as Docker 29 does: TLS 1.2+, a client
certificate signed by its CA required, ``GET /version`` (MinAPIVersion 1.44) and ``GET /_ping``, and,
like Go's TLS listener, a plain HTTP request answered "400 Client sent an HTTP request to an HTTPS
server.". The certificates are made here with ``cryptography``; nothing leaves loopback.
"""
from __future__ import annotations

import json
import socket
import socketserver
import ssl
import threading

import pytest
from fakes import container, run_module
from tls_pki import CA

from ansible_collections.edgemig.migration.plugins.module_utils.docker import docker_api as d, switchover
from ansible_collections.edgemig.migration.plugins.module_utils.receiver import ticket
from ansible_collections.edgemig.migration.plugins.modules import edge_container_info

DOCKER_29 = {"Version": "29.0.1", "ApiVersion": "1.52", "MinAPIVersion": "1.44", "Os": "linux"}


class TLSDaemon(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """dockerd --tlsverify on 127.0.0.1: every request and the client certificate's CN it came with."""
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, ca: CA, server_names: list[str]):
        self.cert, self.key = ca.issue("dockerd", server_names, server=True)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(self.cert, self.key)
        self.context.load_verify_locations(cafile=ca.path)
        self.context.verify_mode = ssl.CERT_REQUIRED  # --tlsverify: the client shows a certificate of the CA
        self.requests: list[tuple[str, str | None]] = []
        self.connections = 0
        super().__init__(("127.0.0.1", 0), TLSHandler)
        self.url = f"tcp://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class TLSHandler(socketserver.BaseRequestHandler):
    def handle(self):
        srv: TLSDaemon = self.server
        srv.connections += 1
        sock = self.request
        sock.settimeout(5)
        first = sock.recv(1, socket.MSG_PEEK)
        if first != b"\x16":  # not a TLS handshake: Go's net/http answers this, and so dockerd does
            sock.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
            return
        try:
            tls = srv.context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            return  # the handshake failed (an unknown CA, no client certificate): the client sees why
        with tls:
            peer = tls.getpeercert() or {}
            cn = dict(x[0] for x in peer.get("subject", ())).get("commonName")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(65536)
                if not chunk:
                    return
                data += chunk
            method, path = data.split(b" ", 2)[:2]
            srv.requests.append((f"{method.decode()} {path.decode()}", cn))
            status, body = self.answer(path.decode().split("?")[0])
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            tls.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                        f"Api-Version: 1.52\r\nConnection: close\r\n\r\n".encode() + payload)

    @staticmethod
    def answer(path: str):
        if path == "/version":
            return 200, DOCKER_29
        if path == "/_ping":
            return 200, b"OK"
        if path == "/v1.45/info":
            return 200, {"ServerVersion": "29.0.1", "Driver": "overlay2"}
        if path == "/v1.45/containers/web/json":
            return 200, container("web")
        return 404, {"message": "page not found"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = CA(directory, "edge-ca")
    client_cert, client_key = ca.issue("controller", [], server=False)
    return {"dir": directory, "ca": ca, "client_cert": client_cert, "client_key": client_key,
            "other_ca": CA(directory, "someone-elses-ca")}


@pytest.fixture
def daemon(pki):
    srv = TLSDaemon(pki["ca"], ["127.0.0.1", "localhost"])
    yield srv
    srv.shutdown()
    srv.server_close()


def verified(pki, **kw) -> d.DockerTLS:
    values = {"validate_certs": True, "ca_path": pki["ca"].path, "client_cert": pki["client_cert"],
              "client_key": pki["client_key"]}
    return d.DockerTLS(**{**values, **kw})


def test_verified_tls_negotiates_with_docker_29_and_shows_the_client_certificate(daemon, pki):
    api = d.DockerAPI(daemon.url, timeout=10, tls=verified(pki))
    assert api.info()["ServerVersion"] == "29.0.1"
    assert api.api_version == "1.45"  # Docker 29's MinAPIVersion 1.44 met over TLS too
    assert api.inspect_container("web")["Name"] == "/web"
    assert daemon.requests == [("GET /version", "controller"), ("GET /v1.45/info", "controller"),
                               ("GET /v1.45/containers/web/json", "controller")]


def test_a_daemon_certificate_of_another_ca_is_refused_with_a_clear_error(daemon, pki):
    api = d.DockerAPI(daemon.url, timeout=10, tls=verified(pki, ca_path=pki["other_ca"].path))
    with pytest.raises(d.DockerAPIError) as err:
        api.info()
    msg = str(err.value)
    assert err.value.status == 0 and "did not verify" in msg and "is ca_path" in msg
    assert pki["other_ca"].path in msg and daemon.url in msg
    assert daemon.requests == []  # nothing was asked of a daemon whose certificate did not verify


def test_a_certificate_for_another_name_is_refused_unless_tls_hostname_names_it(pki):
    srv = TLSDaemon(pki["ca"], ["docker.edge1.example"])
    try:
        with pytest.raises(d.DockerAPIError, match="did not verify.*(Hostname mismatch|IP address mismatch)"):
            d.DockerAPI(srv.url, timeout=10, tls=verified(pki)).info()
        api = d.DockerAPI(srv.url, timeout=10, tls=verified(pki, tls_hostname="docker.edge1.example"))
        assert api.info()["Driver"] == "overlay2"
    finally:
        srv.shutdown()
        srv.server_close()


def test_tls_without_verification_encrypts_but_takes_any_daemon_certificate(daemon, pki):
    """``tls: true`` (docker --tls): encrypted, the daemon not checked; still the client's certificate."""
    tls = d.DockerTLS(tls=True, ca_path=pki["other_ca"].path, client_cert=pki["client_cert"],
                      client_key=pki["client_key"])
    assert d.DockerAPI(daemon.url, timeout=10, tls=tls).info()["ServerVersion"] == "29.0.1"
    assert daemon.requests[-1] == ("GET /v1.45/info", "controller")


def test_a_tlsverify_daemon_refuses_a_client_without_its_certificate(daemon, pki):
    api = d.DockerAPI(daemon.url, timeout=10, tls=d.DockerTLS(validate_certs=True, ca_path=pki["ca"].path))
    with pytest.raises(d.DockerAPIError) as err:
        api.info()
    assert err.value.status == 0 and daemon.url in str(err.value)
    assert "asks for one, set client_cert and client_key" in str(err.value)
    assert daemon.requests == []


def test_plain_http_to_the_tls_port_fails_naming_tls(daemon):
    api = d.DockerAPI(daemon.url, timeout=10, tls=d.DockerTLS(tcp_without_tls=True))
    with pytest.raises(d.DockerAPIError) as err:
        api.info()
    assert err.value.status == 400 and "Client sent an HTTP request to an HTTPS server" in err.value.message
    assert "speaks TLS: set validate_certs: true" in err.value.message


def test_tcp_without_tls_is_refused_before_connecting(daemon):
    with pytest.raises(ValueError, match="without TLS: whoever reaches a Docker API port is root"):
        d.DockerAPI(daemon.url)
    with pytest.raises(ValueError, match="contradicts"):
        d.DockerAPI(daemon.url, tls=d.DockerTLS(validate_certs=True, tcp_without_tls=True))
    assert daemon.connections == 0


@pytest.mark.parametrize("url, tls, words", [
    ("tcp://127.0.0.1", d.DockerTLS(validate_certs=True), "tcp://HOST:PORT"),
    ("tcp://127.0.0.1:2376/x", d.DockerTLS(validate_certs=True), "tcp://HOST:PORT"),
    ("unix:///run/docker.sock", d.DockerTLS(tls=True), "tcp:// endpoints only"),
    ("ssh://edge1", d.DockerTLS(), "not a unix:// socket"),
])
def test_endpoints_and_settings_that_do_not_go_together(url, tls, words):
    with pytest.raises(ValueError, match=words):
        d.DockerAPI(url, tls=tls)


def test_unreadable_certificate_files_are_named(pki, tmp_path):
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ValueError, match=f"ca_path '{missing}'"):
        d.DockerAPI("tcp://127.0.0.1:2376", tls=d.DockerTLS(validate_certs=True, ca_path=missing))
    with pytest.raises(ValueError, match="go together"):
        d.DockerAPI("tcp://127.0.0.1:2376", tls=d.DockerTLS(validate_certs=True, client_cert=pki["client_cert"]))


def test_the_modules_take_the_tls_options(daemon, pki):
    """Through module_common.DOCKER_ARGS: the options every module of the docker action group has."""
    failed, res = run_module(edge_container_info, {
        "name": "web", "docker_host": daemon.url, "validate_certs": True, "ca_path": pki["ca"].path,
        "client_cert": pki["client_cert"], "client_key": pki["client_key"]})
    assert not failed, res
    assert res["container"]["exists"] and res["docker"]["version"] == "29.0.1"
    assert [r[1] for r in daemon.requests] == ["controller"] * 3


def test_the_modules_read_the_docker_cli_environment(daemon, pki, tmp_path, monkeypatch):
    """DOCKER_TLS_VERIFY and DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem) as the docker CLI reads them."""
    certs = tmp_path / "docker-certs"
    certs.mkdir()
    for src, name in ((pki["ca"].path, "ca.pem"), (pki["client_cert"], "cert.pem"), (pki["client_key"], "key.pem")):
        (certs / name).write_bytes(open(src, "rb").read())
    monkeypatch.setenv("DOCKER_HOST", daemon.url)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
    failed, res = run_module(edge_container_info, {"name": "web"})
    assert not failed, res
    assert res["container"]["exists"] and daemon.requests[0] == ("GET /version", "controller")


def test_the_target_restores_through_the_endpoint_its_ticket_names(daemon, pki, tmp_path):
    """docker_checkpoint_restore's prepare writes its TLS settings into the ticket; the receiver's client
    (switchover.docker_client) is made from them, and the ticket check refuses anything but plain values."""
    spec = {"docker_host": daemon.url, "docker_tls": verified(pki).as_dict()}
    assert switchover.docker_client(spec).info()["ServerVersion"] == "29.0.1"
    bad = {"name": "web", "container_id": "a" * 64, "docker_tls": {"ca_path": ["x"]}}
    dump = str(tmp_path)
    with pytest.raises(ticket.TicketError, match="docker_tls"):
        ticket.check_restore(bad, {"checkpoint": f"{dump}/web.restore/ckpt"}, dump)
