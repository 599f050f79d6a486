# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os

from fakes import FakeDockerAPI, container, run_module, use_api

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.modules import docker_checkpoint as mod


def test_checkpoint_into_a_fresh_dump_dir(monkeypatch, tmp_path):
    api = use_api(monkeypatch, mod, FakeDockerAPI(containers={"apache": container("apache")}))
    failed, res = run_module(mod, {"name": "apache", "dump_dir": str(tmp_path)})
    assert not failed and res["changed"] is True
    assert os.path.dirname(res["work_dir"]) == str(tmp_path) and os.path.isdir(res["work_dir"])
    assert res["checkpoint_dir"] == os.path.join(res["work_dir"], "edgemig")
    assert api.calls == [("checkpoint", "apache-id-0123456789abcdef", "edgemig", res["work_dir"], True)]
    assert res["sizes"]["total"] == sum(res["sizes"][k] for k in ("pages", "other", "layer", "volumes"))


def test_leave_running_and_name(monkeypatch, tmp_path):
    api = use_api(monkeypatch, mod, FakeDockerAPI(containers={"apache": container("apache")}))
    failed, res = run_module(mod, {"name": "apache", "dump_dir": str(tmp_path), "checkpoint": "cp1",
                                   "leave_running": True})
    assert not failed and api.calls[0][2] == "cp1" and api.calls[0][4] is False
    assert api.containers["apache"]["State"]["Running"] is True


def test_check_mode_freezes_nothing(monkeypatch, tmp_path):
    api = use_api(monkeypatch, mod, FakeDockerAPI(containers={"apache": container("apache")}))
    failed, res = run_module(mod, {"name": "apache", "dump_dir": str(tmp_path)}, check_mode=True)
    assert not failed and res["changed"] is True and api.calls == [] and os.listdir(tmp_path) == []


def test_not_running_fails_and_writes_nothing(monkeypatch, tmp_path):
    use_api(monkeypatch, mod, FakeDockerAPI(containers={"apache": container("apache", running=False)}))
    failed, res = run_module(mod, {"name": "apache", "dump_dir": str(tmp_path)})
    assert failed and "'apache' is not running" in res["msg"] and os.listdir(tmp_path) == []


def test_criu_failure_restarts_a_stopped_container(monkeypatch, tmp_path):
    api = FakeDockerAPI(containers={"apache": container("apache")},
                        fail={"create_checkpoint": DockerAPIError(500, "criu failed: type NOTIFY errno 0")})
    use_api(monkeypatch, mod, api)
    api.containers["apache"]["State"]["Running"] = True

    real = api.create_checkpoint

    def stop_then_fail(*a, **kw):
        api.containers["apache"]["State"]["Running"] = False   # Docker stopped it anyway
        real(*a, **kw)
    monkeypatch.setattr(api, "create_checkpoint", stop_then_fail)
    failed, res = run_module(mod, {"name": "apache", "dump_dir": str(tmp_path)})
    assert failed and "checkpoint of 'apache' failed: criu failed" in res["msg"]
    assert "started again" in res["msg"] and ("start", "apache", None) in api.calls
    assert os.listdir(tmp_path) == []                            # the half-made dump dir is gone


def test_absent_removes_the_work_dir_once(tmp_path):
    work = tmp_path / "apache-1"
    (work / "edgemig").mkdir(parents=True)
    failed, res = run_module(mod, {"state": "absent", "work_dir": str(work)}, check_mode=True)
    assert not failed and res["changed"] is True and work.exists()
    failed, res = run_module(mod, {"state": "absent", "work_dir": str(work)})
    assert not failed and res["changed"] is True and not work.exists()
    failed, res = run_module(mod, {"state": "absent", "work_dir": str(work)})
    assert not failed and res["changed"] is False


def test_required_if():
    failed, res = run_module(mod, {})
    assert failed and "name" in res["msg"]
    failed, res = run_module(mod, {"state": "absent"})
    assert failed and "work_dir" in res["msg"]


def test_the_held_policy_goes_to_held_dir_and_a_tmpfs_there_is_warned_of(monkeypatch, tmp_path):
    from ansible_collections.edgemig.migration.plugins.module_utils.common.migration_state import read_held
    from ansible_collections.edgemig.migration.plugins.module_utils.docker import checkpoint

    c = container("apache")
    c["HostConfig"]["RestartPolicy"] = {"Name": "always", "MaximumRetryCount": 0}
    use_api(monkeypatch, mod, FakeDockerAPI(containers={"apache": c}))
    monkeypatch.setattr(checkpoint, "fs_type", lambda path: "tmpfs")
    warned = []
    monkeypatch.setattr(mod.AnsibleModule, "warn", lambda self, w: warned.append(w))
    held = str(tmp_path / "held")
    failed, res = run_module(mod, {"name": "apache", "dump_dir": str(tmp_path / "dumps"), "held_dir": held})
    assert not failed and res["held_dir"] == held and res["restart_policy"]["Name"] == "always"
    assert read_held(held, "apache")["restart_policy"]["Name"] == "always"
    assert warned == [f"held_dir {held} is on tmpfs: the held restart policy would not outlive a reboot; "
                      "put it on persistent storage"]
