# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The action plugin's wait on the source: the shell command itself, run here by sh against real files."""
from __future__ import annotations

import json
import subprocess
import threading
import time

from ansible_collections.edgemig.migration.plugins.action.edge_migrate import parse_wait, wait_command

STARTED = json.dumps({"started": True, "finished": False, "ansible_job_id": "j1"})  # as async_wrapper writes it


def wait(results, progress, seconds=0.5):
    out = subprocess.run(["sh", "-c", wait_command(str(results), str(progress), seconds)],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return parse_wait(out)


def test_a_running_job_waits_the_poll_out_and_brings_the_progress(tmp_path):
    results, progress = tmp_path / "j1", tmp_path / "p.json"
    results.write_text(STARTED)
    progress.write_text(json.dumps({"phase": "streaming", "acked_bytes": 5}))
    t0 = time.monotonic()
    assert wait(results, progress) == (False, {"phase": "streaming", "acked_bytes": 5})
    assert time.monotonic() - t0 >= 0.4


def test_the_wait_ends_as_soon_as_the_result_is_written(tmp_path):
    results = tmp_path / "j1"
    results.write_text(STARTED)

    def finish():
        time.sleep(0.3)
        tmp = tmp_path / "j1.tmp"           # async_wrapper's jwrite: a .tmp, then a rename
        tmp.write_text(json.dumps({"changed": True, "downtime_s": 0.5}))
        tmp.rename(results)

    threading.Thread(target=finish).start()
    t0 = time.monotonic()
    done, progress = wait(results, tmp_path / "absent.json", seconds=20)
    assert done and progress == {} and time.monotonic() - t0 < 15


def test_a_lost_job_file_ends_the_wait_for_async_status_to_say_so(tmp_path):
    assert wait(tmp_path / "gone", tmp_path / "absent.json", seconds=20)[0] is True


def test_hostile_or_odd_paths_stay_one_argument_each(tmp_path):
    weird = tmp_path / "a b;touch pwned'$(id)"
    weird.write_text(STARTED)
    assert wait(weird, tmp_path / "p q.json", seconds=0.2) == (False, {})
    assert not (tmp_path / "pwned").exists()


def test_a_progress_file_caught_mid_write_is_no_progress():
    assert parse_wait("0\n{\"phase\": \"stream") == (False, {})
    assert parse_wait("1\n") == (True, {})
    assert parse_wait("") == (False, {})
