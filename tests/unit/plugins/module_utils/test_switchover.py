# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from fakes import FakeDockerAPI, container
from test_criu_images import STATS_RESTORE

from ansible_collections.edgemig.migration.plugins.module_utils.docker import switchover as sw
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.tmpfs_restore import criu_restore_stats


@pytest.fixture
def ip(monkeypatch):
    """`ip` and gratuitous ARP in memory: addresses on one interface, commands and ARPs recorded."""
    state = {"addrs": [], "ran": [], "garp": []}

    def run(cmd, capture_output=True, text=True, check=False):
        state["ran"].append(cmd[1:])
        args = cmd[1:]
        if args[:2] == ["-j", "addr"]:
            out = json.dumps([{"ifname": "eth0", "address": "02:00:00:00:00:01",
                               "addr_info": [{"local": a} for a in state["addrs"]]}])
            return subprocess.CompletedProcess(cmd, 0, out, "")
        if args[:2] == ["addr", "add"]:
            state["addrs"].append(args[2].split("/")[0])
        elif args[:2] == ["addr", "del"]:
            if args[2].split("/")[0] not in state["addrs"]:
                return subprocess.CompletedProcess(cmd, 2, "", "RTNETLINK answers: Cannot assign requested address")
            state["addrs"].remove(args[2].split("/")[0])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(sw.subprocess, "run", run)
    monkeypatch.setattr(sw, "send_garp", lambda iface, mac, addr, count: state["garp"].append((iface, mac, addr, count)))
    return state


def test_set_address_adds_announces_and_is_idempotent(ip):
    assert sw.set_address("eth0", "10.213.0.101", True) is True
    assert ip["addrs"] == ["10.213.0.101"] and ["addr", "add", "10.213.0.101/32", "dev", "eth0"] in ip["ran"]
    assert ip["garp"] == [("eth0", "02:00:00:00:00:01", "10.213.0.101", 3)]
    assert sw.set_address("eth0", "10.213.0.101", True) is False        # already there: announced again only
    assert len(ip["garp"]) == 2
    assert sw.set_address("eth0", "10.213.0.101", False) is True and ip["addrs"] == []
    assert sw.set_address("eth0", "10.213.0.101", False) is False
    assert len(ip["garp"]) == 2                                          # nothing announced on removal


def test_ip_failure_raises_with_its_stderr(monkeypatch):
    monkeypatch.setattr(sw.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 1, "", 'Device "nope0" does not exist.\n'))
    with pytest.raises(sw.SwitchoverError, match='ip -j addr show dev nope0: Device "nope0" does not exist.'):
        sw.address_present("nope0", "10.213.0.101")


@pytest.fixture
def target(monkeypatch, tmp_path):
    """A stopped apache on a fake Docker with a real data root, and its images on the dump tmpfs."""
    (tmp_path / "docker").mkdir()
    api = FakeDockerAPI(containers={"apache": container("apache", running=False)},
                        info={"DockerRootDir": str(tmp_path / "docker")})
    api.container_dir("apache")
    ckpt = tmp_path / "dumps" / "apache.restore" / "cp1"
    ckpt.mkdir(parents=True)
    (ckpt / "pages-1.img").write_bytes(b"p")
    monkeypatch.setattr(sw, "DockerAPI", lambda url, tls: api)
    return api, {"name": "apache", "checkpoint_dir": str(ckpt), "address": "10.213.0.101", "interface": "eth0"}


def test_restore_and_switch(ip, target):
    api, spec = target
    out = sw.restore_and_switch(spec)
    assert api.calls == [("start", "apache-id-0123456789abcdef", "cp1")] and ip["addrs"] == ["10.213.0.101"]
    assert api.restored_from == [["pages-1.img"]]
    assert not os.path.exists(spec["checkpoint_dir"])        # the memory images are gone once it runs
    assert set(out) == {"restore_s", "health_s", "switch_s"} and out["health_s"] == 0.0


