# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake Docker Engine API on a unix socket, for the security suite.

It speaks HTTP/1.1 as dockerd does, so the real ``docker_api.DockerAPI`` (and
everything above it: tmpfs_restore, switchover, the receiver) talks to it
unchanged, and it logs every request: a test asserts on *which* calls an
attack led to (none at all, or only the expected ones on the expected
container), not only on the outcome.

Containers live in a dict (name -> inspect document). What it plays of dockerd:

- ``GET /containers/{id or name}/json`` (404 when absent; an ID prefix works, as in Docker);
- ``POST .../start`` with ``checkpoint`` / ``checkpoint-dir`` (recorded): 304 when the
  container already runs (dockerd checks that first, a checkpoint changes nothing);
  a custom checkpoint dir is refused as Docker 20.10 does; with a checkpoint and a
  real data root, ``<data root>/containers/<id>/checkpoints/<checkpoint>`` must be a
  directory (followed as Docker follows it) and what it holds is recorded in
  ``restored_from``; its "tar" (:func:`checkpoint_digest`) is committed to a content
  store, ``blobs``, refused as Docker 26 / containerd 1.7 refuse it when that digest is
  already there (:meth:`FakeDocker.leave_checkpoint_blob`: what Docker's own checkpoint
  call leaves until containerd's next garbage collection);
- ``POST .../stop`` (304 when stopped), ``DELETE /containers/...`` (409 for a running
  one without force), ``POST .../update``, ``POST .../checkpoints``;
- ``POST .../exec``, ``POST /exec/{id}/start``, ``GET /exec/{id}/json`` (``exec_handler``
  answers: cmd -> (exit code, output));
- ``GET /containers/json`` with ``all`` and ``filters`` (name, id, status, volume, label);
- ``GET /version``, ``GET /info``, ``GET /_ping``, ``GET /images/{name}/json``,
  ``GET /volumes/{name}``, ``POST /containers/create``.

A version prefix (``/v1.41``) is stripped; as dockerd does, a version outside
``min_api_version``-``api_version`` (default 1.12-1.41, Docker 20.10) is answered 400
("client version 1.41 is too old. Minimum supported API version is 1.44 ...").
Each request is appended to ``calls`` as ``(method, path without prefix and query,
query dict, json body)``, and the version it carried (None: unversioned) to ``versions``.

Tests use it through the ``fake_docker`` fixture (tests/security/conftest.py).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import socketserver
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPI
from ansible_collections.edgemig.migration.plugins.module_utils.docker.tmpfs_restore import RESTORE_NONCE

VERSION_PREFIX = re.compile(r"^/v(?P<version>\d+(\.\d+)?)(?=/)")
ROUTES: list[tuple[str, re.Pattern, str]] = [
    (method, re.compile(f"^{pattern}$"), handler) for method, pattern, handler in (
        ("GET", r"/_ping", "ping"),
        ("GET", r"/version", "version"),
        ("GET", r"/info", "info"),
        ("GET", r"/images/(?P<name>.+)/json", "image_inspect"),
        ("GET", r"/volumes/(?P<name>[^/]+)", "volume_inspect"),
        ("GET", r"/containers/json", "container_list"),
        ("POST", r"/containers/create", "container_create"),
        ("GET", r"/containers/(?P<ref>[^/]+)/json", "container_inspect"),
        ("POST", r"/containers/(?P<ref>[^/]+)/start", "container_start"),
        ("POST", r"/containers/(?P<ref>[^/]+)/stop", "container_stop"),
        ("POST", r"/containers/(?P<ref>[^/]+)/update", "container_update"),
        ("POST", r"/containers/(?P<ref>[^/]+)/checkpoints", "checkpoint_create"),
        ("POST", r"/containers/(?P<ref>[^/]+)/exec", "exec_create"),
        ("DELETE", r"/containers/(?P<ref>[^/]+)", "container_delete"),
        ("POST", r"/exec/(?P<eid>[^/]+)/start", "exec_start"),
        ("GET", r"/exec/(?P<eid>[^/]+)/json", "exec_inspect"),
    )
]


def checkpoint_digest(path: str) -> str:
    """A stand-in for the digest of Docker's tar of a checkpoint directory: names, kinds,
    sizes, link targets and contents, links not followed (as tar does)."""
    h = hashlib.sha256()
    for top, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(top, name)
            h.update(os.path.relpath(full, path).encode() + b"\0")
            if os.path.islink(full):
                h.update(b"L" + os.readlink(full).encode())
            else:
                with open(full, "rb") as fh:
                    h.update(b"F" + fh.read())
    return "sha256:" + h.hexdigest()


class Reply(Exception):
    """An answer other than 200 with a JSON body: ``raise Reply(404, "No such container: x")``."""

    def __init__(self, status: int, message: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message


def _id(name: str) -> str:
    return hashlib.sha256(f"{name}-{time.monotonic_ns()}".encode()).hexdigest()


def _mux(output: bytes, stream: int = 1) -> bytes:
    """Docker's attached-stream framing (what docker_api._demux strips)."""
    return bytes([stream, 0, 0, 0]) + len(output).to_bytes(4, "big") + output if output else b""


class FakeDocker:
    """The daemon's state, its request log, and the server on ``socket``."""

    def __init__(self, workdir: str, data_root: str | None = None):
        self._short_dir = None
        self.socket = os.path.join(workdir, "docker.sock")
        if len(self.socket) > 100:  # sun_path holds 108 bytes: a deep tmp dir gets a short one for the socket
            self._short_dir = tempfile.mkdtemp(prefix="fake-docker-")
            self.socket = os.path.join(self._short_dir, "docker.sock")
        self.url = f"unix://{self.socket}"
        self.data_root = data_root or os.path.join(workdir, "docker-root")
        os.makedirs(self.data_root, exist_ok=True)
        self.containers: dict[str, dict] = {}
        self.images: dict[str, dict] = {}
        self.volumes: dict[str, dict] = {}
        self.execs: dict[str, dict] = {}
        self.calls: list[tuple[str, str, dict, Any]] = []
        self.versions: list[str | None] = []
        # The API range GET /version reports and versioned paths must lie in (Docker 20.10's).
        self.api_version, self.min_api_version = "1.41", "1.12"
        self.restored_from: list[list[str]] = []
        self.blobs: set[str] = set()  # containerd's content store, as far as checkpoints go
        self.info = {"DockerRootDir": self.data_root, "Driver": "overlay2", "ExperimentalBuild": True,
                     "ServerVersion": "20.10.24", "Name": "fake-docker"}
        # cmd list -> (exit code, output); the default: every command succeeds, saying nothing.
        self.exec_handler: Callable[[str, list[str]], tuple[int, bytes]] = lambda _name, _cmd: (0, b"")
        self.lock = threading.RLock()
        self._server: socketserver.UnixStreamServer | None = None

    # -- state -------------------------------------------------------------------
    def leave_checkpoint_blob(self, path: str) -> str:
        """What Docker's checkpoint call leaves in containerd until its next GC: the blob of
        the checkpoint's tar. A restore handing containerd the very same tar is refused."""
        digest = checkpoint_digest(path)
        self.blobs.add(digest)
        return digest

    def add_container(self, name: str, running: bool = False, restart_policy: str = "no",
                      upper_dir: str | None = None, mounts: list[dict] | None = None,
                      image: str = "sha256:" + "ab" * 32, labels: dict | None = None) -> dict:
        """A container as ``docker create`` (and ``docker start`` when ``running``) would leave it."""
        cid = _id(name)
        doc = {
            "Id": cid, "Name": f"/{name}", "Image": image, "Created": "2024-01-01T00:00:00Z",
            "State": {"Running": running, "Status": "running" if running else "created",
                      "Pid": 4242 if running else 0, "ExitCode": 0, "StartedAt": ""},
            "Config": {"Image": image, "Labels": dict(labels or {}), "Env": [], "Cmd": ["sleep", "inf"]},
            "HostConfig": {"RestartPolicy": {"Name": restart_policy, "MaximumRetryCount": 0}},
            "GraphDriver": {"Name": "overlay2",
                            "Data": {"UpperDir": upper_dir or os.path.join(self.data_root, "overlay2", cid, "diff")}},
            "Mounts": copy.deepcopy(mounts or []),
            "NetworkSettings": {"IPAddress": "172.17.0.2"},
        }
        with self.lock:
            self.containers[name] = doc
        os.makedirs(self.container_dir(name), exist_ok=True)
        return doc

    def container_dir(self, name: str) -> str:
        """``<data root>/containers/<id>``, where Docker 20.10 looks for ``checkpoints/<name>``."""
        return os.path.join(self.data_root, "containers", self.containers[name]["Id"])

    def running(self, name: str) -> bool:
        return bool(self.containers[name]["State"]["Running"])

    def find(self, ref: str) -> str | None:
        """The container's name by name, ``/name``, full ID or unique ID prefix (as dockerd resolves them)."""
        ref = ref.lstrip("/")
        with self.lock:
            if ref in self.containers:
                return ref
            hits = [n for n, c in self.containers.items() if c["Id"] == ref or (len(ref) >= 3 and c["Id"].startswith(ref))]
        return hits[0] if len(hits) == 1 else None

    def calls_to(self, method: str | None = None, suffix: str | None = None) -> list[tuple]:
        """The logged calls with that method whose path ends in ``suffix`` (e.g. ``"/start"``)."""
        return [c for c in self.calls if (method is None or c[0] == method) and (suffix is None or c[1].endswith(suffix))]

    def changing_calls(self) -> list[tuple]:
        """Every logged call but reads (GET): what could have changed the daemon's state."""
        return [c for c in self.calls if c[0] != "GET"]

    def api(self, timeout: float = 10.0) -> DockerAPI:
        return DockerAPI(self.url, timeout=timeout)

    # -- server ------------------------------------------------------------------
    def start(self) -> FakeDocker:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                fake.serve(self)

            do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _serve

            def log_message(self, *_args):
                pass

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            request_queue_size = 64  # socketserver's 5 refuses clients that connect at once on a busy machine
            daemon_threads = True

            def get_request(self):
                sock, _addr = super().get_request()
                return sock, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)

        self._server = Server(self.socket, Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-docker",
                         daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._short_dir:
            shutil.rmtree(self._short_dir, ignore_errors=True)

    def __enter__(self) -> FakeDocker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def serve(self, req: BaseHTTPRequestHandler) -> None:
        split = urllib.parse.urlsplit(req.path)
        prefix = VERSION_PREFIX.match(split.path)
        version = prefix.group("version") if prefix else None
        path = split.path[prefix.end():] if prefix else split.path
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        with self.lock:
            self.calls.append((req.command, path, query, body))
            self.versions.append(version)
        status, payload, ctype = 404, {"message": f"page not found: {req.command} {path}"}, "application/json"
        refusal = self._version_refusal(version)
        if refusal:
            status, payload = 400, {"message": refusal}
        for method, pattern, handler in [] if refusal else ROUTES:
            m = pattern.match(path)
            if m and method == req.command:
                args = {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
                try:
                    with self.lock:
                        status, payload = getattr(self, f"_{handler}")(query=query, body=body, **args)
                except Reply as exc:
                    status, payload = exc.status, ({"message": exc.message} if exc.message else b"")
                break
        if isinstance(payload, bytes):
            data, ctype = payload, "application/vnd.docker.raw-stream"
        else:
            data = json.dumps(payload).encode()
        if status in (204, 304):
            data = b""  # no body allowed (RFC 9110)
        req.send_response(status)
        if status not in (204, 304):
            req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if data and req.command != "HEAD":
            req.wfile.write(data)

    # -- endpoints: each returns (status, payload) or raises Reply ---------------
    def _need(self, ref: str) -> str:
        name = self.find(ref)
        if name is None:
            raise Reply(404, f"No such container: {ref}")
        return name

    def _version_refusal(self, version: str | None) -> str | None:
        """dockerd's answer to a version outside its range (None: served)."""
        def key(v):
            return tuple(int(p) for p in v.split("."))
        if version is None:
            return None
        if key(version) < key(self.min_api_version):
            return (f"client version {version} is too old. Minimum supported API version is "
                    f"{self.min_api_version}, please upgrade your client to a newer version")
        if key(version) > key(self.api_version):
            return f"client version {version} is too new. Maximum supported API version is {self.api_version}"
        return None

    def _ping(self, **_):
        return 200, b"OK"

    def _version(self, **_):
        return 200, {"Version": self.info["ServerVersion"], "ApiVersion": self.api_version,
                     "MinAPIVersion": self.min_api_version,
                     "Os": "linux", "Arch": "amd64", "Experimental": True}

    def _info(self, **_):
        return 200, dict(self.info, Containers=len(self.containers),
                         ContainersRunning=sum(self.running(n) for n in self.containers))

    def _image_inspect(self, name: str, **_):
        if name not in self.images:
            raise Reply(404, f"No such image: {name}")
        return 200, self.images[name]

    def _volume_inspect(self, name: str, **_):
        if name not in self.volumes:
            raise Reply(404, f"get {name}: no such volume")
        return 200, self.volumes[name]

    def _container_list(self, query: dict, **_):
        filters = json.loads(query.get("filters") or "{}")
        show_all = query.get("all") in ("1", "true", "True")
        out = []
        for name, c in self.containers.items():
            if not show_all and not c["State"]["Running"]:
                continue
            if not self._matches(name, c, filters):
                continue
            out.append({"Id": c["Id"], "Names": [f"/{name}"], "Image": c["Image"], "State": c["State"]["Status"],
                        "Status": "Up" if c["State"]["Running"] else "Exited (0)",
                        "Labels": c["Config"]["Labels"], "Mounts": c["Mounts"]})
        return 200, out

    @staticmethod
    def _matches(name: str, c: dict, filters: dict) -> bool:
        if isinstance(filters, dict):  # both {"k": ["v"]} and the old {"k": {"v": true}}
            filters = {k: list(v) for k, v in filters.items()}
        tests = {
            "name": lambda v: v.lstrip("/") in name,
            "id": c["Id"].startswith,
            "status": lambda v: c["State"]["Status"] == v,
            "volume": lambda v: any(m.get("Name") == v or m.get("Destination") == v for m in c["Mounts"]),
            "label": lambda v: (c["Config"]["Labels"].get(v.split("=", 1)[0]) == v.split("=", 1)[1]
                                if "=" in v else v in c["Config"]["Labels"]),
        }
        return all(any(tests[k](v) for v in values) for k, values in filters.items() if k in tests)

    def _container_create(self, query: dict, body: dict | None, **_):
        name = query.get("name") or f"fake_{len(self.containers)}"
        if self.find(name) is not None:
            raise Reply(409, f'Conflict. The container name "/{name}" is already in use')
        body = body or {}
        doc = self.add_container(name, image=body.get("Image", "sha256:" + "ab" * 32), labels=body.get("Labels"),
                                 restart_policy=((body.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name", "no"))
        doc["Config"].update({k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")})
        doc["HostConfig"].update(copy.deepcopy(body.get("HostConfig") or {}))
        return 201, {"Id": doc["Id"], "Warnings": []}

    def _container_inspect(self, ref: str, **_):
        return 200, self.containers[self._need(ref)]

    def _container_start(self, ref: str, query: dict, **_):
        name = self._need(ref)
        c = self.containers[name]
        if c["State"]["Running"]:
            raise Reply(304)  # dockerd: "container already started", nothing done, checkpoint or not
        if query.get("checkpoint-dir"):
            raise Reply(400, "custom checkpointdir is not supported")
        checkpoint = query.get("checkpoint")
        if checkpoint:
            where = os.path.join(self.container_dir(name), "checkpoints", checkpoint)
            if not os.path.isdir(where):  # a stat: Docker follows the checkpoints link
                raise Reply(404, f"checkpoint {checkpoint} does not exist for container {name}")
            digest = checkpoint_digest(where)
            if digest in self.blobs:
                raise Reply(500, "failed to upload checkpoint to containerd: commit failed: "
                                 f"content {digest}: already exists")
            self.restored_from.append(sorted(set(os.listdir(where)) - {RESTORE_NONCE}))  # images only
        c["State"].update(Running=True, Status="running", Pid=4242, StartedAt="now")
        return 204, b""

    def _container_stop(self, ref: str, **_):
        c = self.containers[self._need(ref)]
        if not c["State"]["Running"]:
            raise Reply(304)
        c["State"].update(Running=False, Status="exited", Pid=0, ExitCode=137)
        return 204, b""

    def _container_update(self, ref: str, body: dict | None, **_):
        c = self.containers[self._need(ref)]
        c["HostConfig"].update(copy.deepcopy(body or {}))
        return 200, {"Warnings": []}

    def _checkpoint_create(self, ref: str, body: dict | None, **_):
        c = self.containers[self._need(ref)]
        if not c["State"]["Running"]:
            raise Reply(409, f"Container {ref} is not running")
        if (body or {}).get("Exit", True):
            c["State"].update(Running=False, Status="exited", Pid=0, ExitCode=137)
        return 201, b""

    def _container_delete(self, ref: str, query: dict, **_):
        name = self._need(ref)
        if self.running(name) and query.get("force") not in ("1", "true", "True"):
            raise Reply(409, f"You cannot remove a running container {self.containers[name]['Id']}. "
                             "Stop the container before attempting removal or force remove")
        del self.containers[name]
        return 204, b""

    def _exec_create(self, ref: str, body: dict | None, **_):
        name = self._need(ref)
        if not self.running(name):
            raise Reply(409, f"Container {self.containers[name]['Id']} is not running")
        eid = _id(f"exec-{name}")
        self.execs[eid] = {"container": name, "cmd": list((body or {}).get("Cmd") or []), "code": None}
        return 201, {"Id": eid}

    def _exec_start(self, eid: str, **_):
        if eid not in self.execs:
            raise Reply(404, f"No such exec instance: {eid}")
        run = self.execs[eid]
        code, output = self.exec_handler(run["container"], run["cmd"])
        run["code"] = code
        return 200, _mux(output)

    def _exec_inspect(self, eid: str, **_):
        if eid not in self.execs:
            raise Reply(404, f"No such exec instance: {eid}")
        run = self.execs[eid]
        return 200, {"ID": eid, "Running": False, "ExitCode": run["code"],
                     "ContainerID": self.containers.get(run["container"], {}).get("Id")}
