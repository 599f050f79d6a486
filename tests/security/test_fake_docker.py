# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fake Engine API plays dockerd well enough for the real docker_api.DockerAPI, and logs every call."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError


def test_inspect_start_stop_remove_by_name_and_id(fake_docker):
    api = fake_docker.api()
    doc = fake_docker.add_container("apache", restart_policy="always", upper_dir="/x/diff")
    assert api.inspect_container("ghost") is None
    got = api.inspect_container("apache")
    assert got["Id"] == doc["Id"] and got["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert got["GraphDriver"]["Data"]["UpperDir"] == "/x/diff"
    assert api.inspect_container(doc["Id"][:12])["Name"] == "/apache"          # an ID prefix, as dockerd
    api.start_container(doc["Id"])
    assert fake_docker.running("apache")
    api.stop_container("apache")
    api.stop_container("apache")                                                # 304: stopped either way
    assert not fake_docker.running("apache")
    assert api.remove_container("apache") is True and api.remove_container("apache") is False
    # The client's first call asks the version, unversioned, once; then every path carries it.
    assert fake_docker.calls[0] == ("GET", "/version", {}, None) and fake_docker.versions[0] is None
    assert [c for c in fake_docker.calls if c[1] == "/version"] == [fake_docker.calls[0]]
    assert fake_docker.calls[1] == ("GET", "/containers/ghost/json", {}, None)  # version prefix stripped
    assert set(fake_docker.versions[1:]) == {"1.41"}
    assert fake_docker.calls_to("DELETE")[0][2] == {"force": "true", "v": "false"}


def test_starting_a_running_container_is_304_and_an_error_unless_allowed(fake_docker):
    api = fake_docker.api()
    fake_docker.add_container("web", running=True)
    with pytest.raises(DockerAPIError) as exc:
        api.start_container("web")
    assert exc.value.status == 304 and "already running" in exc.value.message
    api.start_container("web", allow_running=True)                              # running either way: fine
    with pytest.raises(DockerAPIError) as exc:
        api.start_container("web", checkpoint="edgemig")
    assert exc.value.message == "container web is already running: not restored from its checkpoint"
    assert fake_docker.calls_to("POST", "/start")[-1][2] == {"checkpoint": "edgemig"}
    with pytest.raises(ValueError):
        api.start_container("web", checkpoint="edgemig", allow_running=True)


def test_a_start_from_a_checkpoint_reads_dockers_own_checkpoints_dir(fake_docker):
    api = fake_docker.api()
    fake_docker.add_container("db")
    with pytest.raises(DockerAPIError) as exc:
        api.start_container("db", checkpoint="cp")
    assert exc.value.status == 404 and not fake_docker.running("db")
    with pytest.raises(DockerAPIError) as exc:
        api.start_container("db", checkpoint="cp", checkpoint_dir="/elsewhere")
    assert exc.value.status == 400
    ckpt = f"{fake_docker.container_dir('db')}/checkpoints/cp"
    os.makedirs(ckpt)
    open(f"{ckpt}/core-1.img", "wb").close()
    api.start_container("db", checkpoint="cp")
    assert fake_docker.restored_from == [["core-1.img"]] and fake_docker.running("db")


def test_create_update_exec_list_info_images(fake_docker):
    api = fake_docker.api()
    fake_docker.images["sha256:img"] = {"Id": "sha256:img"}
    cid = api.create_container("svc", {"Image": "sha256:img", "HostConfig": {"RestartPolicy": {"Name": "always"}},
                                       "Labels": {"edgemig": "1"}})
    assert api.inspect_container("svc")["Id"] == cid
    with pytest.raises(DockerAPIError) as exc:
        api.create_container("svc", {"Image": "sha256:img"})
    assert exc.value.status == 409
    api.update_container("svc", {"RestartPolicy": {"Name": "no"}})
    assert api.inspect_container("svc")["HostConfig"]["RestartPolicy"] == {"Name": "no"}
    with pytest.raises(DockerAPIError):
        api.exec_run("svc", ["true"])                                           # not running: 409
    api.start_container("svc")
    fake_docker.exec_handler = lambda name, cmd: (3, f"{name}:{' '.join(cmd)}".encode())
    assert api.exec_run("svc", ["echo", "hi"]) == (3, b"svc:echo hi")
    assert fake_docker.calls_to("POST", "/exec")[-1][3]["Cmd"] == ["echo", "hi"]
    fake_docker.containers["svc"]["Mounts"] = [{"Type": "volume", "Name": "data", "Destination": "/data"}]
    assert api.containers_using_volume("data") == ["svc"] and api.containers_using_volume("other") == []
    assert json.loads(fake_docker.calls_to("GET", "/containers/json")[-1][2]["filters"])["volume"] == ["other"]
    assert api.info()["DockerRootDir"] == fake_docker.data_root and api.version()["ApiVersion"] == "1.41"
    assert api.inspect_image("sha256:img") == {"Id": "sha256:img"} and api.inspect_image("nope") is None
    assert [c[1].rsplit("/", 1)[-1] for c in fake_docker.changing_calls()] == [
        "create", "create", "update", "exec", "start", "exec", "start"]            # the last: /exec/<id>/start
