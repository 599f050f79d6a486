# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import subprocess

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.docker import containerd_dump as cd

CID = "86d0c4f75c35428b22c8bb2b8fec1c41f77fe08059eb005ff7c91ab661a86f17"
SHIM = ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", CID,
        "-address", "/run/containerd/containerd.sock"]


def test_shim_flags_in_both_spellings():
    assert cd.shim_flags(SHIM) == {"namespace": "moby", "id": CID, "address": "/run/containerd/containerd.sock"}
    assert cd.shim_flags(["shim", "--namespace=k8s.io", "-debug", "-id", "x"]) == {"namespace": "k8s.io", "id": "x"}


@pytest.fixture
def host(monkeypatch, tmp_path):
    """A process 42 whose parent 7 runs ``argv`` (its socket a real file under tmp_path); ctr installed."""
    sock = tmp_path / "containerd.sock"
    sock.touch()
    state = {"argv": [a if a != SHIM[-1] else str(sock) for a in SHIM], "ctr": "/usr/bin/ctr", "sock": sock}
    monkeypatch.setattr(cd, "_parent", lambda pid: 7 if pid == 42 else None)
    monkeypatch.setattr(cd, "_argv", lambda pid: state["argv"] if pid == 7 else [])
    monkeypatch.setattr(cd.shutil, "which", lambda name: state["ctr"])
    return state


def test_the_containers_own_shim_names_its_containerd(host):
    assert cd.task_of(CID, 42) == {"ctr": "/usr/bin/ctr", "address": str(host["sock"]), "namespace": "moby"}


@pytest.mark.parametrize("change", [
    {"ctr": None},                                   # no ctr: Docker's call
    {"sock_gone": True},                             # the socket is gone
    {"argv": ["/sbin/init"]},                        # not a containerd shim (another runtime)
    {"argv": SHIM[:4] + ["-id", "other"] + SHIM[5:]},  # a shim, of another container
    {"argv": SHIM[:1] + SHIM[3:]},                   # no namespace
])
def test_anything_unexpected_means_dockers_call(host, change):
    change = dict(change)
    if change.pop("sock_gone", False):
        host["sock"].unlink()
    host.update(change)
    assert cd.task_of(CID, 42) is None


def test_no_process_no_task(host):
    assert cd.task_of(CID, 0) is None and cd.task_of(CID, 5) is None


def test_dump_asks_ctr_for_the_image_path(monkeypatch):
    seen = []

    def run(cmd, **kw):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(cd.subprocess, "run", run)
    task = {"ctr": "/usr/bin/ctr", "address": "/a.sock", "namespace": "moby"}
    cd.dump(task, CID, "/d/ck", "/d/criu.work")
    cd.dump(task, CID, "/d/ck", "/d/criu.work", exit_container=False)
    assert seen[0] == ["/usr/bin/ctr", "--address", "/a.sock", "--namespace", "moby", "tasks", "checkpoint",
                       "--image-path", "/d/ck", "--work-path", "/d/criu.work", "--exit", CID]
    assert "--exit" not in seen[1]


@pytest.mark.parametrize("result, message", [
    (subprocess.CompletedProcess([], 1, "", "ctr: criu failed\n"), "^ctr: criu failed$"),
    (subprocess.TimeoutExpired("ctr", 300), "did not finish in 300 s"),
    (FileNotFoundError(2, "No such file or directory"), "cannot run ctr"),
])
def test_dump_failures_are_reported(monkeypatch, result, message):
    def run(cmd, **kw):
        if isinstance(result, Exception):
            raise result
        return result

    monkeypatch.setattr(cd.subprocess, "run", run)
    with pytest.raises(cd.ContainerdDumpError, match=message):
        cd.dump({"ctr": "ctr", "address": "a", "namespace": "n"}, CID, "/i", "/w")
