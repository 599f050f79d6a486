# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os
import socket

import pytest
from fakes import FakeDockerAPI, container, run_module, use_api

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.modules import docker_checkpoint_restore as mod

CONFIG = {"Image": "sha256:apache", "HostConfig": {}}


@pytest.fixture
def api(monkeypatch, tmp_path):
    (tmp_path / "docker").mkdir()
    fake = FakeDockerAPI(images={"sha256:apache": {"Id": "sha256:apache"}},
                         info={"DockerRootDir": str(tmp_path / "docker")})
    return use_api(monkeypatch, mod, fake)


def stopped(api, name="apache"):
    api.containers[name] = container(name, running=False)
    return api.container_dir(name)


def test_prepare_creates_without_starting_and_makes_the_checkpoint_dir_on_the_dump_tmpfs(api, tmp_path):
    dumps = tmp_path / "dumps"
    (dumps / "apache.restore" / "old").mkdir(parents=True)  # an abandoned attempt's images
    failed, res = run_module(mod, {"name": "apache", "stage": "prepare", "config": CONFIG, "dump_dir": str(dumps)})
    assert not failed and res["changed"] is True
    assert api.calls == [("create", "apache")] and api.containers["apache"]["State"]["Running"] is False
    assert res["checkpoint_dir"] == str(dumps / "apache.restore" / "edgemig")
    assert os.listdir(dumps / "apache.restore") == ["edgemig"] and os.listdir(res["checkpoint_dir"]) == []
    assert oct(os.stat(res["checkpoint_dir"]).st_mode & 0o777) == "0o700"


def test_prepare_replaces_a_stopped_leftover_refuses_a_running_one(api):
    api.containers["apache"] = container("apache", running=False)
    failed, res = run_module(mod, {"name": "apache", "stage": "prepare", "config": CONFIG})
    assert not failed and api.calls[:2] == [("remove", "apache", False), ("create", "apache")]
    api.containers["apache"]["State"]["Running"] = True
    api.calls.clear()
    failed, res = run_module(mod, {"name": "apache", "stage": "prepare", "config": CONFIG})
    assert failed and "already running" in res["msg"] and api.calls == []


def test_prepare_needs_the_shared_base_image(api):
    failed, res = run_module(mod, {"name": "apache", "stage": "prepare", "config": {"Image": "sha256:other"}})
    assert failed and "does not have image 'sha256:other'" in res["msg"] and "base_images" in res["msg"]


VOL_CONFIG = {"Image": "sha256:apache", "HostConfig": {"Mounts": [{"Type": "volume", "Source": "data",
                                                                   "Target": "/var/lib/mysql"}]}}


def test_prepare_refuses_a_volume_another_container_mounts_here(api):
    other = container("backup", running=False)
    other["Mounts"] = [{"Type": "volume", "Name": "data", "Destination": "/d"}]
    api.containers["backup"] = other
    failed, res = run_module(mod, {"name": "apache", "stage": "prepare", "config": VOL_CONFIG})
    assert failed and "also mounted by backup" in res["msg"] and "nothing was frozen" in res["msg"]
    assert ("create", "apache") not in api.calls


@pytest.mark.parametrize("volume", [{"Driver": "local", "Options": {"type": "nfs", "o": "addr=10.0.0.5"}},
                                    {"Driver": "rexray/ebs", "Options": {}}])
def test_prepare_refuses_a_volume_that_is_not_local_storage(api, volume):
    api.volumes["data"] = dict(volume, Name="data")
    failed, res = run_module(mod, {"name": "apache", "stage": "prepare", "config": VOL_CONFIG})
    assert failed and "not local storage" in res["msg"] and ("create", "apache") not in api.calls


def test_prepare_reuses_its_own_local_volume(api):
    api.volumes["data"] = {"Name": "data", "Driver": "local", "Options": None}
    leftover = container("apache", running=False)                 # the service's stopped leftover here
    leftover["Mounts"] = [{"Type": "volume", "Name": "data", "Destination": "/var/lib/mysql"}]
    api.containers["apache"] = leftover
    failed, res = run_module(mod, {"name": "apache", "stage": "prepare", "config": VOL_CONFIG})
    assert not failed, res


def test_prepare_requires_config():
    failed, res = run_module(mod, {"name": "apache", "stage": "prepare"})
    assert failed and "config" in res["msg"]


