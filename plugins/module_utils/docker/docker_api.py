# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small Docker Engine API client over a unix socket, or TCP with TLS.

community.docker's client is private to that collection and the docker SDK
has no checkpoint API, so we speak the few endpoints we need ourselves:
inspect, create, start (optionally from a checkpoint), checkpoint create,
remove, images, info. Only the standard library is used so the modules run
on an edge host that has nothing but Python (and the receiver, which ships
this file, stays a bundle of plain sources).

The API version is negotiated as the docker CLI, the docker SDK (``version="auto"``)
and community.docker do: the daemon's unversioned ``GET /version`` is asked once per
client, and every call uses min(``MAX_API_VERSION``, the daemon's ``ApiVersion``).
Docker 25+ refuses the old fixed ``/v1.41`` ("client version 1.41 is too old.
Minimum supported API version is 1.44").

``tcp://host:port`` endpoints speak TLS as ``dockerd --tlsverify`` expects (:class:`DockerTLS`,
community.docker's option names). A Docker API port is root on its host, so a ``tcp://``
endpoint without TLS is refused unless the caller says so explicitly (``tcp_without_tls``).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any

from ansible_collections.edgemig.migration.plugins.module_utils.common.options import DockerTLSOptions

# The newest API version whose changes we checked against every endpoint and field this
# client and its callers use (Engine API version history, 1.42-1.45: nothing we send or read
# changed; 1.44 dropped image VirtualSize, 1.45 image Container/ContainerConfig, neither read
# here). 1.45 is Docker 26 (Debian 13, Ubuntu 24.04) and lies inside Docker 29's 1.44-1.52, so
# today's daemons all speak it. Raise it only after checking the history past 1.45 the same way.
MAX_API_VERSION = "1.45"
# The oldest: Docker 20.10, the only one the restore path (checkpoint dir link) has run on.
MIN_API_VERSION = "1.41"


class DockerAPIError(Exception):
    """An Engine API call failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"Docker API error {status}: {message}" if status else message)
        self.status = status
        self.message = message


class DockerVersionError(DockerAPIError):
    """The daemon speaks no API version this client supports (status 0: nothing was asked of it)."""

    def __init__(self, message: str):
        super().__init__(0, message)


def version_tuple(value: str) -> tuple[int, ...]:
    """``"1.44"`` -> ``(1, 44)``: API versions compare as numbers ("1.9" < "1.41")."""
    try:
        return tuple(int(part) for part in str(value).strip().split("."))
    except ValueError:
        raise ValueError(f"not an API version: {value!r}") from None


def negotiate(version_doc: dict, base_url: str = "") -> str:
    """The API version to use with a daemon whose ``GET /version`` answered ``version_doc``.

    min(MAX_API_VERSION, ApiVersion); a daemon whose MinAPIVersion is above our max, or whose
    ApiVersion is below our min, is refused with a message naming both ranges.
    """
    where = f" at {base_url}" if base_url else ""
    daemon_max = version_doc.get("ApiVersion")
    if not daemon_max:
        raise DockerVersionError(f"Docker{where} did not say which API version it speaks (no ApiVersion in "
                                 f"GET /version: {version_doc!r})")
    daemon_min = version_doc.get("MinAPIVersion") or daemon_max
    ours = f"this client speaks API {MIN_API_VERSION}-{MAX_API_VERSION}"
    theirs = f"Docker {version_doc.get('Version') or '?'}{where} speaks {daemon_min}-{daemon_max}"
    if version_tuple(daemon_min) > version_tuple(MAX_API_VERSION):
        raise DockerVersionError(f"{theirs}, {ours}: this Docker is newer than edgemig.migration supports "
                                 f"(its minimum API version is above our maximum); use a Docker whose "
                                 f"minimum API version is {MAX_API_VERSION} or lower")
    if version_tuple(daemon_max) < version_tuple(MIN_API_VERSION):
        raise DockerVersionError(f"{theirs}, {ours}: Docker 20.10 (API {MIN_API_VERSION}) or newer is needed")
    return min(daemon_max, MAX_API_VERSION, key=version_tuple)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class _TLSConnection(http.client.HTTPConnection):
    """TLS to ``host:port``, the certificate checked for ``server_name`` (tls_hostname, else the host)."""

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext, server_name: str):
        super().__init__(host, port, timeout=timeout)
        self._context = context
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)
        except BaseException:
            sock.close()
            raise


# Where Docker listens unless told otherwise (docker_host option, DOCKER_HOST).
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# The file names the docker CLI looks for in DOCKER_CERT_PATH (and ~/.docker).
CERT_PATH_FILES = {"ca_path": "ca.pem", "client_cert": "cert.pem", "client_key": "key.pem"}


@dataclass(frozen=True)
class DockerTLS(DockerTLSOptions):
    """How to reach a ``tcp://`` Docker (community.docker's option names; defaults in options.py).

    validate_certs: TLS, the daemon's certificate checked against ``ca_path`` (the system's CAs
    without it) and its name against ``tls_hostname`` (the docker_host's host without it); what
    ``dockerd --tlsverify`` and ``docker --tlsverify`` do. tls: TLS without checking the daemon
    (encrypted, not authenticated: anyone in the path can pose as the daemon). client_cert and
    client_key: the client's certificate, which ``--tlsverify`` daemons ask for. tcp_without_tls:
    plain HTTP to a ``tcp://`` port, refused unless true (whoever reaches that port is root).
    """

    @classmethod
    def from_dict(cls, values: dict | None) -> DockerTLS:
        """From module params or a ticket: the known keys only, unset (None) ones left at their defaults."""
        known = {k: v for k, v in (values or {}).items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(**known)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def enabled(self) -> bool:
        return self.tls or self.validate_certs

    def context(self) -> ssl.SSLContext:
        """The client's TLS context (raises ValueError naming a certificate file that will not load)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.validate_certs:
            try:
                if self.ca_path:
                    ctx.load_verify_locations(cafile=self.ca_path)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"ca_path {self.ca_path!r}: cannot load it as a CA certificate: {exc}") from None
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert or self.client_key:
            if not (self.client_cert and self.client_key):
                raise ValueError("client_cert and client_key go together: give both or neither")
            try:
                ctx.load_cert_chain(self.client_cert, self.client_key)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"client_cert {self.client_cert!r} / client_key {self.client_key!r}: cannot load "
                                 f"them as a certificate and its key: {exc}") from None
        return ctx


