# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The built-in lab (edge1 and edge2 on Docker 20.10, edge3 on Docker 26) answers as docs/design.md promises.

Run after ``lab/lab.sh up`` (root). Only lab addresses are contacted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.lab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STATE = "/var/lib/edgemig-lab"
KEY = f"{STATE}/ssh/id_ed25519"
KNOWN_HOSTS = f"{STATE}/ssh/known_hosts"
SHIM = f"{STATE}/lib/lab-prlimit-shim.so"
DOCKER = "/usr/bin/docker"  # the 20.10 client (API 1.41, which edge3's Docker 26 accepts too)
EDGES = {"edge1": "10.213.0.11", "edge2": "10.213.0.12", "edge3": "10.213.0.13"}
# What each edge's daemon reports (GET /version): the server and its containerd.
DAEMONS = {"edge1": ("20.10.", "1.6."), "edge2": ("20.10.", "1.6."), "edge3": ("26.1.", "1.7.")}
SSH_OPTS = [
    "-i", KEY,
    "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
    "-o", "StrictHostKeyChecking=yes",
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=5",
    "-o", "ControlMaster=no",
    "-o", "ControlPath=none",
]


def run(cmd: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


@pytest.fixture(scope="module", autouse=True)
def lab_is_up() -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root")
    res = run(["bash", os.path.join(ROOT, "lab", "lab.sh"), "status"])
    assert res.returncode == 0, f"lab is not up (run lab/lab.sh up):\n{res.stdout}{res.stderr}"


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_sshd_answers_with_lab_key(edge: str) -> None:
    res = run(["ssh", *SSH_OPTS, f"root@{EDGES[edge]}", "ip -o -4 addr show dev eth0"])
    assert res.returncode == 0, res.stderr
    assert f"{EDGES[edge]}/24" in res.stdout


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_known_hosts_names_edge_by_ip_and_name(edge: str) -> None:
    with open(KNOWN_HOSTS, encoding="utf-8") as f:
        hosts = [line.split()[0].split(",") for line in f if line.strip()]
    assert [EDGES[edge], edge] in hosts


def test_edges_have_different_host_keys() -> None:
    keys = [open(f"{STATE}/{e}/ssh_host_ed25519_key.pub", encoding="utf-8").read().split()[1] for e in EDGES]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_dockerd_answers_experimental(edge: str) -> None:
    res = run([DOCKER, "-H", f"unix:///run/edgemig-lab/{edge}/docker.sock",
               "version", "--format", "{{.Server.Experimental}}"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "true"


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_daemon_versions(edge: str) -> None:
    res = run([DOCKER, "-H", f"unix:///run/edgemig-lab/{edge}/docker.sock", "version", "--format", "{{json .Server}}"])
    assert res.returncode == 0, res.stderr
    server = json.loads(res.stdout)
    components = {c["Name"]: c["Version"] for c in server["Components"]}
    assert server["Version"].startswith(DAEMONS[edge][0]), server["Version"]
    assert components["containerd"].startswith(DAEMONS[edge][1]), components


def test_second_up_changes_nothing() -> None:
    """`lab.sh up` on a lab that is up: no download, no unpacking, every daemon keeps its pid."""
    def pids() -> dict:
        return {f"{e}/{f}": open(f"/run/edgemig-lab/{e}/{f}", encoding="utf-8").read().strip()
                for e in EDGES for f in ("docker.pid", "sshd.pid")}
    before = pids()
    res = run(["bash", os.path.join(ROOT, "lab", "lab.sh"), "up"], timeout=120)
    assert res.returncode == 0, res.stderr
    assert "download" not in res.stderr and "unpacking" not in res.stderr, res.stderr
    assert pids() == before


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_dockerd_runs_in_edge_namespace(edge: str) -> None:
    with open(f"/run/edgemig-lab/{edge}/docker.pid", encoding="utf-8") as f:
        pid = int(f.read().strip())
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/var/run/netns/{edge}").st_ino


def test_edge1_reaches_edge2_over_tcp() -> None:
    res = run(["ip", "netns", "exec", "edge1", "ssh", *SSH_OPTS,
               f"root@{EDGES['edge2']}", "echo $SSH_CLIENT"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == EDGES["edge1"]


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_segmentation_offload_off(edge: str) -> None:
    res = run(["ip", "netns", "exec", edge, "ethtool", "-k", "eth0"])
    assert res.returncode == 0, res.stderr
    feats = dict(line.strip().split(": ", 1) for line in res.stdout.splitlines()[1:] if ": " in line)
    assert feats["tcp-segmentation-offload"].startswith("off")
    assert feats["generic-segmentation-offload"].startswith("off")


def test_ansible_ping() -> None:
    res = run(["ansible", "-i", os.path.join(ROOT, "inventory", "lab", "hosts.yml"), "edges",
               "-m", "ansible.builtin.ping"], timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("pong") == len(EDGES)


def test_prlimit_shim_reads_limits_of_other_uid() -> None:
    """Root here lacks CAP_SYS_RESOURCE: the shim answers read-only queries from /proc."""
    sleeper = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "30"])
    try:
        time.sleep(0.2)
        probe = ("import resource,sys; print(*resource.prlimit(int(sys.argv[1]), resource.RLIMIT_NOFILE))")
        res = run([sys.executable, "-c", probe, str(sleeper.pid)],
                  env={**os.environ, "LD_PRELOAD": SHIM})
        assert res.returncode == 0, res.stderr
        with open(f"/proc/{sleeper.pid}/limits", encoding="utf-8") as f:
            row = next(line for line in f if line.startswith("Max open files"))
        assert res.stdout.split() == row.split()[3:5]
    finally:
        sleeper.kill()
        sleeper.wait()
