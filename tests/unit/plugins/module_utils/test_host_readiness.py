# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.docker import host_readiness as hr

MOUNTINFO = """\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/x
30 22 0:25 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw,size=24684092k
41 22 8:1 /lib /var/lib rw,relatime shared:9 - ext4 /dev/sda1 rw
55 41 0:40 / /var/lib/edgemig-lab/edge1/dumps rw,nosuid,nodev - tmpfs tmpfs rw,size=2097152k,mode=700
56 41 0:41 / /var/lib/with\\040space rw - tmpfs tmpfs rw
"""


@pytest.mark.parametrize("text, expected", [
    ("Version: 4.2.1\n", "4.2.1"),
    ("Version: 3.17.1\nGitID: v3.17.1\n", "3.17.1"),
    ("Version: 4.2\n", "4.2"),
    ("criu: command not found", None),
    ("", None),
])
def test_parse_criu_version(text, expected):
    assert hr.parse_criu_version(text) == expected


@pytest.mark.parametrize("version, minimum, ok", [
    ("4.2.1", "4.2", True),
    ("4.2", "4.2", True),
    ("4.2.0", "4.2", True),
    ("4.1", "4.2", False),
    ("3.17.1", "4.2", False),
    ("10.0", "4.2", True),
    ("4.10", "4.2", True),
    (None, "4.2", False),
    ("", "4.2", False),
])
def test_version_at_least(version, minimum, ok):
    assert hr.version_at_least(version, minimum) is ok


def test_version_tuple_stops_at_non_numeric():
    assert hr.version_tuple("4.2.1-1") == (4, 2, 1)
    assert hr.version_tuple("4.x.1") == (4,)


def test_parse_runc_conf():
    text = "# Ansible managed\n\ntcp-close\n--skip-in-flight\n  file-locks  # for mariadb\nghost-limit 10M\n"
    assert hr.parse_runc_conf(text) == ["tcp-close", "skip-in-flight", "file-locks", "ghost-limit 10M"]
    assert hr.parse_runc_conf("") == []


def test_parse_mountinfo_and_fs_type():
    mounts = hr.parse_mountinfo(MOUNTINFO)
    assert ("/var/lib/with space", "tmpfs") in mounts
    assert hr.fs_type_of("/var/lib/edgemig-lab/edge1/dumps", mounts) == "tmpfs"
    assert hr.fs_type_of("/var/lib/edgemig-lab/edge1/dumps/x/y", mounts) == "tmpfs"
    assert hr.fs_type_of("/var/lib/edgemig-lab/edge1", mounts) == "ext4"
    # a prefix that is not a path component does not count
    assert hr.fs_type_of("/var/lib/edgemig-lab/edge1/dumps2", mounts) == "ext4"
    assert hr.fs_type_of("/etc", mounts) == "overlay"


def test_fs_type_prefers_the_last_mount_on_the_same_point():
    mounts = [("/", "ext4"), ("/d", "ext4"), ("/d", "tmpfs")]
    assert hr.fs_type_of("/d/x", mounts) == "tmpfs"


