# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os

import pytest
from fakes import CriuDocker, FakeDockerAPI, container

from ansible_collections.edgemig.migration.plugins.module_utils import checkpoint as ck
from ansible_collections.edgemig.migration.plugins.module_utils.docker_api import DockerAPIError


def test_sizes_split_pages_from_other_images(tmp_path):
    (tmp_path / "pages-1.img").write_bytes(b"p" * 8192)
    (tmp_path / "pagemap-1.img").write_bytes(b"m" * 100)
    (tmp_path / "core-1.img").write_bytes(b"c" * 50)
    sizes = ck.checkpoint_sizes(str(tmp_path))
    assert sizes["pages"] == 8192 and sizes["other"] == 150
    assert ck.tree_size(str(tmp_path)) == 8342
    assert ck.tree_size(None) == 0 and ck.tree_size(str(tmp_path / "missing")) == 0


def test_fs_type_of_the_longest_mount_prefix():
    assert ck.fs_type("/proc/self") == "proc"
    assert ck.fs_type("/") != "unknown"


def test_criu_errors_come_from_the_log_runc_names(tmp_path):
    log = tmp_path / "dump.log"
    log.write_text("(00.1) ok\n(00.2) Error (criu/sk-inet.c:188): sockets: Can't get 1:16 opt\n(00.3) done\n")
    assert ck.criu_errors(f"criu failed: type NOTIFY errno 0 path= {log}", str(tmp_path / "none")) \
        == "(00.2) Error (criu/sk-inet.c:188): sockets: Can't get 1:16 opt"
    assert ck.criu_errors("criu failed", str(tmp_path / "none")) == ""


def test_create_reports_what_a_migration_moves(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "f").write_bytes(b"x" * 10)
    c = container("apache")
    c["GraphDriver"]["Data"]["UpperDir"] = str(upper)
    api = CriuDocker(containers={"apache": c})
    res = ck.create(api, "apache", str(tmp_path / "dumps"), "edgemig")
    assert os.stat(tmp_path / "dumps").st_mode & 0o777 == 0o700
    assert res["checkpoint_dir"] == os.path.join(res["work_dir"], "edgemig")
    assert res["sizes"] == {"pages": 4096, "other": 0, "layer": 10, "volumes": 0, "total": 4106}
    assert res["container_id"] == c["Id"] and res["upper_dir"] == str(upper)
    assert api.containers["apache"]["State"]["Running"] is False


@pytest.mark.parametrize("containers, message", [({}, "does not exist"),
                                                 ({"apache": container("apache", running=False)}, "is not running")])
def test_create_refuses_what_cannot_be_checkpointed(tmp_path, containers, message):
    with pytest.raises(ck.CheckpointError, match=message):
        ck.create(FakeDockerAPI(containers=containers), "apache", str(tmp_path), "edgemig")
    assert os.listdir(tmp_path) == []


def test_failed_checkpoint_leaves_the_service_running(tmp_path):
    api = FakeDockerAPI(containers={"apache": container("apache")},
                        fail={"create_checkpoint": DockerAPIError(500, "criu failed")})
    with pytest.raises(ck.CheckpointError, match="checkpoint of 'apache' failed: criu failed$"):
        ck.create(api, "apache", str(tmp_path), "edgemig")
    assert api.containers["apache"]["State"]["Running"] is True and os.listdir(tmp_path) == []