def tls_from_cert_path(cert_path: str | None, tls: DockerTLS) -> DockerTLS:
    """``tls`` with the files of a DOCKER_CERT_PATH directory (ca.pem, cert.pem, key.pem) where it names
    none itself, as the docker CLI reads them."""
    if not cert_path:
        return tls
    values = tls.as_dict()
    for key, name in CERT_PATH_FILES.items():
        if not values[key]:
            values[key] = os.path.join(cert_path, name)
    return DockerTLS(**values)


def socket_path(base_url: str) -> str:
    """``unix:///run/docker.sock`` -> ``/run/docker.sock``; other schemes are refused."""
    if base_url.startswith("unix://"):
        return base_url[len("unix://"):]
    if base_url.startswith("/"):
        return base_url
    raise ValueError(f"docker_host {base_url!r}: not a unix:// socket")


def tcp_address(base_url: str) -> tuple[str, int]:
    """``tcp://host:2376`` -> ``("host", 2376)`` (the port is required: 2375 and 2376 both occur)."""
    parsed = urllib.parse.urlsplit(base_url)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme != "tcp" or not parsed.hostname or port is None or parsed.path not in ("", "/"):
        raise ValueError(f"docker_host {base_url!r}: give tcp://HOST:PORT (Docker's TLS port is usually 2376)")
    return parsed.hostname, port


def check_endpoint(base_url: str, tls: DockerTLS) -> None:
    """Refuse an endpoint and TLS settings that do not go together, before anything is asked of it."""
    if base_url.startswith("tcp://"):
        tcp_address(base_url)
        if not tls.enabled and not tls.tcp_without_tls:
            raise ValueError(f"docker_host {base_url!r} without TLS: whoever reaches a Docker API port is root on "
                             "its host. Set validate_certs: true (with ca_path, client_cert and client_key, as for "
                             "dockerd --tlsverify), or tcp_without_tls: true on a network you trust")
        if tls.enabled and tls.tcp_without_tls:
            raise ValueError("tcp_without_tls: true contradicts tls / validate_certs: choose one")
        return
    socket_path(base_url)
    if tls.enabled:
        raise ValueError(f"docker_host {base_url!r}: tls and validate_certs are for tcp:// endpoints only")