def test_restore_starts_from_the_images_on_the_tmpfs_deletes_them_then_is_a_no_op(api, tmp_path):
    cdir = stopped(api)
    ckpt = tmp_path / "dumps" / "apache.restore" / "edgemig"
    ckpt.mkdir(parents=True)
    (ckpt / "pages-1.img").write_bytes(b"p")
    failed, res = run_module(mod, {"name": "apache", "stage": "restore", "dump_dir": str(tmp_path / "dumps")})
    assert not failed and res["changed"] is True and res["restored_from_checkpoint"] is True
    assert api.calls == [("start", "apache-id-0123456789abcdef", "edgemig")]
    assert api.restored_from == [["pages-1.img"]]                  # Docker found them through its own dir
    assert not ckpt.exists() and os.listdir(cdir) == []           # images gone, no link left behind
    failed, res = run_module(mod, {"name": "apache", "stage": "restore"})
    assert not failed and res["changed"] is False and res["msg"] == "already running"


def test_restore_failure_with_and_without_fallback(api, tmp_path):
    stopped(api)
    failed, res = run_module(mod, {"name": "apache", "stage": "restore", "dump_dir": str(tmp_path / "dumps")})
    assert failed and "no checkpoint at" in res["msg"]

    starts = []

    def start(name, checkpoint=None, checkpoint_dir=None, timeout=None, allow_running=False):
        starts.append(checkpoint)
        if checkpoint:
            raise DockerAPIError(500, "restore failed")
        api.containers["apache"]["State"]["Running"] = True
    api.start_container = start
    failed, res = run_module(mod, {"name": "apache", "stage": "restore", "fallback_start": True})
    assert not failed and res["restored_from_checkpoint"] is False and "restore failed" in res["restore_error"]
    assert starts == ["edgemig", None]


def test_restore_of_a_missing_container_says_prepare_first(api):
    failed, res = run_module(mod, {"name": "ghost", "stage": "restore"})
    assert failed and "prepare it first" in res["msg"]


def test_restore_reads_checkpoint_source_in_place_and_keeps_a_users_own_checkpoints(api, tmp_path):
    cdir = stopped(api)
    os.makedirs(os.path.join(cdir, "checkpoints", "mine"))        # `docker checkpoint create` of the user's
    src = tmp_path / "dump" / "edgemig"
    src.mkdir(parents=True)
    (src / "pages-1.img").write_bytes(b"\0" * 4096)
    failed, res = run_module(mod, {"name": "apache", "stage": "restore", "checkpoint_source": str(src)})
    assert not failed and res["checkpoint_dir"] == str(src)
    assert api.restored_from == [["pages-1.img"]] and not src.exists()
    aside = [n for n in os.listdir(cdir) if n.startswith("checkpoints.before-edgemig-")]
    assert len(aside) == 1 and os.listdir(os.path.join(cdir, aside[0])) == ["mine"]


def test_check_mode_is_not_supported(api):
    failed, res = run_module(mod, {"name": "apache", "stage": "restore"}, check_mode=True)
    assert not failed and res.get("skipped") is True and api.calls == []


def test_containerds_copy_of_the_restored_images_is_deleted_and_only_that(tmp_path):
    from ansible_collections.edgemig.migration.plugins.module_utils.docker import tmpfs_restore as tr
    ours = {"pages-1.img": 8192, "core-1.img": 300}
    temp = tmp_path / "tmp"
    for name, files in (("ctrd-checkpoint111", {**ours, "stats-restore": 40}),   # ours, plus CRIU's stats
                        ("ctrd-checkpoint222", {"pages-1.img": 4096, "core-1.img": 300}),  # another restore's
                        ("unrelated", ours)):
        (temp / name).mkdir(parents=True)
        for f, size in files.items():
            (temp / name / f).write_bytes(b"x" * size)
    gone = tr.discard_containerd_copy(ours, since=0, temp_dirs={str(temp)})
    assert gone == [str(temp / "ctrd-checkpoint111")] and sorted(os.listdir(temp)) == ["ctrd-checkpoint222", "unrelated"]
    assert tr.discard_containerd_copy(ours, since=9e9, temp_dirs={str(temp)}) == []    # older than the restore: kept


