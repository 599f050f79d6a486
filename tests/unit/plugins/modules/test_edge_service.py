# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest
from fakes import FakeDockerAPI, container, run_module, use_api

from ansible_collections.edgemig.migration.plugins.module_utils.docker.container_spec import LABEL_SPEC, spec_hash
from ansible_collections.edgemig.migration.plugins.modules import edge_service as mod

SPEC = {"image": "edgemig/apache:bookworm", "ports": [{"container": 80, "host": 8080}]}
IMAGES = {"edgemig/apache:bookworm": {"Id": "sha256:apache"}}


@pytest.fixture
def api(monkeypatch):
    return use_api(monkeypatch, mod, FakeDockerAPI(images=IMAGES))


def test_creates_and_starts_then_is_idempotent(api):
    failed, res = run_module(mod, {"name": "apache", "spec": SPEC})
    assert not failed and res["changed"] is True and res["actions"] == ["created", "started"]
    assert res["container"]["running"] is True
    assert api.containers["apache"]["Config"]["Labels"][LABEL_SPEC] == spec_hash(SPEC)
    api.calls.clear()
    failed, res = run_module(mod, {"name": "apache", "spec": SPEC})
    assert not failed and res["changed"] is False and res["actions"] == [] and api.calls == []


def test_check_mode_predicts_and_touches_nothing(api):
    failed, res = run_module(mod, {"name": "apache", "spec": SPEC}, check_mode=True)
    assert not failed and res["changed"] is True and res["actions"] == ["created", "started"]
    assert api.calls == [] and "apache" not in api.containers


def test_changed_spec_is_replaced_or_refused(api):
    api.containers["apache"] = container("apache", image_id="sha256:apache", labels={LABEL_SPEC: "old"})
    failed, res = run_module(mod, {"name": "apache", "spec": SPEC, "recreate": False})
    assert failed and "recreate=false" in res["msg"] and api.calls == []
    failed, res = run_module(mod, {"name": "apache", "spec": SPEC})
    assert not failed and res["actions"] == ["removed outdated container", "created", "started"]


def test_rebuilt_image_replaces_the_container(api):
    api.containers["apache"] = container("apache", image_id="sha256:older", labels={LABEL_SPEC: spec_hash(SPEC)})
    failed, res = run_module(mod, {"name": "apache", "spec": SPEC})
    assert not failed and res["actions"][0] == "removed outdated container"
    assert api.containers["apache"]["Image"] == "sha256:apache"


def test_stopped_container_is_started(api):
    api.containers["apache"] = container("apache", image_id="sha256:apache", running=False,
                                         labels={LABEL_SPEC: spec_hash(SPEC)})
    failed, res = run_module(mod, {"name": "apache", "spec": SPEC})
    assert not failed and res["actions"] == ["started"]


def test_missing_image_fails_with_the_fix(api):
    failed, res = run_module(mod, {"name": "web", "spec": {"image": "nope:1"}})
    assert failed and "'nope:1'" in res["msg"] and "base_images" in res["msg"]


def test_bad_spec_and_missing_spec(api):
    failed, res = run_module(mod, {"name": "web", "spec": {"ports": []}})
    assert failed and "not a valid catalog entry" in res["msg"]
    failed, res = run_module(mod, {"name": "web"})
    assert failed and "spec" in res["msg"]


def test_absent_removes_once(api):
    api.containers["apache"] = container("apache")
    failed, res = run_module(mod, {"name": "apache", "state": "absent"}, check_mode=True)
    assert not failed and res["changed"] is True and "apache" in api.containers
    failed, res = run_module(mod, {"name": "apache", "state": "absent", "remove_volumes": True})
    assert not failed and res["changed"] is True and ("remove", "apache", True) in api.calls
    failed, res = run_module(mod, {"name": "apache", "state": "absent"})
    assert not failed and res["changed"] is False


def test_failed_health_check_fails(api, monkeypatch):
    monkeypatch.setattr(mod, "wait_healthy", lambda health, api, name: (False, 1.0, "HTTP 503"))
    failed, res = run_module(mod, {"name": "apache", "spec": dict(SPEC, health={"type": "http", "port": 8080})})
    assert failed and "health check failed: HTTP 503" in res["msg"] and res["actions"] == ["created", "started"]
