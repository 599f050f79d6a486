# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import contextlib
import os

import pytest
from fakes import CriuDocker, container, run_module, use_api

from ansible_collections.edgemig.migration.plugins.module_utils.common.migration_state import read_state
from ansible_collections.edgemig.migration.plugins.module_utils.driver import migration_driver as driver, recovery
from ansible_collections.edgemig.migration.plugins.module_utils.sender.precopy import WarmSession, WarmState
from ansible_collections.edgemig.migration.plugins.module_utils.sender.ssh_stream import OutcomeUnknown, TransferError
from ansible_collections.edgemig.migration.plugins.modules import edge_migrate as mod


class FakeStream:
    """SshStream without SSH: an exception in ``errors`` makes stream() raise it, as a broken transfer
    would; one in ``final`` makes outcome() (the answer after COMMIT) raise it. A precopy.WarmSession
    with SshStream's defaults (a fresh WarmState, the model policy)."""

    instances: list = []
    errors: list[Exception] = []
    final: list[Exception] = []

    def __init__(self, dest, **kw):
        self.dest, self.kw, self.streamed, self.closed = dest, kw, None, False
        self.connect_s = 0.01
        self.committed = self.aborted = None
        self.kept_alive = 0
        self.warm = WarmState()
        FakeStream.instances.append(self)

    def warm_round(self, roots, memory_pids=None, *, policy="model", **kw):
        return self.stream(roots, policy=policy, warm=self.warm, **kw)

    def keepalive(self):
        self.kept_alive += 1
        return contextlib.nullcontext()

    def open(self):
        return self

    def stream(self, roots, **kw):
        self.streamed, self.stream_kw = roots, kw
        if FakeStream.errors:
            raise FakeStream.errors[0]
        return {"bytes_raw": 8192, "receiver": None, "timeline": [{"t": 0.0}]}

    def commit(self, migration=""):
        self.committed = migration

    def abort(self, reason):
        self.aborted = reason

    def outcome(self, limit, silence):
        if FakeStream.final:
            raise FakeStream.final[0]
        return {"ok": True, "switchover": {"restore_s": 0.2, "health_s": 0.1}}

    def close(self):
        self.closed = True


def test_the_fake_is_a_warm_session():
    assert isinstance(FakeStream("d"), WarmSession)


TARGET = {"host": "10.213.0.12", "ticket": "0123456789abcdef0123456789abcdef"}


@pytest.fixture
def env(monkeypatch, tmp_path):
    FakeStream.instances, FakeStream.errors, FakeStream.final = [], [], []
    monkeypatch.setattr(driver, "SshStream", FakeStream)
    monkeypatch.setattr(mod.signal, "signal", lambda *a: None)   # leave the test process's signals alone
    monkeypatch.setattr(driver, "interface_exists", lambda name: True)
    monkeypatch.delenv("EDGEMIG_FAULTS", raising=False)
    addr_calls = []
    # The driver takes the address off; the rollback (recovery.bring_up) puts it back.
    for owner in (driver, recovery):
        monkeypatch.setattr(owner, "set_address",
                            lambda iface, addr, present, *a, **kw: addr_calls.append((addr, present)) or True)
    (tmp_path / "docker").mkdir()
    api = use_api(monkeypatch, mod, CriuDocker(containers={"apache": container("apache")},
                                               info={"DockerRootDir": str(tmp_path / "docker")}))
    api.container_dir("apache")
    return api, addr_calls, tmp_path


def args(tmp_path, **kw):
    # Stop-and-copy unless a test asks for pre-copy (test_precopy_* below).
    return dict({"name": "apache", "dump_dir": str(tmp_path / "dumps"), "target": TARGET, "precopy": False}, **kw)


def test_migrates_and_cleans_up(env):
    api, addr_calls, tmp_path = env
    failed, res = run_module(mod, args(tmp_path, address="10.213.0.101", interface="eth0"))
    assert not failed and res["changed"] is True, res
    s = FakeStream.instances[0]
    # The sender names the target's ticket and nothing else about the target's side.
    assert s.dest == TARGET["ticket"] and s.kw["commit"] is True
    assert set(s.kw) == {"host", "port", "user", "key_file", "known_hosts", "receiver_dir", "commit",
                         "stall_timeout", "link_share"}
    assert [r[0] for r in s.streamed] == ["checkpoint", "layer"] and s.closed
    assert addr_calls == [("10.213.0.101", False)]                  # the address left the source
    assert res["durations"]["restore_s"] == 0.2 and "downtime_s" in res["durations"]
    assert res["sizes"]["pages"] == 4096 and res["timeline"] == [{"t": 0.0}]
    assert os.listdir(tmp_path / "dumps") == [".edgemig-state"]    # the dump is always removed
    assert read_state(str(tmp_path / "dumps"), "apache") is None   # and the record, once switched
    assert s.committed and s.aborted is None                       # COMMIT sent, after the record
    assert "apache" not in api.containers and res["source_removed"] is True   # it runs on the target now