def test_pages_are_set_aside_as_links_so_docker_packs_a_few_bytes_and_discard_takes_them_too(tmp_path):
    from ansible_collections.edgemig.migration.plugins.module_utils.docker import tmpfs_restore as tr
    ckpt = tmp_path / "mysql.restore" / "edgemig"
    ckpt.mkdir(parents=True)
    (ckpt / "pages-1.img").write_bytes(b"p" * 8192)
    (ckpt / "pagemap-1.img").write_bytes(b"m" * 40)
    (ckpt / "pages-1.img.bak").write_bytes(b"not a pages image")
    assert tr.set_pages_aside(str(ckpt)) == 8192
    aside = tmp_path / "mysql.restore" / "edgemig.pages"
    assert os.readlink(ckpt / "pages-1.img") == "../" * 64 + str(aside / "pages-1.img").lstrip("/")  # from any copy
    assert (ckpt / "pages-1.img").read_bytes() == b"p" * 8192
    assert tr.image_sizes(str(ckpt)) == {"pagemap-1.img": 40, "pages-1.img.bak": 17}
    assert oct(os.stat(aside).st_mode & 0o777) == "0o700"
    # A retry, and one after an attempt that moved a file but stopped before its link.
    os.unlink(ckpt / "pages-1.img")
    assert tr.set_pages_aside(str(ckpt)) == 0 and (ckpt / "pages-1.img").read_bytes() == b"p" * 8192
    tr.discard(str(ckpt))
    assert not (tmp_path / "mysql.restore").exists()


def test_a_failed_restore_keeps_our_images_for_a_retry_and_deletes_containerds_copy(api, tmp_path, monkeypatch):
    from ansible_collections.edgemig.migration.plugins.module_utils.docker import tmpfs_restore as tr
    stopped(api)
    temp = tmp_path / "containerd-tmp"
    temp.mkdir()
    monkeypatch.setattr(tr, "containerd_temp_dirs", lambda: {str(temp)})
    ckpt = tmp_path / "dumps" / "apache.restore" / "edgemig"
    ckpt.mkdir(parents=True)
    (ckpt / "pages-1.img").write_bytes(b"p" * 4096)
    (ckpt / "core-1.img").write_bytes(b"c" * 300)

    def start(name, checkpoint=None, checkpoint_dir=None, timeout=None, allow_running=False):  # containerd unpacked, CRIU failed
        copy = temp / "ctrd-checkpoint42"
        copy.mkdir()
        (copy / "core-1.img").write_bytes(b"c" * 300)
        os.symlink(os.readlink(ckpt / "pages-1.img"), copy / "pages-1.img")
        (copy / tr.RESTORE_NONCE).write_bytes((ckpt / tr.RESTORE_NONCE).read_bytes())  # in the tar too
        raise DockerAPIError(500, "criu failed: type NOTIFY errno 0")
    api.start_container = start
    failed, res = run_module(mod, {"name": "apache", "stage": "restore", "dump_dir": str(tmp_path / "dumps")})
    assert failed and "criu failed" in res["msg"]
    assert os.listdir(temp) == []                                            # containerd's copy went
    assert (ckpt / "pages-1.img").read_bytes() == b"p" * 4096                 # ours stay, for a retry


def test_pages_that_cannot_move_stay_in_place(tmp_path, monkeypatch):
    from ansible_collections.edgemig.migration.plugins.module_utils.docker import tmpfs_restore as tr
    ckpt = tmp_path / "apache.restore" / "edgemig"
    ckpt.mkdir(parents=True)
    (ckpt / "pages-1.img").write_bytes(b"p" * 4096)

    def exdev(src, dst):  # the checkpoint dir is a mount point of its own
        raise OSError(18, "Invalid cross-device link")
    monkeypatch.setattr(tr.os, "rename", exdev)
    assert tr.set_pages_aside(str(ckpt)) == 0
    assert not os.path.islink(ckpt / "pages-1.img") and (ckpt / "pages-1.img").read_bytes() == b"p" * 4096
    assert not os.path.exists(tr.pages_aside_dir(str(ckpt)))                     # no empty directory left


