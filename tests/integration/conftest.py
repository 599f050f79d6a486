# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import fcntl
import os
import sys

import pytest

# The lab helpers (labutil) live in lab/, shared with bench/.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lab"))

LAB_LOCK = "/run/edgemig-lab.lock"


def held_by_an_ancestor(path: str = LAB_LOCK) -> bool:
    """Whether a process above this one holds the flock on ``path`` (`flock LOCK pytest ...`, as the
    helpers' notes say to run lab commands): taking it again from here would wait for ever."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as fh:
            locks = fh.read().splitlines()
    except OSError:
        return False
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = {int(f[4]) for f in (ln.split() for ln in locks) if len(f) > 5 and f[1] == "FLOCK" and f[5] == ident}
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
    if held_by_an_ancestor():
        yield
        return
    with open(LAB_LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
        fcntl.flock(fh, fcntl.LOCK_UN)
