# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os

import pytest
from fakes import CriuDocker, FakeDockerAPI, container

from ansible_collections.edgemig.migration.plugins.module_utils.common.migration_state import (
    held_dir_for,
    read_held,
    write_held,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker import checkpoint as ck
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError


@pytest.fixture
def dumps(tmp_path):
    """A dump dir of the test's own: the held records go beside it (``tmp_path/held``)."""
    return str(tmp_path / "dumps")


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
    # runc 1.1's own wording (Docker's checkpoint call passes it on)
    assert ck.criu_errors(f"criu failed: type DUMP errno 0\nlog file: {log}: unknown", str(tmp_path / "none")) \
        == "(00.2) Error (criu/sk-inet.c:188): sockets: Can't get 1:16 opt"


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


def test_failed_checkpoint_leaves_the_service_running(tmp_path, dumps):
    api = FakeDockerAPI(containers={"apache": container("apache")},
                        fail={"create_checkpoint": DockerAPIError(500, "criu failed")})
    with pytest.raises(ck.CheckpointError, match="checkpoint of 'apache' failed: criu failed$"):
        ck.create(api, "apache", dumps, "edgemig")
    assert api.containers["apache"]["State"]["Running"] is True and os.listdir(dumps) == []
    assert os.listdir(tmp_path / "held") == []


def with_policy(name: str, policy: str) -> dict:
    c = container(name)
    c["HostConfig"]["RestartPolicy"] = {"Name": policy, "MaximumRetryCount": 0}
    return c


@pytest.mark.parametrize("policy", ["always", "unless-stopped", "on-failure"])
def test_a_stopping_checkpoint_holds_the_restart_policy(dumps, policy):
    # Docker would start the stopped source again, cold, while the target restores: two copies.
    api = CriuDocker(containers={"apache": with_policy("apache", policy)})
    res = ck.create(api, "apache", dumps, "edgemig")
    kinds = [c[0] for c in api.calls]
    assert kinds.index("update") < kinds.index("checkpoint")
    assert api.containers["apache"]["HostConfig"]["RestartPolicy"] == {"Name": "no"}
    assert res["restart_policy"] == {"Name": policy, "MaximumRetryCount": 0}
    ck.resume_restarts(api, "apache", res["restart_policy"])
    assert api.containers["apache"]["HostConfig"]["RestartPolicy"]["Name"] == policy


@pytest.mark.parametrize("policy", ["no", ""])
def test_no_restart_policy_is_left_untouched(tmp_path, policy):
    api = CriuDocker(containers={"apache": with_policy("apache", policy)})
    assert ck.create(api, "apache", str(tmp_path / "dumps"), "edgemig")["restart_policy"] is None
    assert ck.create(CriuDocker(containers={"apache": with_policy("apache", "always")}), "apache",
                     str(tmp_path / "b"), "edgemig", exit_container=False)["restart_policy"] is None
    assert "update" not in [c[0] for c in api.calls]


def test_a_failed_checkpoint_gives_the_restart_policy_back(tmp_path, dumps):
    api = FakeDockerAPI(containers={"apache": with_policy("apache", "unless-stopped")},
                        fail={"create_checkpoint": DockerAPIError(500, "criu failed")})
    with pytest.raises(ck.CheckpointError, match="criu failed") as info:
        ck.create(api, "apache", dumps, "edgemig")
    assert not isinstance(info.value, ck.RestartPolicyError)
    assert api.containers["apache"]["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert api.containers["apache"]["State"]["Running"] is True
    assert read_held(str(tmp_path / "held"), "apache") is None      # given back: the record went


def test_a_policy_that_cannot_be_held_stops_before_the_freeze(tmp_path, dumps):
    api = FakeDockerAPI(containers={"apache": with_policy("apache", "always")},
                        fail={"update_container": DockerAPIError(500, "no")})
    with pytest.raises(ck.CheckpointError, match="not started: its restart policy could not be held"):
        ck.create(api, "apache", dumps, "edgemig")
    assert "checkpoint" not in [c[0] for c in api.calls] and os.listdir(dumps) == []
    assert read_held(str(tmp_path / "held"), "apache") is None      # nothing held: nothing recorded


def test_create_goes_through_containerd_when_the_shim_says_how(tmp_path, monkeypatch):
    task = {"ctr": "/usr/bin/ctr", "address": "/run/containerd/containerd.sock", "namespace": "moby"}
    seen = {}

    def fake_dump(t, cid, image_path, work_path, exit_container=True, timeout=300.0):
        seen.update(task=t, cid=cid, image_path=image_path, work_path=work_path, exit=exit_container)
        os.makedirs(image_path)
        (tmp_path / "written").write_text("x")
        with open(os.path.join(image_path, "pages-1.img"), "wb") as fh:
            fh.write(b"\1" * 4096)

    monkeypatch.setattr(ck.containerd_dump, "task_of", lambda cid, pid: task)
    monkeypatch.setattr(ck.containerd_dump, "dump", fake_dump)
    api = FakeDockerAPI(containers={"apache": container("apache")})
    res = ck.create(api, "apache", str(tmp_path / "dumps"), "edgemig")
    assert res["checkpoint_via"] == "containerd"
    assert "checkpoint" not in [c[0] for c in api.calls]  # Docker's slow call not made
    assert seen["image_path"] == res["checkpoint_dir"] and seen["exit"] is True
    assert seen["work_path"] == os.path.join(res["work_dir"], ck.CRIU_WORK)  # beside, not inside: not sent
    assert res["sizes"]["pages"] == 4096


def test_a_failed_dump_through_containerd_names_criu_errors(tmp_path, monkeypatch):
    def fake_dump(t, cid, image_path, work_path, exit_container=True, timeout=300.0):
        with open(os.path.join(work_path, "dump.log"), "w") as fh:
            fh.write("(00.2) Error (criu/files.c:1): cannot dump fd\n")
        raise ck.containerd_dump.ContainerdDumpError("ctr: criu failed: type NOTIFY errno 0")

    monkeypatch.setattr(ck.containerd_dump, "task_of", lambda cid, pid: {"ctr": "ctr", "address": "a",
                                                                         "namespace": "moby"})
    monkeypatch.setattr(ck.containerd_dump, "dump", fake_dump)
    api = FakeDockerAPI(containers={"apache": container("apache")})
    with pytest.raises(ck.CheckpointError, match="criu failed.*CRIU says: .*cannot dump fd"):
        ck.create(api, "apache", str(tmp_path), "edgemig")
    assert api.containers["apache"]["State"]["Running"] is True and os.listdir(tmp_path) == []


def test_a_failed_dump_through_docker_names_criu_errors_from_the_log_containerd_names(tmp_path, monkeypatch):
    """Docker's checkpoint call (no ctr): containerd's message names the log it copied into the bundle."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "criu-dump.log").write_text("(00.1) Error (criu/files.c:556): Can't dump fd 7: anon io_uring\n")
    monkeypatch.setattr(ck.containerd_dump, "task_of", lambda cid, pid: None)
    api = FakeDockerAPI(containers={"apache": container("apache")},
                        fail={"create_checkpoint": DockerAPIError(
                            500, f"criu failed: type DUMP errno 0 path= {bundle}/criu-dump.log: unknown")})
    dumps = tmp_path / "dumps"
    with pytest.raises(ck.CheckpointError, match="type DUMP.*CRIU says: .*anon io_uring"):
        ck.create(api, "apache", str(dumps), "edgemig")
    assert api.containers["apache"]["State"]["Running"] is True


def test_an_unexpected_error_in_the_dump_still_gives_the_policy_back(tmp_path, dumps, monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(ck, "dump", broken)
    api = FakeDockerAPI(containers={"apache": with_policy("apache", "always")})
    with pytest.raises(RuntimeError):
        ck.create(api, "apache", dumps, "edgemig")
    assert api.containers["apache"]["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert read_held(str(tmp_path / "held"), "apache") is None


# ---------------------------------------------------------------- the held record (issue 23, item 5)
class RefusesGiveBack(CriuDocker):
    """Docker that takes the policy away but refuses to give it back (as it does for a container
    with AutoRemove, or with its daemon gone)."""

    def update_container(self, name, body):
        if body["RestartPolicy"]["Name"] != "no":
            self.calls.append(("update", name, body))
            raise DockerAPIError(400, "Restart policy cannot be updated because AutoRemove is enabled")
        super().update_container(name, body)


def test_held_records_live_beside_the_dump_tmpfs_not_in_it():
    assert held_dir_for("/var/lib/edgemig/dumps") == "/var/lib/edgemig/held"
    assert held_dir_for("/var/lib/edgemig-lab/edge1/dumps/") == "/var/lib/edgemig-lab/edge1/held"
    assert ck.held_dir_of("/var/lib/edgemig/dumps/apache-20260101T000000-1/edgemig") == "/var/lib/edgemig/held"
    assert ck.held_dir_of(None) is None


def test_the_policy_is_recorded_durably_before_it_changes(tmp_path, dumps, monkeypatch):
    api = CriuDocker(containers={"apache": with_policy("apache", "unless-stopped")})
    held_dir = str(tmp_path / "held")
    synced, seen = [], []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    real_update = api.update_container

    def update(name, body):
        seen.append((read_held(held_dir, "apache"), list(synced)))
        real_update(name, body)
    api.update_container = update
    res = ck.create(api, "apache", dumps, "edgemig")
    record, synced_then = seen[0]      # at the moment the policy is set to "no"
    assert record["restart_policy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert record["container"] == api.containers["apache"]["Id"] and record["checkpoint_dir"] == res["checkpoint_dir"]
    # the file's data (before its rename into place), then the dir holding the rename
    assert synced_then == [f"{os.path.join(held_dir, 'apache.json')}.{os.getpid()}.tmp", held_dir]
    assert os.stat(os.path.join(held_dir, "apache.json")).st_mode & 0o777 == 0o600
    assert os.stat(held_dir).st_mode & 0o777 == 0o700
    assert set(record) <= {"service", "container", "restart_policy", "time", "work_dir", "checkpoint_dir"}
    assert res["held_dir"] == held_dir and res["held_fs"]


def test_even_no_policy_is_recorded_a_checkpoint_that_leaves_it_running_records_nothing(tmp_path, dumps):
    api = CriuDocker(containers={"apache": with_policy("apache", "no")})
    ck.create(api, "apache", dumps, "edgemig")
    # A reboot empties the dump tmpfs: this record alone still says a checkpoint stopped it.
    assert read_held(str(tmp_path / "held"), "apache")["restart_policy"] is None
    api = CriuDocker(containers={"tomcat": with_policy("tomcat", "always")})
    ck.create(api, "tomcat", dumps, "edgemig", exit_container=False)
    assert read_held(str(tmp_path / "held"), "tomcat") is None


def test_a_record_that_cannot_be_written_stops_before_the_policy_changes(tmp_path, dumps):
    (tmp_path / "held").write_text("a file where the dir should be")
    api = CriuDocker(containers={"apache": with_policy("apache", "always")})
    with pytest.raises(ck.CheckpointError, match="not started: its restart policy could not be recorded in"):
        ck.create(api, "apache", dumps, "edgemig")
    assert api.calls == [] and os.listdir(dumps) == []


def test_an_own_held_dir_is_taken(tmp_path, dumps):
    api = CriuDocker(containers={"apache": with_policy("apache", "always")})
    ck.create(api, "apache", dumps, "edgemig", held_dir=str(tmp_path / "elsewhere"))
    assert read_held(str(tmp_path / "elsewhere"), "apache")["restart_policy"]["Name"] == "always"


def test_a_hold_whose_answer_was_lost_keeps_its_record(tmp_path, dumps):
    """Docker applied ``no`` but the answer was lost: the record stays, so the policy is not lost."""
    class LostAnswer(CriuDocker):
        def update_container(self, name, body):
            super().update_container(name, body)
            raise DockerAPIError(0, "timed out")
    api = LostAnswer(containers={"apache": with_policy("apache", "always")})
    with pytest.raises(ck.CheckpointError, match="could not be held: timed out"):
        ck.create(api, "apache", dumps, "edgemig")
    assert read_held(str(tmp_path / "held"), "apache")["restart_policy"]["Name"] == "always"


def test_a_refused_give_back_is_an_error_that_says_so(tmp_path, dumps):
    api = RefusesGiveBack(containers={"apache": with_policy("apache", "unless-stopped")},
                          fail={"create_checkpoint": DockerAPIError(500, "criu failed")})
    with pytest.raises(ck.RestartPolicyError) as info:
        ck.create(api, "apache", dumps, "edgemig")
    msg = str(info.value)
    assert "checkpoint of 'apache' failed: criu failed" in msg
    assert "restart policy of 'apache' could not be given back: it was 'unless-stopped'" in msg
    assert "docker update --restart unless-stopped apache" in msg and "AutoRemove" in msg
    assert api.containers["apache"]["State"]["Running"] is True        # the service still runs
    # ... and the record stays, so that a recovery gives the policy back later.
    assert read_held(str(tmp_path / "held"), "apache")["restart_policy"]["Name"] == "unless-stopped"


def test_resume_restarts_names_the_policy_docker_refused():
    api = RefusesGiveBack(containers={"apache": with_policy("apache", "no")})
    with pytest.raises(ck.RestartPolicyError, match=r"it was 'on-failure:3' .*--restart on-failure:3 apache"):
        ck.resume_restarts(api, "apache", {"Name": "on-failure", "MaximumRetryCount": 3})
    ck.resume_restarts(api, "apache", None)        # nothing held: nothing asked


def test_give_back_drops_only_the_record_of_that_container(tmp_path):
    held_dir = str(tmp_path / "held")
    api = FakeDockerAPI(containers={"apache": with_policy("apache", "no")})
    write_held(held_dir, "apache", "another-container", {"Name": "always", "MaximumRetryCount": 0})
    ck.give_back(api, "apache", {"Name": "always", "MaximumRetryCount": 0}, held_dir, api.containers["apache"]["Id"])
    assert read_held(held_dir, "apache")["container"] == "another-container"
    ck.give_back(api, "apache", None, held_dir, "another-container")
    assert read_held(held_dir, "apache") is None