class DockerAPI:
    """Blocking JSON client; one connection per call keeps it simple and thread-safe."""

    def __init__(self, base_url: str = DEFAULT_DOCKER_HOST, timeout: float = 120.0, tls: DockerTLS | None = None):
        self.base_url = base_url
        self.tls = tls or DockerTLS()
        check_endpoint(base_url, self.tls)
        self.path = socket_path(base_url) if not base_url.startswith("tcp://") else None
        # The TLS context once per client (its files are read here: a bad one is refused at once).
        self._ssl = self.tls.context() if self.tls.enabled else None
        self.timeout = timeout
        # Negotiated on the first call, not here: a client made for a refused request must not
        # have talked to Docker (tests/security), and module setup stays free of I/O.
        self._version_doc: dict | None = None
        self._api_version: str | None = None
        self._negotiate_lock = threading.Lock()

    @property
    def api_version(self) -> str:
        """The API version every call of this client uses (asks the daemon once)."""
        return self.negotiated_version()

    def negotiated_version(self) -> str:
        """:attr:`api_version`: ``GET /version`` on the first call, the cached answer after it."""
        if self._api_version is None:
            with self._negotiate_lock:
                if self._api_version is None:
                    _status, doc = self._send("GET", "/version", None, None, None, False)
                    if not isinstance(doc, dict):
                        raise DockerVersionError(f"Docker at {self.base_url} answered GET /version with "
                                                 f"{doc!r}, not a version document")
                    version = negotiate(doc, self.base_url)
                    self._version_doc, self._api_version = doc, version
        return self._api_version

    def request(self, method: str, path: str, body: Any = None, params: dict | None = None,
                timeout: float | None = None, raw: bool = False) -> Any:
        return self._call(method, path, body, params, timeout, raw)[1]

    def _call(self, method: str, path: str, body: Any = None, params: dict | None = None,
              timeout: float | None = None, raw: bool = False) -> tuple[int, Any]:
        """(HTTP status, decoded payload) of one call; a status >= 400 raises DockerAPIError.

        The status is there for the calls where a 3xx means something: Docker answers
        304 Not Modified to starting a running container or stopping a stopped one.
        """
        return self._send(method, f"/v{self.api_version}{path}", body, params, timeout, raw)

    def _send(self, method: str, url: str, body: Any, params: dict | None, timeout: float | None,
              raw: bool) -> tuple[int, Any]:
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection(timeout or self.timeout)
        try:
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except ssl.SSLCertVerificationError as exc:
            raise DockerAPIError(0, f"TLS: the certificate of Docker at {self.base_url} did not verify "
                                    f"({exc.verify_message}): is ca_path ({self.tls.ca_path or 'the system CAs'}) the "
                                    "CA that signed the daemon's certificate, and does the certificate name "
                                    f"{self.tls.tls_hostname or 'the host in docker_host'}?") from exc
        except ssl.SSLError as exc:
            if not self.tls.client_cert:  # a dockerd --tlsverify asks for one (TLS 1.3 may just close)
                hint = "no client certificate given: a dockerd --tlsverify asks for one, set client_cert and client_key"
            else:
                hint = "does the daemon speak TLS on this port, and does it accept client_cert?"
            raise DockerAPIError(0, f"TLS with Docker at {self.base_url} failed: {exc} ({hint})") from exc
        except (OSError, http.client.HTTPException) as exc:
            hint = " (a TLS port? it closed a plain HTTP request)" if self._plain_tcp else ""
            raise DockerAPIError(0, f"cannot talk to Docker at {self.base_url}: {exc}{hint}") from exc
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                message = json.loads(payload).get("message", "")
            except ValueError:
                message = payload.decode(errors="replace")
            message = message.strip()
            if self._plain_tcp and "HTTP request to an HTTPS server" in message:
                message += (f" Docker at {self.base_url} speaks TLS: set validate_certs: true with ca_path, "
                            "client_cert and client_key instead of tcp_without_tls")
            raise DockerAPIError(resp.status, message.strip())
        if raw:
            return resp.status, payload
        if not payload:
            return resp.status, None
        try:
            return resp.status, json.loads(payload)
        except ValueError:
            return resp.status, payload.decode(errors="replace")

    @property
    def _plain_tcp(self) -> bool:
        return self.path is None and self._ssl is None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.path is not None:
            return _UnixHTTPConnection(self.path, timeout)
        host, port = tcp_address(self.base_url)
        if self._ssl is None:
            return http.client.HTTPConnection(host, port, timeout=timeout)
        return _TLSConnection(host, port, timeout, self._ssl, self.tls.tls_hostname or host)

    def get(self, path: str, params: dict | None = None, timeout: float | None = None) -> Any:
        return self.request("GET", path, params=params, timeout=timeout)

    def post(self, path: str, body: Any = None, params: dict | None = None,
             timeout: float | None = None) -> Any:
        return self.request("POST", path, body=body, params=params, timeout=timeout)

    def delete(self, path: str, params: dict | None = None) -> Any:
        return self.request("DELETE", path, params=params)

    # -- the endpoints we use -------------------------------------------------
    def info(self) -> dict:
        return self.get("/info")

    def version(self) -> dict:
        """``GET /version``: the document the negotiation read (one call per client)."""
        self.negotiated_version()
        return dict(self._version_doc or {})

    def inspect_container(self, name: str) -> dict | None:
        """Inspect output, or None if there is no such container."""
        try:
            return self.get(f"/containers/{urllib.parse.quote(name)}/json")
        except DockerAPIError as exc:
            if exc.status == 404:
                return None
            raise

    def inspect_image(self, name: str) -> dict | None:
        try:
            return self.get(f"/images/{urllib.parse.quote(name, safe='')}/json")
        except DockerAPIError as exc:
            if exc.status == 404:
                return None
            raise

    def create_container(self, name: str, body: dict) -> str:
        return self.post("/containers/create", body=body, params={"name": name})["Id"]

    def start_container(self, name: str, checkpoint: str | None = None,
                        checkpoint_dir: str | None = None, timeout: float | None = None,
                        allow_running: bool = False) -> None:
        """``docker start`` (from ``checkpoint`` when given).

        Docker answers 304 Not Modified to starting a container that already runs, and
        does nothing: no restore happened. That is an error (status 304) unless the
        caller asks for "running either way" with ``allow_running``; a start from a
        checkpoint never may, since a running container was not restored from it (a
        cold-started copy, or another container altogether).
        """
        if allow_running and (checkpoint or checkpoint_dir):
            raise ValueError("allow_running applies to a plain start, never to a start from a checkpoint")
        params = {"checkpoint": checkpoint, "checkpoint-dir": checkpoint_dir}
        status, _payload = self._call("POST", f"/containers/{urllib.parse.quote(name)}/start", params=params,
                                      timeout=timeout)
        if status == 304 and not allow_running:
            raise DockerAPIError(304, already_running_message(name, checkpoint or checkpoint_dir))

    def stop_container(self, name: str, timeout_s: int = 10) -> None:
        # 304 (already stopped) is a success here: the caller wants it stopped either way.
        self.post(f"/containers/{urllib.parse.quote(name)}/stop", params={"t": timeout_s},
                  timeout=timeout_s + 30)

    def remove_container(self, name: str, force: bool = True, volumes: bool = False) -> bool:
        try:
            self.delete(f"/containers/{urllib.parse.quote(name)}",
                        params={"force": str(force).lower(), "v": str(volumes).lower()})
        except DockerAPIError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def update_container(self, name: str, body: dict) -> None:
        """``docker update``: e.g. ``{"RestartPolicy": {"Name": "no"}}``."""
        self.post(f"/containers/{urllib.parse.quote(name)}/update", body=body)

    def create_checkpoint(self, name: str, checkpoint_id: str, checkpoint_dir: str | None,
                          exit_container: bool = True, timeout: float = 300.0) -> None:
        body = {"CheckpointID": checkpoint_id, "Exit": exit_container}
        if checkpoint_dir:
            body["CheckpointDir"] = checkpoint_dir
        self.post(f"/containers/{urllib.parse.quote(name)}/checkpoints", body=body, timeout=timeout)

    def exec_run(self, name: str, cmd: list[str], timeout: float = 30.0) -> tuple[int, bytes]:
        """Run ``cmd`` in the container; returns (exit code, combined output)."""
        exec_id = self.post(f"/containers/{urllib.parse.quote(name)}/exec", body={
            "Cmd": cmd, "AttachStdout": True, "AttachStderr": True})["Id"]
        raw = self.request("POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": False},
                           timeout=timeout, raw=True)
        code = self.get(f"/exec/{exec_id}/json").get("ExitCode")
        return (code if code is not None else -1), _demux(raw)

    def containers_using_volume(self, volume: str, running_only: bool = True) -> list[str]:
        """Names of the (running, or all) containers that mount ``volume``."""
        filters = {"volume": [volume], **({"status": ["running"]} if running_only else {})}
        found = self.get("/containers/json", params={"filters": json.dumps(filters), "all": "true"})
        return sorted((c.get("Names") or ["?"])[0].lstrip("/") for c in found or [])

    def volume_inspect(self, name: str) -> dict | None:
        try:
            return self.get(f"/volumes/{urllib.parse.quote(name)}")
        except DockerAPIError as exc:
            if exc.status == 404:
                return None
            raise


def already_running_message(name: str, checkpoint: str | None = None) -> str:
    """What a start that found ``name`` already running reports."""
    if checkpoint:
        return f"container {name} is already running: not restored from its checkpoint"
    return f"container {name} is already running: not started by this call"


def _demux(raw: bytes) -> bytes:
    """Strip Docker's 8-byte stream multiplexing headers from attached output."""
    out = bytearray()
    pos = 0
    while pos + 8 <= len(raw) and raw[pos] in (0, 1, 2) and raw[pos + 1:pos + 4] == b"\0\0\0":
        size = int.from_bytes(raw[pos + 4:pos + 8], "big")
        out += raw[pos + 8:pos + 8 + size]
        pos += 8 + size
    if pos < len(raw):
        out += raw[pos:]
    return bytes(out)
