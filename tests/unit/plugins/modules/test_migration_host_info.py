# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import stat

import pytest
from ansible.module_utils import basic
from fakes import FakeDockerAPI, container, run_module, use_api

from ansible_collections.edgemig.migration.plugins.module_utils.docker import criu_preflight as cp, host_readiness as hr
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.modules import migration_host_info as mod


@pytest.fixture
def criu(monkeypatch, tmp_path):
    """A criu on PATH whose --version and check answers are set per test; commands run are recorded."""
    exe = tmp_path / "criu"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(stat.S_IRWXU)
    state = {"version": "Version: 4.2.1\n", "check_rc": 0, "ran": []}

    def run_command(self, args, **kw):
        state["ran"].append(list(args))
        if args[-1] == "--version":
            return 0, state["version"], ""
        return state["check_rc"], "Looks good." if state["check_rc"] == 0 else "", \
            "" if state["check_rc"] == 0 else "Error (criu/cr-check.c): vdso"

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(hr.shutil, "which", lambda name: str(exe))
    conf = tmp_path / "runc.conf"
    conf.write_text("tcp-close\nskip-in-flight\n")
    state["conf"] = str(conf)
    return state


def test_ready_host_reports_ready_and_never_changes(monkeypatch, criu):
    use_api(monkeypatch, mod, FakeDockerAPI())
    for check_mode in (False, True):
        failed, res = run_module(mod, {"runc_conf": criu["conf"]}, check_mode=check_mode)
        assert not failed and res["changed"] is False
        assert res["ready"] is True and res["problems"] == []
        assert res["criu"]["version"] == "4.2.1" and res["criu"]["check_ok"] is True
        assert "skip-in-flight" in res["runc_conf"]["options"]


def test_old_failing_criu_and_missing_runc_option_are_problems(monkeypatch, criu, tmp_path):
    use_api(monkeypatch, mod, FakeDockerAPI())
    criu["version"], criu["check_rc"] = "Version: 3.17\n", 1
    failed, res = run_module(mod, {"runc_conf": str(tmp_path / "absent.conf")})
    assert not failed and res["changed"] is False and res["ready"] is False
    text = "\n".join(res["problems"])
    assert "older than 4.2" in text and "criu check" in text and "skip-in-flight" in text


def test_run_criu_check_false_does_not_run_it(monkeypatch, criu):
    use_api(monkeypatch, mod, FakeDockerAPI())
    failed, res = run_module(mod, {"runc_conf": criu["conf"], "run_criu_check": False})
    assert not failed and res["criu"]["check_ok"] is None
    assert all(cmd[-1] != "check" for cmd in criu["ran"])


def test_docker_without_experimental_or_unreachable(monkeypatch, criu):
    use_api(monkeypatch, mod, FakeDockerAPI(info={"DockerRootDir": "/var/lib/docker", "Driver": "overlay2",
                                                  "ExperimentalBuild": False, "ServerVersion": "20.10.24"}))
    failed, res = run_module(mod, {"runc_conf": criu["conf"]})
    assert not failed and res["ready"] is False and any("experimental" in p for p in res["problems"])
    use_api(monkeypatch, mod, FakeDockerAPI(fail={"info": DockerAPIError(0, "cannot talk to Docker")}))
    failed, res = run_module(mod, {"runc_conf": criu["conf"]})
    assert not failed and res["changed"] is False and res["ready"] is False
    assert res["docker"]["error"] == "cannot talk to Docker"


def test_wrong_storage_driver(monkeypatch, criu):
    use_api(monkeypatch, mod, FakeDockerAPI(info={"DockerRootDir": "/d", "Driver": "vfs",
                                                  "ExperimentalBuild": True, "ServerVersion": "20.10.24"}))
    failed, res = run_module(mod, {"runc_conf": criu["conf"]})
    assert not failed and res["ready"] is False and any("vfs" in p for p in res["problems"])


class TopAPI(FakeDockerAPI):
    """Answers GET /containers/<name>/top as Docker does with ps_args '-o pid'."""

    def __init__(self, containers: dict, pids: list[int]):
        super().__init__(containers)
        self.pids, self.asked = pids, []

    def get(self, path, params=None, timeout=None):
        self.asked.append((path, params))
        return {"Titles": ["PID"], "Processes": [[str(p)] for p in self.pids]}


def test_service_not_running_here_is_not_checked(monkeypatch, criu):
    use_api(monkeypatch, mod, TopAPI({"svc": container("svc", running=False)}, [42]))
    for name in ("svc", "absent"):
        failed, res = run_module(mod, {"runc_conf": criu["conf"], "service": name})
        assert not failed and res["service"] == {"checked": False, "refusal": None}


def test_service_refused_names_the_finding_and_its_processes_come_from_docker(monkeypatch, criu):
    api = use_api(monkeypatch, mod, TopAPI({"svc": container("svc", running=True) | {"State": {
        "Running": True, "Pid": 42}}}, [42, 43]))
    seen = {}

    def check(inspect, pids):
        seen["pids"] = pids
        f = cp.Finding(43, "node", 7, "io_uring", cp.REFUSE, "holds an io_uring instance",
                       "CRIU cannot checkpoint io_uring", "disable io_uring")
        return {"processes": len(pids), "findings": [f.as_dict()], "refused": True}, [f]

    real = cp.check_container
    monkeypatch.setattr(cp, "check_container", lambda inspect, lister: real(inspect, lister, check))
    failed, res = run_module(mod, {"runc_conf": criu["conf"], "service": "svc"})
    assert not failed and res["ready"] is True  # the host is fine: the service is refused on its own
    assert seen["pids"] == [42, 43] and api.asked == [("/containers/svc/top", {"ps_args": "-o pid"})]
    assert res["service"]["checked"] is True and res["service"]["refused"] is True
    assert res["service"]["refusal"].startswith("CRIU could not checkpoint this service: process 43 (node) "
                                                "holds an io_uring instance (fd 7)")


def test_service_whose_processes_docker_cannot_list_is_checked_by_its_init(monkeypatch, criu):
    class Broken(TopAPI):
        def get(self, path, params=None, timeout=None):
            raise DockerAPIError(500, "ps: not found")

    use_api(monkeypatch, mod, Broken({"svc": container("svc") | {"State": {"Running": True, "Pid": 42}}}, []))
    real = cp.check_container
    monkeypatch.setattr(cp, "check_container", lambda inspect, lister: real(
        inspect, lister, lambda _i, pids: ({"processes": len(pids), "pids": pids}, [])))
    failed, res = run_module(mod, {"runc_conf": criu["conf"], "service": "svc"})
    assert not failed and res["service"]["pids"] == [42] and res["service"]["refusal"] is None
    assert "only the init process checked" in res["service"]["notes"][0] and "ps: not found" in res["service"]["notes"][0]
