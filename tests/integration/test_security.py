# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Least privilege between edges (docs/security.md): an edge's migration key starts the
other edges' pinned receiver and nothing else, and a target whose receiver is of another
version is refused before anything is frozen."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
from labutil import catalog, lab_is_up, playbook, running_on, uptime, wait_answering  # noqa: E402

pytestmark = pytest.mark.lab
LAB = "/var/lib/edgemig-lab"
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
    # The receiver with an option that is not one of its own: its argument parser says no.
    launcher = f"{LAB}/edge2/receiver/edgemig-receiver"
    with open(f"{LAB}/edge2/receiver/receiver.json") as fh:
        version = json.load(fh)["version"]
    proc = ssh_from("edge1", "edge2", f"{launcher} --expect-version {version} --exec id")
    assert proc.returncode != 0 and "uid=" not in proc.stdout and "unrecognized arguments" in proc.stderr
    # A root outside Docker's data root and the dump tmpfs: refused.
    proc = ssh_from("edge1", "edge2", f"{launcher} --expect-version {version} --root x=/root/.ssh")
    assert proc.returncode != 0 and "outside the directories this receiver may write" in proc.stdout
    # Port forwarding (restrict): stdio forwarding to the other edge's sshd is refused.
    proc = ssh_from("edge1", "edge2", opts=("-W", f"{ADDRESS['edge2']}:22"))
    assert proc.returncode != 0 and "SSH-2.0" not in proc.stdout, proc.stderr
    # The key works from its own edge's address only: from the controller (10.213.0.1) it is no key at all.
    cmd = ["ssh", "-F", "/dev/null", "-i", f"{LAB}/edge1/migration_key", "-o", f"UserKnownHostsFile={LAB}/ssh/edge_known_hosts",
           "-o", "BatchMode=yes", "-o", "ControlPath=none", "-o", "ConnectTimeout=10", f"root@{ADDRESS['edge2']}", "id"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 255 and "Permission denied" in proc.stderr, proc.stderr


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
CRIU_IMAGE = re.compile(r"^(pages|pagemap|core|mm|pstree|inventory|ids|fdinfo|files|tcp-stream)"
                        r"(-\d+)?\.img$")
# File systems that hold nothing once the machine is off (overlay mounts are views of layers on disk,
# which are walked where they lie).
VOLATILE = {"tmpfs", "ramfs", "proc", "sysfs", "devtmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "nsfs",
            "overlay", "bpf", "tracefs", "debugfs", "securityfs", "pstore", "fusectl", "configfs", "hugetlbfs",
            "autofs", "binfmt_misc"}


def volatile_mounts() -> set[str]:
    out = set()
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _sep, right = line.partition(" - ")
            if right.split()[0] in VOLATILE:
                out.add(left.split()[4].replace("\\040", " "))
    return out


def criu_images_on_disk(roots: list[str], since: float) -> list[str]:
    """CRIU images created (ctime) since ``since`` anywhere under ``roots`` but on volatile mounts."""
    skip = volatile_mounts()
    found = []
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in skip]
            for name in files:
                if CRIU_IMAGE.match(name):
                    path = os.path.join(dirpath, name)
                    try:
                        if os.lstat(path).st_ctime >= since:
                            found.append(path)
                    except FileNotFoundError:
                        pass
    return found


def test_no_checkpoint_image_lands_on_persistent_storage():
    """Issue 13: every catalog service migrated, one migration rolled back from its checkpoint; then
    no CRIU image created meanwhile is left on either edge's persistent file systems (Docker data
    roots, /var, /tmp): the target restores from its dump tmpfs and deletes the images, and so does
    a source that rolls back."""
    since = time.time() - 1
    services = catalog()
    for svc in sorted(services):
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
    roots = ["/var", "/tmp"] + [f"{LAB}/{edge}/docker" for edge in ADDRESS]
    found = criu_images_on_disk(roots, since)
    assert found == [], f"CRIU images on persistent storage: {found[:20]}"
    for edge in ADDRESS:  # and none kept on the tmpfs either, once the migrations are over
        dumps = f"{LAB}/{edge}/dumps"
        left = criu_images_on_disk([dumps], since=0) if os.path.isdir(dumps) else []
        assert not [p for p in left if "/.edgemig-state/" not in p], f"images left on {edge}'s dump tmpfs: {left}"
