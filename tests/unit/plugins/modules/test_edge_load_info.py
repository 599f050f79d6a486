# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""edge_load_info and its parsers (module_utils/planning/edge_load.py): what an edge runs and can still take."""
from __future__ import annotations

from fakes import FakeDockerAPI, container, run_module, use_api

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.planning.edge_load import (
    mem_available,
    memory_in_use,
    published_ports,
)
from ansible_collections.edgemig.migration.plugins.modules import edge_load_info as mod


def test_mem_available_reads_kib_and_is_none_when_absent():
    assert mem_available("MemTotal: 100 kB\nMemAvailable:   2048 kB\n") == 2048 * 1024
    assert mem_available("MemTotal: 100 kB\n") is None
    assert mem_available("MemAvailable: lots kB\n") is None


def test_memory_in_use_leaves_out_the_inactive_page_cache():
    assert memory_in_use({"memory_stats": {"usage": 100, "stats": {"inactive_file": 30}}}) == 70      # cgroup v2
    assert memory_in_use({"memory_stats": {"usage": 100, "stats": {"total_inactive_file": 40}}}) == 60  # cgroup v1
    assert memory_in_use({"memory_stats": {"usage": 100, "stats": {"inactive_file": 300}}}) == 100
    assert memory_in_use({}) == 0 and memory_in_use(None) == 0


def test_published_ports_once_each_and_only_public_ones():
    listing = [{"Ports": [{"PrivatePort": 80, "PublicPort": 4004, "IP": "0.0.0.0"},
                          {"PrivatePort": 80, "PublicPort": 4004, "IP": "::"}, {"PrivatePort": 9000}]},
               {"Ports": None}, {}, None]
    assert published_ports(listing) == [4004]


class LoadAPI(FakeDockerAPI):
    def get(self, path, params=None, timeout=None):
        self._maybe_fail("get")
        if path.endswith("/stats"):
            assert params == {"stream": "false", "one-shot": "true"}
            return {"memory_stats": {"usage": 50_000_000, "stats": {"inactive_file": 10_000_000}}}
        if path == "/containers/json":
            return [{"Ports": [{"PublicPort": 8080}]}]
        if path == "/images/json":
            return [{"Id": "sha256:img"}, {"Id": "sha256:other"}, {}]
        raise AssertionError(path)


def test_reports_containers_ports_images_and_changes_nothing(monkeypatch):
    containers = {"apache": container("apache"), "idle": container("idle", running=False)}
    api = use_api(monkeypatch, mod, LoadAPI(containers=containers))
    failed, res = run_module(mod, {"names": ["apache", "idle", "absent"]}, check_mode=True)
    assert not failed and res["changed"] is False
    assert res["containers"] == {"apache": {"running": True, "image_id": "sha256:img", "memory": 40_000_000},
                                 "idle": {"running": False, "image_id": "sha256:img", "memory": 0}}
    assert res["ports_in_use"] == [8080] and res["images"] == ["sha256:img", "sha256:other"]
    assert "arch" in res["cpu"] and (res["mem_available"] is None or res["mem_available"] > 0)
    assert api.calls == []


def test_a_daemon_that_does_not_answer_fails_the_module(monkeypatch):
    use_api(monkeypatch, mod, LoadAPI(fail={"get": DockerAPIError(0, "cannot talk to Docker")}))
    failed, res = run_module(mod, {"names": []})
    assert failed and "cannot talk to Docker" in res["msg"]


def test_the_running_containers_memory_is_asked_side_by_side():
    """Docker 20.10 answers each one-shot stats request at its collector's next tick (up to 1 s): the
    requests of one edge must be in flight together, not one after another. Each fake answer waits until
    all three are asked (a barrier): asked one at a time, the first would wait in vain."""
    import threading

    barrier = threading.Barrier(3, timeout=5)

    class TickAPI:
        def get(self, path, params=None, timeout=None):
            assert params == {"stream": "false", "one-shot": "true"}
            barrier.wait()
            return {"memory_stats": {"usage": int(path.split("/")[2]) * 100}}

    assert mod.memory_of_each(TickAPI(), ["1", "2", "3"]) == {"1": 100, "2": 200, "3": 300}
    assert mod.memory_of_each(TickAPI(), []) == {}
