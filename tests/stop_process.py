# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stop a process a test started in a session of its own (start_new_session=True), with its children."""
from __future__ import annotations

import os
import signal
import subprocess


def stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM to its process group, SIGKILL after ``grace`` seconds; waits for it either way."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