def test_prepare_writes_the_migrations_ticket_from_this_hosts_own_docker(api, tmp_path, monkeypatch):
    from ansible_collections.edgemig.migration.plugins.module_utils.receiver import ticket
    monkeypatch.setenv("EDGEMIG_FAULTS", '{"health": true, "pause_verified": 2}')
    dumps = tmp_path / "dumps"
    failed, res = run_module(mod, {"name": "apache", "stage": "prepare", "config": CONFIG, "dump_dir": str(dumps),
                                   "health": {"type": "tcp", "port": 80}, "address": "10.213.0.101",
                                   "interface": "eth0", "stall_timeout": 12})
    assert not failed
    tk = ticket.peek(str(dumps), res["ticket"])
    assert tk["service"] == "apache" and tk["stall_timeout"] == 12.0
    assert tk["roots"]["checkpoint"] == res["checkpoint_dir"] and tk["roots"]["layer"] == res["upper_dir"]
    assert tk["roots"]["warm"] == str(dumps / "apache.warm") and set(tk["clear"]) == {"layer", "warm"}
    assert tk["restore"]["container_id"] == res["container_id"] and tk["restore"]["address"] == "10.213.0.101"
    assert tk["restore"]["health"] == {"type": "tcp", "port": 80} and tk["restore"]["interface"] == "eth0"
    assert tk["faults"] == {"health": True}                      # the target's faults only
    assert oct(os.stat(ticket.ticket_dir(str(dumps))).st_mode & 0o777) == "0o700"
    # A second prepare of the same service revokes the first ticket.
    api.containers["apache"]["State"]["Running"] = False
    failed, again = run_module(mod, {"name": "apache", "stage": "prepare", "config": CONFIG, "dump_dir": str(dumps)})
    assert not failed and again["ticket"] != res["ticket"]
    with pytest.raises(ticket.TicketError):
        ticket.peek(str(dumps), res["ticket"])


@pytest.mark.parametrize("host_config, word", [
    ({"Privileged": True}, "Privileged"),
    ({"CapAdd": ["SYS_ADMIN"]}, "CapAdd"),
    ({"Binds": ["/:/host"]}, "Binds"),
    ({"Mounts": [{"Type": "bind", "Source": "/root", "Target": "/r"}]}, "bind Mounts"),
    ({"PidMode": "host"}, "PidMode=host"),
    ({"NetworkMode": "host"}, "NetworkMode=host"),
    ({"IpcMode": "container:other"}, "IpcMode"),
    ({"SecurityOpt": ["seccomp=unconfined"]}, "SecurityOpt"),
    ({"Devices": [{"PathOnHost": "/dev/sda"}]}, "Devices"),
])
def test_prepare_refuses_a_config_that_reaches_into_the_host(api, tmp_path, host_config, word):
    """The create body comes from the source edge: a compromised one must not get host access here."""
    config = {"Image": "sha256:apache", "HostConfig": host_config}
    args = {"name": "apache", "stage": "prepare", "config": config, "dump_dir": str(tmp_path / "dumps")}
    failed, res = run_module(mod, args)
    assert failed and word in res["msg"] and "nothing was created" in res["msg"] and api.calls == []
    failed, res = run_module(mod, dict(args, allow_host_access=True))
    assert not failed and api.calls == [("create", "apache")]


def test_prepare_refuses_a_host_port_something_answers_here_before_creating_anything(api):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        busy = listener.getsockname()[1]
        with socket.socket() as probe:          # a port nothing listens on (bound, not listening)
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
            config = {"Image": "sha256:apache", "HostConfig": {"PortBindings": {
                "80/tcp": [{"HostIp": "", "HostPort": str(busy)}], "81/tcp": [{"HostPort": str(free)}],
                "53/udp": [{"HostPort": str(busy)}], "82/tcp": [{"HostIp": "", "HostPort": ""}]}}}
            failed, res = run_module(mod, {"name": "apache", "stage": "prepare", "config": config})
    assert failed and f"host port(s) {busy}," in res["msg"] and str(free) not in res["msg"], res
    assert "nothing was frozen" in res["msg"] and ("create", "apache") not in api.calls


def test_prepare_with_free_ports_creates(api):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
        config = {"Image": "sha256:apache", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": str(free)}]}}}
        failed, res = run_module(mod, {"name": "apache", "stage": "prepare", "config": config})
    assert not failed and ("create", "apache") in api.calls, res