def test_failed_transfer_rolls_back_from_the_checkpoint(env):
    api, addr_calls, tmp_path = env
    FakeStream.errors.append(TransferError("link dropped"))
    failed, res = run_module(mod, args(tmp_path, address="10.213.0.101", interface="eth0"))
    assert failed and res["rolled_back"] == "checkpoint"
    assert res["msg"] == "migration failed: link dropped; the service was restored from its checkpoint on the source"
    assert ("start", "apache-id-0123456789abcdef", "edgemig") in api.calls and api.restored_from == [["pages-1.img"]]
    assert api.containers["apache"]["State"]["Running"] is True
    assert addr_calls == [("10.213.0.101", False), ("10.213.0.101", True)]   # and the address came back
    assert os.listdir(tmp_path / "dumps") == [".edgemig-state"]
    assert read_state(str(tmp_path / "dumps"), "apache") is None
    assert FakeStream.instances[0].committed is None and res["phase"] == "stream"


def test_rollback_falls_back_to_a_fresh_start(env, monkeypatch):
    api, _addr, tmp_path = env
    FakeStream.errors.append(TransferError("link dropped"))
    real_start = api.start_container

    def start(name, checkpoint=None, **kw):
        if checkpoint:
            api.calls.append(("start", name, checkpoint))
            raise driver.DockerAPIError(500, "restore failed")
        real_start(name)
    monkeypatch.setattr(api, "start_container", start)
    failed, res = run_module(mod, args(tmp_path))
    assert failed and res["rolled_back"] == "fresh_start" and "started again on the source" in res["msg"]
    assert api.containers["apache"]["State"]["Running"] is True


def test_nothing_is_frozen_when_the_target_cannot_be_reached(env, monkeypatch):
    api, _addr, tmp_path = env

    class Unreachable(FakeStream):
        def open(self):
            raise TransferError("no route to host")
    monkeypatch.setattr(driver, "SshStream", Unreachable)
    failed, res = run_module(mod, args(tmp_path))
    assert failed and res["rolled_back"] == "not_needed" and "no route to host" in res["msg"]
    assert api.calls == [] and api.containers["apache"]["State"]["Running"] is True


def test_precondition_failures(env):
    api, _addr, tmp_path = env
    failed, res = run_module(mod, args(tmp_path, target={"host": "h"}))
    assert failed and res["msg"] == "missing required arguments: ticket found in target"
    # A misspelt or an old key is an error, never a silent default.
    failed, res = run_module(mod, args(tmp_path, target=dict(TARGET, checkpoint_dir="/etc")))
    assert failed and "Unsupported parameters" in res["msg"] and "target.checkpoint_dir" in res["msg"]
    failed, res = run_module(mod, args(tmp_path, name="ghost"))
    assert failed and "'ghost' is not running here" in res["msg"] and res["rolled_back"] == "not_needed"
    failed, res = run_module(mod, args(tmp_path, address="10.213.0.101"))
    assert failed and "interface" in res["msg"]                    # required_together
    api.containers["apache"]["Mounts"] = [{"Type": "volume", "Name": "db", "Source": "/v/db", "Destination": "/d"}]
    failed, res = run_module(mod, args(tmp_path, target=dict(TARGET, volumes=[])))
    assert failed and "volume 'db' has no counterpart on the target" in res["msg"]
    assert api.calls == []


def test_client_connections_reads_published_ports(tmp_path, monkeypatch):
    table = ("  sl  local_address rem_address   st\n"
             "   0: 020011AC:0050 0B00D50A:C350 01 00000000:00000000 00:00000000 00000000     0        0 1\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **kw: real_open(tmp_path / "tcp", *a, **kw)
                        if path == "/proc/4242/net/tcp" else real_open(path, *a, **kw))
    (tmp_path / "tcp").write_text(table)
    inspect = {"State": {"Pid": 4242},
               "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"},
                                                          {"HostIp": "::", "HostPort": "8080"}],
                                               "53/udp": [{"HostPort": "53"}]}}}
    assert driver.client_connections(inspect) == [(8080, [("10.213.0.11", 50000)])]
    assert driver.client_connections({"State": {}}) == []


def test_lost_answer_after_commit_never_rolls_back(env):
    """COMMIT went out, the answer did not come back: the target may be serving. The source stays down."""
    api, addr_calls, tmp_path = env
    FakeStream.final.append(OutcomeUnknown("receiver silent for 16 s after COMMIT"))
    failed, res = run_module(mod, args(tmp_path, address="10.213.0.101", interface="eth0"))
    assert failed and res["rolled_back"] == "no" and res["outcome"] == "unknown" and res["phase"] == "committed"
    assert "committed, outcome unknown" in res["msg"] and "recover.yml" in res["msg"]
    assert api.containers["apache"]["State"]["Running"] is False          # not restarted here
    assert addr_calls == [("10.213.0.101", False)]                         # address not taken back
    rec = read_state(str(tmp_path / "dumps"), "apache")
    assert rec["phase"] == "committed" and os.path.isdir(rec["checkpoint_dir"])   # kept for the recovery


