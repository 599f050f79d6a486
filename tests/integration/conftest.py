# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile

import pytest

# The lab helpers (labutil) live in lab/, shared with bench/.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lab"))

from labutil import runc_conf_plus  # noqa: E402 (lab/ is on sys.path from here on)

LAB_LOCK = "/run/edgemig-lab.lock"


def held_by_an_ancestor(path: str) -> bool:
    """Whether a process this one descends from holds the flock on ``path`` (``flock LOCK pytest ...``,
    as docs and helpers run the lab tests): locking again here, through a file description of our own,
    would wait for that ancestor forever."""
    try:
        ino = os.stat(path).st_ino
        with open("/proc/locks") as fh:
            holders = {int(f[4]) for f in (line.split() for line in fh)
                       if len(f) > 5 and f[1] == "FLOCK" and f[5].rsplit(":", 1)[-1] == str(ino)}
    except OSError:
        return False
    pid = os.getppid()
    while pid > 1:
        if pid in holders:
            return True
        try:
            with open(f"/proc/{pid}/stat") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


@pytest.fixture(scope="session", autouse=True)
def lab_lock():
    """One user of the lab at a time (tests, benchmarks, soak): they move services and shape links."""
    if held_by_an_ancestor(LAB_LOCK):
        yield  # the caller holds it for us (flock /run/edgemig-lab.lock python3 -m pytest ...)
        return
    with open(LAB_LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
        fcntl.flock(fh, fcntl.LOCK_UN)


# Exits 1 for CRIU's {action} action in {edge}'s network namespace only (CRIU runs its action scripts
# from the process runc started, in that edge's dockerd's namespace): a real CRIU failure there. After
# 1 s: CRIU's log exists that long before the failure, as when a restore fails past its first steps;
# the receiver's hold on restore.log (tmpfs_restore.RestoreLogHold) looks every 10 ms, and a failure
# within one look of CRIU's start is the case it can miss (documented there), not the one tested here.
FAIL_ACTION = """#!/bin/sh
# edgemig preflight test: CRIU's {action} fails in {edge} only
if [ "$CRTOOLS_SCRIPT_ACTION" = {action} ] && \\
   [ "$(stat -L -c %i /proc/self/ns/net)" = "$(stat -L -c %i /var/run/netns/{edge})" ]; then
  sleep 1
  exit 1
fi
exit 0
"""


@pytest.fixture
def criu_fails():
    """``install(edge, action)``: the lab's runc.conf plus an ``action-script`` that fails CRIU's
    ``action`` (pre-dump, pre-restore) on ``edge``, bind-mounted over the lab's until the test ends
    (labutil.runc_conf_plus). Once per test: a second would stack a mount on the first."""
    with contextlib.ExitStack() as stack:
        installed: list[str] = []

        def install(edge: str, action: str) -> None:
            assert not installed, f"criu_fails is installed already ({installed}): once per test"
            fd, script = tempfile.mkstemp(prefix="edgemig-criu-fail-", dir="/run")
            stack.callback(os.unlink, script)
            with os.fdopen(fd, "w") as fh:
                fh.write(FAIL_ACTION.format(edge=edge, action=action))
            os.chmod(script, 0o755)
            stack.enter_context(runc_conf_plus(f"action-script {script}"))
            installed.append(f"{action} on {edge}")

        yield install
