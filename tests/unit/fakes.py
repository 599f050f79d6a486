# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fakes for unit tests without root or lab: a Docker Engine API that keeps its
containers in a dict, a runner that calls a module's main() with arguments
and returns what it exited with, and edge_migrate's action plugin with Ansible's
plumbing replaced.
"""
from __future__ import annotations

import copy
import os

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible.plugins.action import ActionBase

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import (
    DockerAPIError,
    DockerTLS,
    already_running_message,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.tmpfs_restore import RESTORE_NONCE


class ModuleExit(Exception):
    def __init__(self, result: dict, failed: bool):
        super().__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


def run_module(mod, args: dict, check_mode: bool = False) -> tuple[bool, dict]:
    """Run ``mod.main()`` with ``args``; returns (failed, result)."""
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True

    def exit_json(self, **kwargs):
        raise ModuleExit(kwargs, failed=False)

    def fail_json(self, msg, **kwargs):
        raise ModuleExit(dict(kwargs, msg=msg, failed=True), failed=True)

    with pytest.MonkeyPatch.context() as mp, patch_module_args(args):
        mp.setattr(basic.AnsibleModule, "exit_json", exit_json)
        mp.setattr(basic.AnsibleModule, "fail_json", fail_json)
        with pytest.raises(ModuleExit) as info:
            mod.main()
    return info.value.failed, info.value.result


def container(name: str, image_id: str = "sha256:img", running: bool = True, labels: dict | None = None,
              cid: str | None = None) -> dict:
    return {
        "Id": cid or f"{name}-id-0123456789abcdef",
        "Name": f"/{name}",
        "Image": image_id,
        "State": {"Running": running, "Status": "running" if running else "exited", "StartedAt": "now"},
        "Config": {"Image": "edgemig/apache:bookworm", "Labels": labels or {}, "Env": ["A=1"],
                   "Cmd": ["apache2ctl", "-D", "FOREGROUND"]},
        "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, "Binds": None},
        "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": f"/var/lib/docker/overlay2/{name}/diff"}},
        "Mounts": [],
        "NetworkSettings": {"IPAddress": "172.17.0.2"},
    }


class FakeDockerAPI:
    """The DockerAPI methods the modules call, on in-memory state; ``calls`` records the changing ones."""

    def __init__(self, containers: dict | None = None, images: dict | None = None, info: dict | None = None,
                 fail: dict | None = None):
        self.base_url = "unix:///fake/docker.sock"
        self.tls = DockerTLS()
        self.containers = copy.deepcopy(containers or {})
        self.images = copy.deepcopy(images or {})
        self._info = info or {"DockerRootDir": "/var/lib/docker", "Driver": "overlay2",
                              "ExperimentalBuild": True, "ServerVersion": "20.10.24"}
        self.fail = fail or {}      # method name -> DockerAPIError to raise
        self.calls: list[tuple] = []
        self.restored_from: list[list[str]] = []
        self.volumes: dict[str, dict] = {}     # name -> GET /volumes/<name>  # the image names each checked restore saw

    def _maybe_fail(self, method: str) -> None:
        if method in self.fail:
            raise self.fail[method]

    def _find(self, name: str) -> str | None:
        """The container's key, by name or ID, as the Engine API accepts both."""
        if name in self.containers:
            return name
        return next((n for n, c in self.containers.items() if c["Id"] == name), None)

    def info(self) -> dict:
        self._maybe_fail("info")
        return self._info

    def containers_using_volume(self, volume: str, running_only: bool = True) -> list[str]:
        self._maybe_fail("containers_using_volume")
        return sorted(n for n, c in self.containers.items()
                      if (not running_only or (c.get("State") or {}).get("Running"))
                      and any(m.get("Name") == volume for m in c.get("Mounts") or []))

    def volume_inspect(self, name: str) -> dict | None:
        self._maybe_fail("volume_inspect")
        return copy.deepcopy(self.volumes.get(name))

    def version(self) -> dict:
        self._maybe_fail("version")
        return {"Version": self._info.get("ServerVersion"), "ApiVersion": "1.41"}

    def inspect_container(self, name: str) -> dict | None:
        self._maybe_fail("inspect_container")
        key = self._find(name)
        return copy.deepcopy(self.containers[key]) if key else None

    def inspect_image(self, name: str) -> dict | None:
        self._maybe_fail("inspect_image")
        img = self.images.get(name)
        return copy.deepcopy(img) if img else None

    def create_container(self, name: str, body: dict) -> str:
        self._maybe_fail("create_container")
        self.calls.append(("create", name))
        image = self.images.get(body["Image"], {"Id": body["Image"]})
        self.containers[name] = container(name, image_id=image["Id"], running=False,
                                          labels=body.get("Labels"))
        self.container_dir(name)
        return self.containers[name]["Id"]

    def container_dir(self, name: str) -> str | None:
        """With a real data root (a test's tmp dir): the container's own directory, made as Docker would."""
        root = self._info["DockerRootDir"]
        if not os.path.isdir(root):
            return None
        path = os.path.join(root, "containers", self.containers[self._find(name)]["Id"])
        os.makedirs(path, exist_ok=True)
        return path

    def start_container(self, name: str, checkpoint: str | None = None, checkpoint_dir: str | None = None,
                        timeout: float | None = None, allow_running: bool = False) -> None:
        self.calls.append(("start", name, checkpoint))
        self._maybe_fail("start_container")
        key = self._find(name)
        if key is None:
            raise DockerAPIError(404, f"No such container: {name}")
        if self.containers[key]["State"].get("Running"):  # Docker answers 304
            if allow_running and not checkpoint:
                return
            raise DockerAPIError(304, already_running_message(name, checkpoint))
        if checkpoint_dir:  # as Docker 20.10 answers
            raise DockerAPIError(403, "custom checkpointdir is not supported")
        if checkpoint and os.path.isdir(self._info["DockerRootDir"]):  # a test that gave a real data root
            # Docker 20.10 reads <data root>/containers/<id>/checkpoints/<checkpoint> (a stat, so links are followed).
            where = os.path.join(self._info["DockerRootDir"], "containers", self.containers[key]["Id"],
                                 "checkpoints", checkpoint)
            if not os.path.isdir(where):
                raise DockerAPIError(404, f"checkpoint {checkpoint} does not exist for container {name}")
            self.restored_from.append(sorted(set(os.listdir(where)) - {RESTORE_NONCE}))  # images only
        self.containers[key]["State"].update(Running=True, Status="running")

    def stop_container(self, name: str, timeout_s: int = 10) -> None:
        self.calls.append(("stop", name))
        self.containers[self._find(name)]["State"].update(Running=False, Status="exited")

    def remove_container(self, name: str, force: bool = True, volumes: bool = False) -> bool:
        self._maybe_fail("remove_container")
        self.calls.append(("remove", name, volumes))
        key = self._find(name)
        return self.containers.pop(key, None) is not None if key else False

    def update_container(self, name: str, body: dict) -> None:
        self.calls.append(("update", name, copy.deepcopy(body)))
        self._maybe_fail("update_container")
        self.containers[self._find(name)].setdefault("HostConfig", {}).update(copy.deepcopy(body))

    def create_checkpoint(self, name: str, checkpoint_id: str, checkpoint_dir: str | None,
                          exit_container: bool = True, timeout: float = 300.0) -> None:
        self.calls.append(("checkpoint", name, checkpoint_id, checkpoint_dir, exit_container))
        self._maybe_fail("create_checkpoint")
        key = self._find(name)
        if key and exit_container:
            self.containers[key]["State"].update(Running=False, Status="exited")

    def exec_run(self, name: str, cmd: list[str], timeout: float = 30.0) -> tuple[int, bytes]:
        self.calls.append(("exec", name, tuple(cmd)))
        return 0, b""


