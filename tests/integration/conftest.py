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


@pytest.fixture(scope="session", autouse=True)
def lab_lock():
    """One user of the lab at a time (tests, benchmarks, soak): they move services and shape links."""
    with open(LAB_LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
        fcntl.flock(fh, fcntl.LOCK_UN)
