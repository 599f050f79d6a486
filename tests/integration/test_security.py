# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Least privilege between edges (docs/security.md): an edge's migration key starts the
other edges' pinned receiver and nothing else, and a target whose receiver is of another
version is refused before anything is frozen."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import time

import pytest
from labutil import LAB, catalog, criu_images_on_disk, docker, lab_is_up, playbook, running_on, uptime, wait_answering  # noqa: E402

pytestmark = pytest.mark.lab
ADDRESS = {"edge1": "10.213.0.11", "edge2": "10.213.0.12"}


@pytest.fixture(scope="module", autouse=True)
def lab():
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"


def ssh_from(edge: str, to: str, *command: str, opts: tuple = ()) -> subprocess.CompletedProcess:
    """ssh with ``edge``'s migration key, from inside ``edge``'s namespace (the address its from= names)."""
    cmd = ["ip", "netns", "exec", edge, "ssh", "-F", "/dev/null", "-i", f"{LAB}/{edge}/migration_key",
           "-o", f"UserKnownHostsFile={LAB}/ssh/edge_known_hosts", "-o", "StrictHostKeyChecking=yes",
           "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "ConnectTimeout=10",
           *opts, f"root@{ADDRESS[to]}", *command]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_a_migration_key_gives_no_shell_no_forwarding_and_runs_no_code():
    # A shell command: the forced command runs instead, and refuses it.
    proc = ssh_from("edge1", "edge2", "id")
    assert proc.returncode != 0 and "uid=" not in proc.stdout
    assert "this key only starts the edgemig receiver" in proc.stdout, (proc.stdout, proc.stderr)
    # Code handed to the receiver's interpreter: never run.
    proc = ssh_from("edge1", "edge2", "python3 -c 'import os; print(os.getuid())'")
    assert proc.returncode != 0 and "this key only starts the edgemig receiver" in proc.stdout
    # The receiver with an option that is not one of its own: its request parser says no.
    launcher = f"{LAB}/edge2/receiver/edgemig-receiver"
    with open(f"{LAB}/edge2/receiver/receiver.json") as fh:
        version = json.load(fh)["version"]
    proc = ssh_from("edge1", "edge2", f"{launcher} --expect-version {version} --exec id")
    assert proc.returncode != 0 and "uid=" not in proc.stdout and "unknown receiver option" in proc.stdout
    # Port forwarding (restrict): stdio forwarding to the other edge's sshd is refused.
    proc = ssh_from("edge1", "edge2", opts=("-W", f"{ADDRESS['edge2']}:22"))
    assert proc.returncode != 0 and "SSH-2.0" not in proc.stdout, proc.stderr
    # The key works from its own edge's address only: from the controller (10.213.0.1) it is no key at all.
    cmd = ["ssh", "-F", "/dev/null", "-i", f"{LAB}/edge1/migration_key", "-o", f"UserKnownHostsFile={LAB}/ssh/edge_known_hosts",
           "-o", "BatchMode=yes", "-o", "ControlPath=none", "-o", "ConnectTimeout=10", f"root@{ADDRESS['edge2']}", "id"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 255 and "Permission denied" in proc.stderr, proc.stderr


def snapshot(*roots: str) -> dict:
    out = {}
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                out[path] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def test_edge1s_key_gets_nothing_on_edge2_by_any_request():
    """Issue 23, findings 1-3, with edge1's real migration key over real SSH against edge2's installed
    receiver: other spellings of options (1), restore parameters of the sender's (2), one directory
    under two root names (3), and a real ticket used twice. All refused; nothing changes on edge2."""
    spec = catalog()["apache"]
    if running_on("apache") != ["edge2"]:
        if not running_on("apache"):
            playbook("deploy.yml", "-e", "svc=apache", "-e", "host=edge2")
        else:
            playbook("migrate.yml", "-e", "svc=apache", "-e", "target=edge2")
    wait_answering(spec)
    launcher = f"{LAB}/edge2/receiver/edgemig-receiver"
    with open(f"{LAB}/edge2/receiver/receiver.json") as fh:
        version = json.load(fh)["version"]
    canary = f"{LAB}/edge2/docker/edgemig-canary"
    os.makedirs(canary, exist_ok=True)
    with open(f"{canary}/keep", "w") as fh:
        fh.write("x")
    dumps = f"{LAB}/edge2/dumps"
    apache_id = docker("edge2", "inspect", "-f", "{{.Id}}", "apache").stdout.strip()
    restore = json.dumps({"name": "apache", "checkpoint_dir": "/root", "docker_host": "unix:///run/edgemig-lab/edge2/docker.sock",
                          "health": {"type": "cmd", "command": ["touch", "/tmp/edgemig-pwned"]}})
    base = f"{launcher} --expect-version {version}"
    attempts = [
        f"{base} --root=x=/root/.ssh",                                   # 1: the = form
        f"{base} --ro x=/root/.ssh", f"{base} --roo x={canary}",         # 1: abbreviations
        f"{base} --root x={canary} --clear x",
        f"{base} --root layer={canary} --then-restore {shlex.quote(restore)}",   # 2: the sender's restore
        f"{base} --ticket {'0' * 32} --then-restore {shlex.quote(restore)}",
        f"{base} --ticket {'0' * 32} --commit --tag edgemig-receiver:apache",
        f"{base} --root checkpoint={dumps}/x --root lay={dumps}/x",      # 3: one dir, two names
        f"{base} --ticket {'0' * 32} --fault-corrupt-every 1",
        f"{base} --ticket=../../../../root/.ssh/authorized_keys",
    ]
    t0 = time.time()
    before = snapshot(canary, f"{LAB}/edge2/receiver", dumps, "/root/.ssh")
    with open(f"{LAB}/edge2/authorized_keys") as fh:
        keys = fh.read()
    for command in attempts:
        proc = ssh_from("edge1", "edge2", command)
        assert proc.returncode != 0, (command, proc.stdout)
        assert json.loads(proc.stdout.splitlines()[-1])["error"], (command, proc.stdout)
    # A real ticket (prepared by the controller for a stream into edge2) serves one stream: a second
    # use is refused. The first use gets an empty stream and ends; nothing is restored.
    assert snapshot(canary, f"{LAB}/edge2/receiver", dumps, "/root/.ssh") == before
    with open(f"{LAB}/edge2/authorized_keys") as fh:
        assert fh.read() == keys
    assert not os.path.exists("/tmp/edgemig-pwned")
    events = docker("edge2", "events", "--since", f"{t0:.0f}", "--until", f"{time.time() + 1:.0f}",
                    "--filter", "type=container", "--format", "{{.Action}} {{.Actor.Attributes.name}}").stdout
    assert events.strip() == "", f"Docker on edge2 was driven by the attempts: {events}"
    assert docker("edge2", "inspect", "-f", "{{.Id}} {{.State.Running}}", "apache").stdout.split() == [apache_id, "true"]


def test_a_ticket_serves_one_stream_over_ssh():
    """The controller has edge2 write a ticket (the prepare's own code, run on edge2's file system); edge1's
    key uses it once; a second use is refused before anything is written."""
    from ansible_collections.edgemig.migration.plugins.module_utils.receiver import ticket
    dumps = f"{LAB}/edge2/dumps"
    dest = f"{LAB}/edge2/docker/edgemig-ticket-test"
    os.makedirs(dest, exist_ok=True)
    tid = ticket.issue(dumps, roots={"layer": dest}, clear=["layer"], service="edgemig-ticket-test", ttl=120)
    launcher = f"{LAB}/edge2/receiver/edgemig-receiver"
    with open(f"{LAB}/edge2/receiver/receiver.json") as fh:
        version = json.load(fh)["version"]
    command = f"{launcher} --expect-version {version} --ticket {tid}"
    first = ssh_from("edge1", "edge2", command)   # no stream follows: the receiver took the ticket, then ended
    assert first.returncode != 0 and json.loads(first.stdout.splitlines()[-1])["error"], first
    assert not os.path.exists(os.path.join(dumps, "tickets", f"{tid}.json")), "the first use took the ticket"
    second = ssh_from("edge1", "edge2", command)
    assert second.returncode != 0 and "no ticket" in json.loads(second.stdout.splitlines()[-1])["error"], second


def test_a_target_with_another_receiver_version_is_refused_before_the_freeze():
    spec = catalog()["apache"]
    playbook("deploy.yml", "-e", "svc=apache")
    source = running_on("apache")[0]
    target = "edge2" if source == "edge1" else "edge1"
    config = f"{LAB}/{target}/receiver/receiver.json"
    with open(config) as fh:
        saved = fh.read()
    before = wait_answering(spec)
    try:
        stale = dict(json.loads(saved), version="0123456789abcdef")
        with open(config, "w") as fh:
            json.dump(stale, fh)
        proc = playbook("migrate.yml", "-e", "svc=apache", check=False)
        assert proc.returncode != 0
        assert "run playbooks/provision.yml" in proc.stdout and "0123456789abcdef" in proc.stdout, proc.stdout[-3000:]
        # Refused before anything was frozen: still on the source, never restarted nor restored.
        assert running_on("apache") == [source]
        assert uptime(spec) >= before
    finally:
        with open(config, "w") as fh:
            fh.write(saved)


# ------------------------------------------------------------------ no memory image on disk
# What CRIU writes: pages-*.img holds the memory itself, the others name its processes and files.
def test_no_checkpoint_image_lands_on_persistent_storage():
    """Issue 13: the paper's three services migrated (a plain one, one with a volume, a JVM), one
    migration rolled back from its checkpoint; then no CRIU image created meanwhile is left on either
    edge's persistent file systems (Docker data roots, /var, /tmp): the target restores from its dump
    tmpfs and deletes the images, and so does a source that rolls back. The path is the same for every
    service; test_services.py checks the same after moving the other catalog services."""
    since = time.time() - 1
    services = catalog()
    for svc in ("apache", "mysql", "tomcat"):
        if not running_on(svc):
            playbook("deploy.yml", "-e", f"svc={svc}", "-e", "host=edge1")
        src = running_on(svc)
        playbook("migrate.yml", "-e", f"svc={svc}")
        assert running_on(svc) not in ([], src), f"{svc} did not move from {src}"
    # A rollback: the target's restore fails after the freeze, the source restores its own checkpoint.
    src = running_on("apache")
    proc = playbook("migrate.yml", "-e", "svc=apache", "-e", json.dumps({"edgemig_faults": {"restore": True}}),
                    check=False)
    assert proc.returncode != 0 and "restored from its checkpoint" in proc.stdout, proc.stdout[-3000:]
    assert running_on("apache") == src
    wait_answering(services["apache"], timeout=60)
    found = criu_images_on_disk(since)   # /var (the edges' Docker data roots lie under it) and /tmp
    assert found == [], f"CRIU images on persistent storage: {found[:20]}"
    for edge in ADDRESS:  # and none kept on the tmpfs either, once the migrations are over
        dumps = f"{LAB}/{edge}/dumps"
        left = criu_images_on_disk(0, roots=[dumps]) if os.path.isdir(dumps) else []
        assert not [p for p in left if "/.edgemig-state/" not in p], f"images left on {edge}'s dump tmpfs: {left}"