class CriuDocker(FakeDockerAPI):
    """A checkpoint also writes a 4 KiB CRIU page image into the dump dir, as runc would."""

    def create_checkpoint(self, name, checkpoint_id, checkpoint_dir, exit_container=True, timeout=300.0):
        super().create_checkpoint(name, checkpoint_id, checkpoint_dir, exit_container, timeout)
        os.makedirs(os.path.join(checkpoint_dir, checkpoint_id))
        with open(os.path.join(checkpoint_dir, checkpoint_id, "pages-1.img"), "wb") as fh:
            fh.write(b"\1" * 4096)


def use_api(monkeypatch, mod, api: FakeDockerAPI) -> FakeDockerAPI:
    """Make ``mod`` (a module) talk to ``api`` instead of a Docker socket."""
    monkeypatch.setattr(mod, "docker_api", lambda module: api)
    return api


# ---------------------------------------------------------------- edge_migrate's action plugin
class ActionShell:
    tmpdir = "/tmp/x"


class ActionConnection:
    has_native_async = False
    _shell = ActionShell()


class ActionTask:
    def __init__(self, args: dict | None = None):
        self.args = dict(args or {"name": "apache"})
        self.async_val = 0
        self.check_mode = False
        self.action = "edgemig.migration.edge_migrate"


def bare_action(monkeypatch, em, args: dict | None = None, pipelining: bool = True):
    """edge_migrate's ActionModule (``em``, its module) without Ansible under it: ActionBase.run, the
    task and the connection are stand-ins; with pipelining the module's code is b"code" and the
    arguments it was built with land in ``act.module_args``. The caller sets _low_level_execute_command
    (the source's shell) and, for Ansible's async start, _execute_module."""
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    act = em.ActionModule.__new__(em.ActionModule)
    act._task, act._connection = ActionTask(args), ActionConnection()
    act._used_interpreter = None
    act._is_pipelining_enabled = lambda *a, **kw: pipelining
    act._update_module_args = lambda *a, **kw: None
    act._compute_environment_string = lambda: ""
    act._remove_tmp_path = lambda path: None
    act._remote_expand_user = lambda path: path.replace("~", "/root")
    act.get_shell_option = lambda name, default=None: default
    act.module_args = {}

    class Bits:
        shebang, b_module_data = "#!/usr/bin/python3", b"code"

    def configure(module_name=None, module_args=None, task_vars=None):
        act.module_args = dict(module_args or {})
        return Bits, "/x"
    act._configure_module = configure
    return act