def test_fenced_target_lets_the_source_roll_back(env):
    api, addr_calls, tmp_path = env
    err = TransferError("receiver on 10.213.0.12 failed: 'apache' was restored but its health check failed")
    err.fenced = True
    FakeStream.final.append(err)
    failed, res = run_module(mod, args(tmp_path, address="10.213.0.101", interface="eth0"))
    assert failed and res["rolled_back"] == "checkpoint" and "fenced itself" in res["msg"]
    assert api.containers["apache"]["State"]["Running"] is True
    assert addr_calls[-1] == ("10.213.0.101", True)
    assert read_state(str(tmp_path / "dumps"), "apache") is None


def test_unfenced_target_failure_is_an_unknown_outcome(env):
    api, _addr, tmp_path = env
    FakeStream.final.append(TransferError("receiver on 10.213.0.12 failed: fencing failed"))
    failed, res = run_module(mod, args(tmp_path))
    assert failed and res["outcome"] == "unknown" and api.containers["apache"]["State"]["Running"] is False


def test_precopy_warms_the_target_then_streams_the_final_round_against_it(env, monkeypatch):
    api, _addr, tmp_path = env
    calls = {}

    def fake_warm_up(conn, roots, pids, **kw):
        calls.update(roots=roots, pids=pids, kw=kw, running=api.containers["apache"]["State"]["Running"])
        conn.warm = "state"
        return {"rounds": [{"round": 1, "bytes_raw": 10}], "reason": "converged", "predicted_final_s": 0.1}

    monkeypatch.setattr(driver, "warm_up", fake_warm_up)
    monkeypatch.setattr(driver, "container_processes", lambda pid: {pid: 1})
    failed, res = run_module(mod, args(tmp_path, precopy=True, downtime_target=0.5, target=TARGET))
    assert not failed, res
    s = FakeStream.instances[0]
    assert calls["running"] is True                       # the warm rounds ran before the freeze
    assert [r[0] for r in calls["roots"]] == ["layer"] and calls["kw"]["downtime_target"] == 0.5
    assert s.stream_kw["warm"] == "state"                 # the final round streams against the warm state
    assert s.kept_alive == 1                              # the armed receiver is fed during the checkpoint
    assert res["precopy"]["reason"] == "converged" and "final" in res["precopy"]


def test_a_failed_warm_phase_freezes_nothing(env, monkeypatch):
    api, _addr, tmp_path = env

    def broken(*a, **kw):
        raise OSError("link down")

    monkeypatch.setattr(driver, "warm_up", broken)
    monkeypatch.setattr(driver, "container_processes", lambda pid: {pid: 1})
    failed, res = run_module(mod, args(tmp_path, precopy=True))
    assert failed and res["rolled_back"] == "not_needed" and "warm pre-copy failed: link down" in res["msg"]
    assert api.containers["apache"]["State"]["Running"] is True and FakeStream.instances[0].closed


def test_a_volume_shared_with_another_running_container_is_refused_before_the_freeze(env):
    api, _addr, tmp_path = env
    mount = {"Type": "volume", "Name": "data", "Source": str(tmp_path / "v"), "Destination": "/data"}
    api.containers["apache"]["Mounts"] = [mount]
    api.containers["sidecar"] = container("sidecar")
    api.containers["sidecar"]["Mounts"] = [dict(mount)]
    failed, res = run_module(mod, args(tmp_path, target=dict(TARGET, volumes=[{"name": "data", "path": "/t/v"}])))
    assert failed and res["rolled_back"] == "not_needed"
    assert "data (also mounted by sidecar)" in res["msg"] and "nothing was frozen" in res["msg"]
    assert api.containers["apache"]["State"]["Running"] is True and FakeStream.instances == []


def test_a_gate_that_reaches_the_module_is_refused_never_skipped(env):
    """The gate is the action plugin's to ask; a module run without it must not move the service."""
    api, _addr, tmp_path = env
    failed, res = run_module(mod, args(tmp_path, gate="http://127.0.0.1:5055/gate/p/k"))
    assert failed and res["rolled_back"] == "not_needed" and "action plugin" in res["msg"]
    assert FakeStream.instances == [] and api.containers["apache"]["State"]["Running"] is True


def test_a_park_given_up_is_a_result_not_a_failure(env, monkeypatch):
    api, _addr, tmp_path = env
    gate = tmp_path / "gate"
    gate.mkdir(mode=0o700)
    monkeypatch.setattr(driver, "warm_up", lambda conn, *a, **kw: {"rounds": [], "reason": "converged"})
    failed, res = run_module(mod, args(tmp_path, precopy=True, park={"dir": str(gate), "timeout": 0.1}))
    assert not failed and res["changed"] is False, res
    assert res["parked"]["released"] is False and res["parked"]["why"] == "park timeout (0.1 s)"
    assert res["options"]["precopy"] is True and FakeStream.instances[0].closed
    assert api.containers["apache"]["State"]["Running"] is True and "checkpoint" not in str(api.calls)
