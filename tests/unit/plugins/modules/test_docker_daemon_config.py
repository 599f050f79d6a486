# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docker_daemon_config: daemon.json merged in place, check mode and diff, the daemon's view, images kept in view."""
from __future__ import annotations

import json
import os

from fakes import FakeDockerAPI, run_module, use_api

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.modules import docker_daemon_config as mod

USERS = '{\n    "log-driver": "journald",\n    "registry-mirrors": ["https://mirror.example"],\n' \
        '    "default-address-pools": [{"base": "10.99.0.0/16", "size": 24}]\n}\n'
SETTINGS = {"experimental": True, "storage-driver": "overlay2"}
DOWN = {"info": DockerAPIError(0, "cannot talk to Docker at unix:///nothing")}


def args(path, **kw):
    return {"path": str(path), "settings": SETTINGS, **kw}


def test_check_mode_shows_the_diff_and_touches_nothing_then_the_run_merges_then_nothing(monkeypatch, tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text(USERS)
    os.chmod(path, 0o600)
    use_api(monkeypatch, mod, FakeDockerAPI(info={"Driver": "overlay2", "ExperimentalBuild": False, "Images": 3,
                                                  "DockerRootDir": str(tmp_path / "root")}))
    failed, res = run_module(mod, args(path), check_mode=True)
    assert not failed and res["changed"] and res["restart_needed"]
    assert res["changes"] == [{"key": "experimental", "before": False, "after": True}]
    assert res["diff"]["before"] == USERS and '"experimental": true' in res["diff"]["after"]
    assert "experimental: false -> true" in res["msg"] and "Docker must restart" in res["msg"]
    assert path.read_text() == USERS                                   # check mode: untouched

    failed, res = run_module(mod, args(path))
    assert not failed and res["changed"]
    written = json.loads(path.read_text())
    assert written == dict(json.loads(USERS), experimental=True)      # the user's keys, ours added, no driver key
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"              # the file's own mode kept

    mod_api = FakeDockerAPI(info={"Driver": "overlay2", "ExperimentalBuild": True, "Images": 3})
    use_api(monkeypatch, mod, mod_api)
    before = path.read_text()
    failed, res = run_module(mod, args(path))
    assert not failed and not res["changed"] and res["changes"] == [] and "diff" not in res
    assert path.read_text() == before


def test_no_file_and_no_daemon_writes_both_keys(monkeypatch, tmp_path):
    use_api(monkeypatch, mod, FakeDockerAPI(fail=DOWN))
    path = tmp_path / "etc" / "docker" / "daemon.json"
    failed, res = run_module(mod, args(path))
    assert not failed and res["changed"] and res["daemon"]["answered"] is False
    assert json.loads(path.read_text()) == SETTINGS and oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert res["diff"]["before"] == ""


def test_a_file_that_is_not_json_is_an_error_and_stays(monkeypatch, tmp_path):
    use_api(monkeypatch, mod, FakeDockerAPI())
    path = tmp_path / "daemon.json"
    path.write_text('{"log-driver": "journald",}')
    failed, res = run_module(mod, args(path))
    assert failed and "is not valid JSON" in res["msg"] and path.read_text() == '{"log-driver": "journald",}'


def test_images_under_another_driver_on_disk_stop_a_switch(monkeypatch, tmp_path):
    use_api(monkeypatch, mod, FakeDockerAPI(fail=DOWN))              # a stopped daemon: the disk tells
    root = tmp_path / "root"
    (root / "image" / "vfs" / "imagedb" / "content" / "sha256").mkdir(parents=True)
    (root / "image" / "vfs" / "imagedb" / "content" / "sha256" / ("ab" * 32)).write_text("{}")
    path = tmp_path / "daemon.json"
    text = json.dumps({"data-root": str(root), "storage-driver": "vfs", "log-driver": "local"})
    path.write_text(text)
    failed, res = run_module(mod, args(path))
    assert failed and "1 under vfs" in res["msg"] and "would hide them" in res["msg"]
    assert res["daemon"]["images_on_disk"] == {"vfs": 1} and path.read_text() == text


def test_the_running_daemons_images_stop_a_switch(monkeypatch, tmp_path):
    use_api(monkeypatch, mod, FakeDockerAPI(info={"Driver": "btrfs", "ExperimentalBuild": True, "Images": 9,
                                                  "DockerRootDir": str(tmp_path)}))
    path = tmp_path / "daemon.json"
    failed, res = run_module(mod, args(path), check_mode=True)
    assert failed and "storage driver btrfs" in res["msg"] and "9 under btrfs" in res["msg"]
    assert not path.exists()