def criu_task_dir(api, cid="apache-id-0123456789abcdef"):
    """containerd's task dir under the fake Docker root, with CRIU's restore stats and log."""
    task = os.path.join(api.info()["DockerRootDir"], "containerd", "daemon", "io.containerd.runtime.v2.task", "moby", cid)
    os.makedirs(task)
    with open(os.path.join(task, "stats-restore"), "wb") as fh:
        fh.write(STATS_RESTORE)
    with open(os.path.join(task, "restore.log"), "w") as fh:
        fh.write("(00.000010) Version: 4.2\n(00.322814) Restore finished successfully. Tasks resumed.\n"
                 "(00.322917) \tRPC\n")
    # Written "during" the restore: 30 s ahead, so a stalled test machine cannot make it look stale.
    ahead = time.time() + 30
    os.utime(os.path.join(task, "stats-restore"), (ahead, ahead))
    return task


def test_restore_reports_criu_own_share_when_containerd_kept_its_stats(ip, target):
    api, spec = target
    criu_task_dir(api)
    out = sw.restore_and_switch(spec)
    assert out["criu_restore"] == {"pages_compared": 0, "pages_skipped_cow": 0, "forking_s": 3e-06,
                                   "restore_s": 0.309153, "pages_restored": 14163, "total_s": 0.322917}


def test_criu_restore_stats_only_from_a_fresh_file(target):
    api, _spec = target
    task = criu_task_dir(api)
    root = api.info()["DockerRootDir"]
    assert criu_restore_stats(root, "apache-id-0123456789abcdef", time.time())["restore_s"] == 0.309153
    assert criu_restore_stats(root, "apache-id-0123456789abcdef", time.time() + 90) is None  # an earlier restore's
    assert criu_restore_stats(root, "another-id", time.time()) is None
    os.unlink(os.path.join(task, "restore.log"))
    assert "total_s" not in criu_restore_stats(root, "apache-id-0123456789abcdef", time.time())
    with open(os.path.join(task, "stats-restore"), "wb") as fh:
        fh.write(b"garbage")
    assert criu_restore_stats(root, "apache-id-0123456789abcdef", time.time()) is None


def test_restore_failure_moves_no_address_and_fencing_discards_the_images(ip, target):
    api, spec = target
    api.fail["start_container"] = DockerAPIError(500, "criu restore failed")
    with pytest.raises(sw.SwitchoverError, match="restore of 'apache' from its checkpoint failed: criu restore failed"):
        sw.restore_and_switch(spec)
    assert ip["addrs"] == [] and os.path.isdir(spec["checkpoint_dir"])
    assert sw.fence(spec) is True
    assert not os.path.exists(spec["checkpoint_dir"]) and "apache" not in api.containers


def test_unhealthy_restore_moves_no_address(ip, target, monkeypatch):
    _api, spec = target
    monkeypatch.setattr(sw, "wait_healthy", lambda health, api, name: (False, 30.0, "HTTP 503"))
    with pytest.raises(sw.SwitchoverError, match="health check failed: HTTP 503"):
        sw.restore_and_switch(dict(spec, health={"type": "http"}))
    assert ip["addrs"] == []


RESTORE_LOG = ("(00.012000) Warn  (criu/cr-restore.c:100): not a reason\n"
               "(00.013000) Error (criu/sk-unix.c:1912): unix: External socket found in image. "
               "Consider using the --ext-unix-sk option to allow restoring it.\n"
               "(00.014000) Error (criu/cr-restore.c:2471): Restoring FAILED.\n")


def test_a_failed_restore_names_criu_own_error_lines_from_the_task_restore_log(ip, target):
    api, spec = target
    task = criu_task_dir(api)
    with open(os.path.join(task, "restore.log"), "w") as fh:
        fh.write(RESTORE_LOG)
    api.fail["start_container"] = DockerAPIError(500, "OCI runtime restore failed: criu failed: type NOTIFY errno 0")
    with pytest.raises(sw.SwitchoverError) as err:
        sw.restore_and_switch(spec)
    msg = str(err.value)
    assert "criu failed: type NOTIFY errno 0; CRIU says:" in msg
    assert "External socket found in image" in msg and "Restoring FAILED" in msg and "not a reason" not in msg


def test_a_failed_restore_reads_the_log_runc_names(ip, target, tmp_path):
    api, spec = target
    log = tmp_path / "elsewhere" / "restore.log"
    log.parent.mkdir()
    log.write_text(RESTORE_LOG)
    api.fail["start_container"] = DockerAPIError(500, f"criu failed: type NOTIFY errno 0\nlog file: {log}: unknown")
    with pytest.raises(sw.SwitchoverError, match="CRIU says: .*External socket found in image"):
        sw.restore_and_switch(spec)


