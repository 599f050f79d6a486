# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The security suite's shared fixtures: a fake Docker Engine API that logs every call (fake_docker.py), and
an edge with the receiver installed, that Docker, and a valid ticket (``host``)."""
from __future__ import annotations

import os

import pytest
from fake_docker import FakeDocker
from receiver_harness import install


@pytest.fixture(name="fake_docker")
def fake_docker_fixture(tmp_path):
    """A started FakeDocker whose socket and data root are in ``tmp_path``; closed after the test."""
    with FakeDocker(str(tmp_path)) as fake:
        yield fake


@pytest.fixture
def host(tmp_path, fake_docker):
    """An edge: receiver installed, Docker (fake) with the prepared container, a valid ticket for it."""
    inst = install(str(tmp_path / "edge"), allowed=[fake_docker.data_root, str(tmp_path / "edge" / "dumps")])
    upper = os.path.join(fake_docker.data_root, "overlay2", "apache", "diff")
    vol = os.path.join(fake_docker.data_root, "volumes", "data", "_data")
    ckpt = os.path.join(inst.dump_dir, "apache.restore", "edgemig")
    for d in (upper, vol, ckpt):
        os.makedirs(d)
    doc = fake_docker.add_container("apache", upper_dir=upper)
    tid = inst.issue({"checkpoint": ckpt, "layer": upper, "volume/data": vol,
                      "warm": os.path.join(inst.dump_dir, "apache.warm")},
                     clear=["layer", "volume/data", "warm"], create=["warm"], service="apache",
                     restore={"name": "apache", "container_id": doc["Id"], "docker_host": fake_docker.url,
                              "health": None, "address": None, "interface": None})
    canary = tmp_path / "outside"
    canary.mkdir()
    (canary / "keep").write_text("secret")
    (tmp_path / "outside-link").symlink_to(canary)
    return inst, tid, fake_docker, tmp_path
