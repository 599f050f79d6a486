# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

from fakes import FakeDockerAPI, container, run_module, use_api

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.modules import edge_container_info as mod


def test_running_container_summary_and_create_body(monkeypatch):
    api = use_api(monkeypatch, mod, FakeDockerAPI(containers={"apache": container("apache")}))
    failed, res = run_module(mod, {"name": "apache"})
    assert not failed and res["changed"] is False
    assert res["container"]["exists"] and res["container"]["running"] and res["container"]["name"] == "apache"
    assert res["config"]["Image"] == "sha256:img"                      # the image by ID, not by tag
    assert res["config"]["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert res["docker"] == {"data_root": "/var/lib/docker", "storage_driver": "overlay2", "experimental": True,
                             "version": "20.10.24"}
    assert api.calls == []                                             # only read


def test_missing_container(monkeypatch):
    use_api(monkeypatch, mod, FakeDockerAPI())
    failed, res = run_module(mod, {"name": "nope"}, check_mode=True)
    assert not failed and res["changed"] is False
    assert res["container"] == {"exists": False, "running": False} and res["config"] == {}


def test_docker_unreachable_fails(monkeypatch):
    use_api(monkeypatch, mod, FakeDockerAPI(fail={"info": DockerAPIError(0, "cannot talk to Docker")}))
    failed, res = run_module(mod, {"name": "apache"})
    assert failed and "cannot talk to Docker" in res["msg"]


def test_bad_docker_host_fails_naming_the_option():
    failed, res = run_module(mod, {"name": "apache", "docker_host": "http://10.0.0.1:2375"})
    assert failed and res["msg"].startswith("docker_host:") and "unix://" in res["msg"]


def test_tcp_without_tls_is_refused_unless_asked_for():
    failed, res = run_module(mod, {"name": "apache", "docker_host": "tcp://10.0.0.1:2375"})
    assert failed and "without TLS" in res["msg"] and "validate_certs" in res["msg"]
    # Asked for explicitly: the client is made and tries the port (nothing listens on this one).
    failed, res = run_module(mod, {"name": "apache", "docker_host": "tcp://127.0.0.1:9", "tcp_without_tls": True})
    assert failed and "cannot talk to Docker at tcp://127.0.0.1:9" in res["msg"]
