# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

from fakes import FakeDockerAPI, run_module, use_api

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.modules import edge_image_info as mod


def test_reports_each_image_in_order_never_changed(monkeypatch):
    use_api(monkeypatch, mod, FakeDockerAPI(images={"edgemig/apache:bookworm": {"Id": "sha256:a", "Size": 42}}))
    failed, res = run_module(mod, {"images": ["edgemig/apache:bookworm", "missing:1"]})
    assert not failed and res["changed"] is False
    assert res["images"] == [{"name": "edgemig/apache:bookworm", "present": True, "id": "sha256:a", "size": 42},
                             {"name": "missing:1", "present": False, "id": None, "size": None}]


def test_check_mode_reads_the_same(monkeypatch):
    use_api(monkeypatch, mod, FakeDockerAPI(images={"x": {"Id": "sha256:x"}}))
    failed, res = run_module(mod, {"images": ["x"]}, check_mode=True)
    assert not failed and res["changed"] is False and res["images"][0]["present"] is True


def test_images_is_required():
    failed, res = run_module(mod, {})
    assert failed and "images" in res["msg"]


def test_docker_error_fails_with_its_message(monkeypatch):
    use_api(monkeypatch, mod, FakeDockerAPI(fail={"inspect_image": DockerAPIError(500, "daemon on fire")}))
    failed, res = run_module(mod, {"images": ["x"]})
    assert failed and "daemon on fire" in res["msg"]
