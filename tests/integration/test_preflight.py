# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 29 on the lab: a service holding one thing CRIU cannot dump is refused before the freeze.

Each case is a container of one tiny image: FROM scratch, a static C holder
(holder/hold.c, built here with the host's gcc) as PID 1 that sets up one thing
and then writes /tmp/ready. The image is a user's own catalog entry (a build
context, as test_day_one's counter), so base_images makes it identical on both
edges. A case that needs a host bind mount or a device (which the catalog does not
express) is started with ``docker run`` as its user would, under its catalog name.
Each migration is asked as users type it: ``ansible-playbook playbooks/migrate.yml
-e svc=<name>`` with the user's inventory. Promised for a refused case:

* the playbook fails with criu_preflight's message naming the process, the fd,
  CRIU's reason and what the user can do;
* the source container was never frozen: no pause, checkpoint, die, kill or stop
  event from its Docker between the start and the end of the run;
* the holder still runs on the source (same container, same pid, still holding it);
* nothing was made on the target: no container, no ticket.

The cases CRIU handles with an option runc.conf has migrate, and their report says
which option was passed: a file lock (``file-locks``, the criu role's default), and
a deleted open file over the default ghost limit with ``ghost-limit`` raised (a
runc.conf with that line bind-mounted over the lab's for the test).

And when CRIU fails anyway, at the dump or at the restore, the playbook's failure message
carries CRIU's own error line from its log, never only runc's "criu failed: type ...". The
failure is CRIU's own: the lab's runc.conf plus an ``action-script`` (bind-mounted over it)
that fails CRIU's pre-dump or pre-restore action in one edge's network namespace only.
(A holder that sets up an io_uring on a signal the wrapper sends cannot do it: the freeze
comes first, CRIU dumps the signal as pending and the restored holder takes it.)
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from labutil import ROOT, docker, lab_is_up, other, run, runc_conf_plus, running_on, user_inventory, wait_for  # noqa: E402

pytestmark = pytest.mark.lab
HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE = "edgemig-test/holder:1"
TICKETS = "/var/lib/edgemig-lab/{edge}/dumps/tickets"
# Docker's events for a container that was frozen or stopped by a checkpoint (the containerd
# path shows the task's exit as die; Docker's own call logs checkpoint).
FROZEN = {"pause", "checkpoint", "die", "kill", "stop", "oom"}
GHOST_BYTES = 2 << 20  # over CRIU's default 1 MiB ghost limit

# name -> (holder arguments, what the refusal must say). {sock}: the host socket as the container sees it.
REFUSED = {
    "pf-iouring": (["iouring"], r"process \d+ \(hold\) holds an io_uring instance \(fd 3\): "
                                r"CRIU cannot checkpoint io_uring; disable io_uring"),
    "pf-inotify": (["inotify", "/tmp"], r"process \d+ \(hold\) holds 1 inotify watch\(es\) on the container's overlay "
                                        r"file system \(fd 3\): CRIU 4.2 cannot find .*; watch files on a volume"),
    "pf-unix": (["unix", "/hostsock/host.sock"],
                r"process \d+ \(hold\) holds a unix stream socket connected to a peer outside the container "
                r"\(/\S+/host.sock\) \(fd 3\): CRIU cannot dump one end of a unix stream connection.*; "
                r"close that connection"),
    "pf-device": (["device", "/dev/fuse"], r"process \d+ \(hold\) has the character device /dev/fuse \(10:229\) open "
                                           r"\(fd 3\): CRIU dumps only .*; run the service without the device"),
    "pf-ghost": (["ghost", str(GHOST_BYTES)],
                 r"process \d+ \(hold\) holds the deleted file /tmp/big \(deleted\) open \(\d+ bytes\) \(fd 3\): "
                 r"CRIU copies deleted open files .*ghost limit \(1048576 bytes\); close or truncate .*"
                 r"add that line to /etc/criu/runc.conf on both edges"),
}
# Started with docker run: what the catalog cannot say (a host bind mount, a device).
DOCKER_RUN = {"pf-unix": ["-v", "{dir}/hostsock:/hostsock"], "pf-device": ["--device", "/dev/fuse"]}

SERVER = """
import os, socket, sys, time
path = sys.argv[1]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path); srv.listen(8)
open(path + ".ready", "w").close()
held = []
while True:
    held.append(srv.accept()[0])
"""


ARGS = {name: args for name, (args, _said) in REFUSED.items()}


@pytest.fixture(scope="module", autouse=True)
def lab():
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"


def entry(args: list[str]) -> dict:
    return {"image": IMAGE, "build": {"context": "../holder"}, "command": args,
            "health": {"type": "cmd", "command": ["/hold", "ready"], "timeout": 30}}


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """The user's directory: the holder's build context and an inventory with every case's entry."""
    base = tmp_path_factory.mktemp("preflight")
    ctx = base / "holder"
    ctx.mkdir()
    subprocess.run(["gcc", "-static", "-O2", "-o", str(ctx / "hold"), os.path.join(HERE, "holder", "hold.c")],
                   check=True)
    (ctx / "Dockerfile").write_text('FROM scratch\nCOPY hold /hold\nWORKDIR /tmp\nENTRYPOINT ["/hold"]\n')
    services = {name: entry(args) for name, (args, _said) in REFUSED.items()}
    services["pf-lock"] = entry(["lock"])
    services["pf-ghost-raised"] = entry(["ghost", str(GHOST_BYTES)])
    return str(base), user_inventory(str(base), services)


def remove(svc: str) -> None:
    for edge in ("edge1", "edge2"):
        docker(edge, "rm", "-f", svc, check=False)


def playbook(inv: str, name: str, svc: str) -> subprocess.CompletedProcess:
    return run(["ansible-playbook", "-i", inv, f"playbooks/{name}", "-e", f"svc={svc}"])


def holding(edge: str, svc: str) -> str:
    """The holder's /tmp/result once it is ready (it holds the thing); fails if it is not running."""
    def ready():
        if docker(edge, "inspect", "-f", "{{.State.Running}}", svc, check=False).stdout.strip() != "true":
            return "not running"
        return docker(edge, "exec", svc, "/hold", "ready", check=False).returncode == 0
    try:
        seen = wait_for(ready, 20, step=0.1, what=f"{svc} ready")
    except AssertionError:
        seen = None  # /tmp/result says why
    assert seen != "not running", f"{svc} is not running on {edge} (the holder exited)"
    return docker(edge, "cp", f"{svc}:/tmp/result", "-", check=False).stdout  # a tar: the text is in it


def result_of(edge: str, svc: str) -> str:
    found = re.search(r"(ok|failed: )[^\n\0]*", holding(edge, svc))
    return found.group(0) if found else "no /tmp/result"


def start(inv: str, base: str, svc: str) -> str:
    """The service running, as its user starts it; returns its edge."""
    if svc in DOCKER_RUN:
        # The image from the catalog entry, on both edges (deploy.yml's first play), then docker run.
        proc = playbook(inv, "deploy.yml", "pf-lock")
        assert proc.returncode == 0, proc.stdout[-5000:]
        remove("pf-lock")
        flags = [f.format(dir=base) for f in DOCKER_RUN[svc]]
        docker("edge1", "run", "-d", "--name", svc, *flags, IMAGE, *ARGS[svc])
        where = ["edge1"]
    else:
        proc = playbook(inv, "deploy.yml", svc)
        assert proc.returncode == 0, proc.stdout[-5000:]
        where = running_on(svc)
        assert len(where) == 1, where
    said = result_of(where[0], svc)
    if svc == "pf-iouring" and said.startswith("failed: io_uring_setup"):
        pytest.skip(f"{svc}: the kernel or Docker's seccomp profile does not let a container set up io_uring: {said}")
    assert said.startswith("ok"), f"{svc}: the holder does not hold its thing: {said}"
    return where[0]


def state(edge: str, svc: str) -> tuple[str, str, str]:
    return tuple(docker(edge, "inspect", "-f", "{{.Id}} {{.State.Pid}} {{.State.StartedAt}}", svc).stdout.split())


def events(svc: str, edge: str, since: float, until: float) -> list[str]:
    proc = docker(edge, "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
                  "--filter", f"container={svc}", "--format", "{{.Action}}")
    return proc.stdout.split()


def tickets(edge: str) -> list[str]:
    path = TICKETS.format(edge=edge)
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


@pytest.fixture
def host_socket(user_dir):
    """A unix stream socket of edge1's host (a server in its network namespace), in a directory the
    pf-unix container gets bind-mounted."""
    path = os.path.join(user_dir[0], "hostsock", "host.sock")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    server = subprocess.Popen(["ip", "netns", "exec", "edge1", sys.executable, "-c", SERVER, path])
    try:
        wait_for(lambda: os.path.exists(path + ".ready"), 10, what="the host socket")
        yield path
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("svc", sorted(REFUSED))
def test_refused_before_the_freeze_naming_the_thing(request, user_dir, svc):
    base, inv = user_dir
    if svc == "pf-unix":
        request.getfixturevalue("host_socket")
    remove(svc)
    try:
        src = start(inv, base, svc)
        before = state(src, svc)
        target_tickets = tickets(other(src))
        since = time.time()
        proc = playbook(inv, "migrate.yml", svc)
        until = time.time()
        out = proc.stdout
        assert proc.returncode != 0, out[-5000:]
        assert "CRIU could not checkpoint this service: process " in out, out[-5000:]
        assert re.search(REFUSED[svc][1], out), out[-5000:]
        assert "Nothing was frozen" in out
        frozen = [a for a in events(svc, src, since, until) if a.split(":")[0] in FROZEN]
        assert frozen == [], f"the source container was frozen or stopped: {frozen}"
        assert running_on(svc) == [src]
        assert state(src, svc) == before, "the service is not the same process any more"
        assert result_of(src, svc).startswith("ok"), "the holder no longer holds its thing"
        assert docker(other(src), "inspect", svc, check=False).returncode != 0, "a target container was made"
        assert tickets(other(src)) == target_tickets, "a ticket was written on the target"
        assert "Create the target container" not in out, "the target was prepared before the refusal"
    finally:
        remove(svc)


def migrated_report(base: str, inv: str, svc: str) -> dict:
    remove(svc)
    src = start(inv, base, svc)
    proc = playbook(inv, "migrate.yml", svc)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert running_on(svc) == [other(src)]
    assert result_of(other(src), svc).startswith("ok"), "the restored holder does not hold its thing"
    with open(f"{ROOT}/reports/migrate-{svc}-latest.json") as fh:
        return json.load(fh)


def test_a_file_lock_migrates_with_runc_conf_file_locks(user_dir):
    svc = "pf-lock"
    try:
        report = migrated_report(*user_dir, svc)
        locks = [f for f in report["preflight"]["findings"] if f["kind"] == "file_lock"]
        assert locks and all(f["handled"] and "'file-locks'" in f["done"] for f in locks), report["preflight"]
    finally:
        remove(svc)


@pytest.fixture
def raised_ghost_limit():
    """The lab's runc.conf plus ``ghost-limit 4M``, bind-mounted over it (both edges read the one file)."""
    with runc_conf_plus("ghost-limit 4M"):
        yield


def test_a_ghost_file_migrates_under_a_raised_ghost_limit(user_dir, raised_ghost_limit):
    svc = "pf-ghost-raised"
    try:
        report = migrated_report(*user_dir, svc)
        ghosts = [f for f in report["preflight"]["findings"] if f["kind"] == "ghost_file"]
        assert ghosts and all(f["handled"] and "'ghost-limit 4M'" in f["done"] for f in ghosts), report["preflight"]
        assert report["preflight"]["ghost_limit"] == 4 << 20
    finally:
        remove(svc)


# CRIU's own error line, as its log has it: "Error (criu/action-scripts.c:119): ..."
CRIU_ERROR = r"Error \(criu/[\w./-]+\.c:\d+\): [^\n]+"


def test_a_criu_failure_at_the_dump_shows_criu_s_own_error(user_dir, criu_fails):
    """CRIU fails on the source: nothing moved, the service runs on the source, and the playbook's
    failure message carries CRIU's error line from the dump's log."""
    svc = "pf-lock"   # a holder any edge checkpoints (its file lock: file-locks, the lab's runc.conf has it)
    base, inv = user_dir
    remove(svc)
    try:
        src = start(inv, base, svc)
        criu_fails(src, "pre-dump")
        proc = playbook(inv, "migrate.yml", svc)
        out = proc.stdout
        assert proc.returncode != 0, out[-5000:]
        assert re.search(r"checkpoint .*" + CRIU_ERROR, out, re.S), out[-5000:]
        assert running_on(svc) == [src], "the service does not run on the source after the failed dump"
        assert result_of(src, svc).startswith("ok"), "the holder does not hold its lock after the failed dump"
    finally:
        remove(svc)


def test_a_criu_failure_at_the_restore_shows_criu_s_own_error(user_dir, criu_fails):
    """CRIU fails on the target after the freeze: the migration rolls back (the source restores its
    checkpoint) and the playbook's failure message carries CRIU's error line from the restore's log."""
    svc = "pf-lock"
    base, inv = user_dir
    remove(svc)
    try:
        src = start(inv, base, svc)
        criu_fails(other(src), "pre-restore")
        proc = playbook(inv, "migrate.yml", svc)
        out = proc.stdout
        assert proc.returncode != 0, out[-5000:]
        assert re.search(r"CRIU says: .*" + CRIU_ERROR, out, re.S), out[-5000:]
        assert "restored from its checkpoint" in out, out[-5000:]
        assert running_on(svc) == [src], "the service does not run on the source after the failed restore"
        assert result_of(src, svc).startswith("ok"), "the restored holder does not hold its lock"
    finally:
        remove(svc)
