# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 24: the Engine API client against the fake dockerd answering like Docker 29 and like Docker 20.10.

The fake refuses a versioned path outside its range exactly as dockerd does, so a restore from a
checkpoint (tmpfs_restore.start_from_checkpoint: inspect, info, start with a checkpoint) passing
here means every call of it carried a version that daemon accepts: the negotiated one.
"""
from __future__ import annotations

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.docker import tmpfs_restore as tr
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import (
    DockerAPIError,
    DockerVersionError,
)

DAEMONS = {
    "docker-29": ("29.0.1", "1.52", "1.44", "1.45"),       # server, ApiVersion, MinAPIVersion, what we speak
    "docker-20.10": ("20.10.24", "1.41", "1.12", "1.41"),
}


def play(fake, name: str) -> str:
    server, api_max, api_min, expected = DAEMONS[name]
    fake.info["ServerVersion"] = server
    fake.api_version, fake.min_api_version = api_max, api_min
    return expected


@pytest.fixture(autouse=True)
def _no_containerd(monkeypatch):
    monkeypatch.setattr(tr, "containerd_temp_dirs", set)


@pytest.mark.parametrize("daemon", sorted(DAEMONS))
def test_a_restore_speaks_the_negotiated_version(fake_docker, tmp_path, daemon):
    expected = play(fake_docker, daemon)
    fake_docker.add_container("web")
    ckpt = tmp_path / "dump" / "web.restore" / "edgemig"
    ckpt.mkdir(parents=True)
    (ckpt / "core-1.img").write_bytes(b"c" * 300)
    (ckpt / "pages-1.img").write_bytes(b"p" * 8192)
    api = fake_docker.api()
    tr.start_from_checkpoint(api, "web", str(ckpt))
    assert fake_docker.running("web") and fake_docker.restored_from == [["core-1.img", "pages-1.img"]]
    assert api.api_version == expected
    assert fake_docker.versions[0] is None and fake_docker.calls[0][1] == "/version"
    assert set(fake_docker.versions[1:]) == {expected}, list(zip(fake_docker.versions, fake_docker.calls))
    started = fake_docker.calls_to("POST", "/start")
    assert [c[2] for c in started] == [{"checkpoint": "edgemig"}]


def test_docker_29_refuses_the_version_we_used_to_pin(fake_docker):
    play(fake_docker, "docker-29")
    api = fake_docker.api()
    api._api_version = "1.41"                        # the client as it was: /v1.41 always
    with pytest.raises(DockerAPIError, match="client version 1.41 is too old. Minimum supported API version is 1.44"):
        api.info()


def test_a_daemon_beyond_our_range_gets_only_the_version_question(fake_docker):
    fake_docker.api_version, fake_docker.min_api_version = "1.70", "1.60"
    fake_docker.add_container("web", running=True)
    with pytest.raises(DockerVersionError, match="speaks 1.60-1.70, this client speaks API 1.41-1.45"):
        fake_docker.api().stop_container("web")
    assert fake_docker.calls == [("GET", "/version", {}, None)] and fake_docker.running("web")