def test_docker_facts():
    info = {"ExperimentalBuild": True, "DockerRootDir": "/var/lib/docker", "Driver": "overlay2",
            "ServerVersion": "20.10.24+dfsg1"}
    version = {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41"}
    assert hr.docker_facts(info, version) == {
        "version": "20.10.24+dfsg1", "api_version": "1.41", "experimental": True,
        "data_root": "/var/lib/docker", "storage_driver": "overlay2"}
    assert hr.docker_facts(None, None)["experimental"] is False


def _stat(mode):
    return lambda path: SimpleNamespace(st_mode=mode)


def test_dump_dir_facts():
    def vfs(path):
        return SimpleNamespace(f_bavail=512, f_frsize=4096)

    facts = hr.dump_dir_facts("/var/lib/edgemig-lab/edge1/dumps", MOUNTINFO,
                              stat_fn=_stat(stat.S_IFDIR | 0o700), statvfs_fn=vfs)
    assert facts == {"path": "/var/lib/edgemig-lab/edge1/dumps", "exists": True, "fs_type": "tmpfs",
                     "free_bytes": 2097152, "mode": "0700", "is_tmpfs": True}


def test_dump_dir_facts_missing_and_unset():
    def missing(path):
        raise FileNotFoundError(path)
    assert hr.dump_dir_facts("/nope", MOUNTINFO, stat_fn=missing)["exists"] is False
    assert hr.dump_dir_facts("/file", MOUNTINFO, stat_fn=_stat(stat.S_IFREG | 0o600))["exists"] is False
    assert hr.dump_dir_facts(None)["path"] is None


def test_dump_dir_facts_real_tmp(tmp_path):
    with open("/proc/self/mountinfo") as fh:
        facts = hr.dump_dir_facts(str(tmp_path), fh.read())
    assert facts["exists"] and facts["fs_type"] and facts["free_bytes"] > 0
    assert facts["mode"] == "%04o" % stat.S_IMODE(os.stat(tmp_path).st_mode)


GOOD = dict(
    criu={"path": "/usr/local/sbin/criu", "version": "4.2.1", "check_ok": True, "check_output": "Looks good."},
    docker={"host": "unix:///var/run/docker.sock", "error": None, "experimental": True, "storage_driver": "overlay2"},
    dump_dir={"path": "/d", "exists": True, "is_tmpfs": True, "fs_type": "tmpfs", "free_bytes": 10},
    runc_conf={"path": "/etc/criu/runc.conf", "exists": True, "options": ["tcp-close", "skip-in-flight"]},
)


def _problems(**over):
    args = {k: dict(v) for k, v in GOOD.items()}
    for key, value in over.items():
        args[key].update(value)
    return hr.problems(args["criu"], args["docker"], args["dump_dir"], args["runc_conf"],
                       min_version="4.2", required_runc_options=["skip-in-flight"])


def test_problems_none_when_ready():
    assert _problems() == []


def test_problems_failing_criu_check():
    out = _problems(criu={"path": "/usr/sbin/criu", "version": "3.17.1", "check_ok": False,
                          "check_output": "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\n"
                                          "Error (criu/crtools.c:260): Could not initialize kernel features detection."})
    assert out == [
        "criu: `criu check` fails (/usr/sbin/criu): Error (criu/crtools.c:260): Could not initialize kernel features detection.",
        "criu: version 3.17.1 is older than 4.2",
    ]


def test_problems_check_not_run_is_not_judged():
    assert _problems(criu={"check_ok": None}) == []


def test_problems_no_criu():
    assert _problems(criu={"path": None, "version": None}) == ["criu: not found on PATH"]


def test_problems_docker():
    assert _problems(docker={"error": "cannot talk to Docker at unix:///x: refused"}) == [
        "docker: cannot talk to Docker at unix:///x: refused"]
    out = _problems(docker={"experimental": False, "storage_driver": "vfs"})
    assert out[0].startswith("docker: the experimental API is off")
    assert out[1] == "docker: storage driver is vfs, not overlay2"


def test_problems_dump_dir_and_runc_conf():
    assert _problems(dump_dir={"is_tmpfs": False, "fs_type": "ext4"}) == ["dump_dir: /d is on ext4, not tmpfs"]
    assert _problems(dump_dir={"exists": False}) == ["dump_dir: /d does not exist"]
    assert _problems(dump_dir={"path": None, "exists": False}) == []
    assert _problems(runc_conf={"exists": False, "options": []}) == [
        "runc.conf: /etc/criu/runc.conf (missing) lacks skip-in-flight"]


def test_problems_min_free_bytes():
    args = {k: dict(v) for k, v in GOOD.items()}
    out = hr.problems(args["criu"], args["docker"], args["dump_dir"], args["runc_conf"], min_version="4.2",
                      required_runc_options=[], min_free_bytes=11)
    assert out == ["dump_dir: /d has 10 bytes free, less than 11"]


def test_fs_type_reads_this_hosts_mounts(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                    f"30 22 0:40 / {tmp_path}/dumps rw - tmpfs tmpfs rw\n")
    (tmp_path / "dumps" / "x").mkdir(parents=True)
    assert hr.fs_type(str(tmp_path / "dumps" / "x"), str(info)) == "tmpfs"
    assert hr.fs_type(str(tmp_path), str(info)) == "ext4"
    assert hr.fs_type("/", str(tmp_path / "missing")) is None


X86 = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme tsc msr sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma bmi1 bmi2 aes hypervisor constant_tsc avx512f
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu sse
"""


def test_cpu_features_keep_the_instruction_sets_a_process_may_use():
    got = hr.cpu_features(X86)
    assert got == {"arch": "x86", "isa": ["aes", "avx", "avx2", "avx512f", "bmi1", "bmi2", "fma", "fpu", "sse",
                                          "sse2", "sse4_1", "sse4_2", "ssse3"]}          # not tsc, hypervisor
    assert hr.cpu_features("processor : 0\nFeatures : fp asimd aes crc32\n") == \
        {"arch": "other", "isa": ["aes", "asimd", "crc32", "fp"]}
    assert hr.cpu_features("") == {"arch": "unknown", "isa": []}