def test_a_stale_restore_log_is_not_blamed(ip, target):
    api, spec = target
    task = criu_task_dir(api)
    with open(os.path.join(task, "restore.log"), "w") as fh:
        fh.write(RESTORE_LOG)
    os.utime(os.path.join(task, "restore.log"), (1, 1))  # an earlier restore's
    api.fail["start_container"] = DockerAPIError(500, "criu failed: type NOTIFY errno 0")
    with pytest.raises(sw.SwitchoverError) as err:
        sw.restore_and_switch(spec)
    assert "CRIU says" not in str(err.value)


class _Ready:
    """A DockerReady that answered in time (the receiver started it before the freeze)."""

    def __init__(self, api, root):
        self.api, self.root = api, root

    def ready(self):
        return self.api, self.root


def test_restore_with_docker_asked_before_the_freeze_asks_no_info(ip, target, monkeypatch):
    api, spec = target
    root = api.info()["DockerRootDir"]

    def no_info():
        raise AssertionError("GET /info on the downtime path")
    monkeypatch.setattr(api, "info", no_info)
    out = sw.restore_and_switch(spec, ready=_Ready(api, root))
    assert api.calls == [("start", "apache-id-0123456789abcdef", "cp1")] and "restore_s" in out


def test_restore_asks_docker_itself_when_ready_had_no_answer(ip, target):
    api, spec = target
    out = sw.restore_and_switch(spec, ready=_Ready(None, None))
    assert api.calls == [("start", "apache-id-0123456789abcdef", "cp1")] and "restore_s" in out


def test_docker_ready_without_docker_leaves_the_restore_to_ask(tmp_path):
    ready = sw.DockerReady({"docker_host": f"unix://{tmp_path}/no-docker.sock"})
    ready.join(10)
    assert ready.ready() == (None, None)


def prepared(running=False, status="created", started=sw.NEVER_STARTED, name="apache"):
    c = container(name, running=running)
    c["State"].update(Status=status, StartedAt=started)
    return c


@pytest.mark.parametrize("state, removed", [
    (dict(), True),                                                   # created, never started: goes
    (dict(status="exited", started="2026-12-05T10:00:00Z"), False),    # it ran once: may hold state
    (dict(running=True, status="running", started="2026-12-05T10:00:00Z"), False),
    (dict(status="created", started="2026-12-05T10:00:00Z"), False),   # created again after a run? kept
])
def test_give_back_prepared_removes_only_a_container_never_started(state, removed, tmp_path):
    api = FakeDockerAPI(containers={"apache": prepared(**state)})
    (tmp_path / "apache.restore" / "cp1").mkdir(parents=True)
    spec = {"name": "apache", "container_id": "apache-id-0123456789abcdef", "state_dir": str(tmp_path)}
    assert sw.give_back_prepared(spec, api) is removed
    assert ("apache" in api.containers) is not removed
    assert (tmp_path / "apache.restore").exists() is not removed     # its checkpoint dir goes with it


def test_give_back_prepared_never_removes_another_name_or_a_missing_one():
    # The ID under another name (the ticket names both): not this ticket's container.
    api = FakeDockerAPI(containers={"other": prepared(name="other")})
    assert sw.give_back_prepared({"name": "apache", "container_id": "other-id-0123456789abcdef"}, api) is False
    assert "other" in api.containers
    assert sw.give_back_prepared({"name": "apache", "container_id": "apache-id-0123456789abcdef"},
                                 FakeDockerAPI()) is False
    # No ID in the ticket: never whatever holds the name now (prepared_inspect would look it up by name).
    api = FakeDockerAPI(containers={"apache": prepared()})
    assert sw.give_back_prepared({"name": "apache"}, api) is False
    assert "apache" in api.containers


def test_give_back_prepared_is_best_effort_when_docker_fails():
    api = FakeDockerAPI(containers={"apache": prepared()}, fail={"inspect_container": RuntimeError("down")})
    assert sw.give_back_prepared({"name": "apache", "container_id": "apache-id-0123456789abcdef"}, api) is False
