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


def inherited_lock_fd() -> int | None:
    """An fd on LAB_LOCK this process was started with and whose lock it shares: under
    ``flock /run/edgemig-lab.lock python3 -m pytest ...`` the lock is already ours through the fd
    flock(1) passed down. Locking a new open of the file would wait for that lock for ever."""
    try:
        want = os.stat(LAB_LOCK)
    except OSError:
        return None
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino):
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # succeeds at once on the holder's open file
        except OSError:
            continue
        return fd
    return None


@pytest.fixture(scope="session", autouse=True)
def lab_lock():
    """One user of the lab at a time (tests, benchmarks, soak): they move services and shape links."""
    if inherited_lock_fd() is not None:
        yield   # the caller's lock; it is the caller's to release
        return
    with open(LAB_LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
        fcntl.flock(fh, fcntl.LOCK_UN)
