# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tmpfs_restore.RestoreLogHold: CRIU's restore.log read after containerd deleted it with the failed task."""
from __future__ import annotations

import os
import shutil
import time

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.tmpfs_restore import RestoreLogHold

CID = "0123456789abcdef"
LOG = ("(00.000100) Version: 4.2\n(00.001200) Error (criu/action-scripts.c:119): One of more action scripts failed\n"
       "(00.001300) Error (criu/cr-restore.c:2398): Restoring FAILED.\n")


def task_dir(root) -> str:
    return os.path.join(str(root), "containerd", "daemon", "io.containerd.runtime.v2.task", "moby", CID)


def wait_held(hold: RestoreLogHold) -> None:
    deadline = time.monotonic() + 30
    while hold.file is None:
        assert time.monotonic() < deadline, "the log was never held"
        time.sleep(0.01)


def test_a_failed_restore_s_log_is_read_after_its_directory_is_gone(tmp_path):
    task = task_dir(tmp_path)
    with pytest.raises(DockerAPIError), RestoreLogHold(str(tmp_path), CID, time.time()) as hold:
        os.makedirs(task)                      # runc makes the task's work dir, CRIU starts its log
        with open(os.path.join(task, "restore.log"), "w") as fh:
            fh.write(LOG[:40])
            fh.flush()
            wait_held(hold)
            fh.write(LOG[40:])                 # written after we opened it: read all the same
        shutil.rmtree(os.path.join(str(tmp_path), "containerd"))  # containerd deletes the failed task
        raise DockerAPIError(500, "criu failed: type NOTIFY errno 0")
    assert hold.errors().splitlines() == [line for line in LOG.splitlines() if "Error" in line]
    assert hold.file.closed and not hold.thread.is_alive()


def test_a_restore_that_worked_leaves_its_log_unread_and_stops_looking(tmp_path):
    with RestoreLogHold(str(tmp_path), CID, time.time()) as hold:
        pass                                   # no log ever appears: the thread stops at the exit
    assert hold.errors() == "" and not hold.thread.is_alive()
    os.makedirs(task_dir(tmp_path))
    with open(os.path.join(task_dir(tmp_path), "restore.log"), "w") as fh:
        fh.write(LOG)
    with RestoreLogHold(str(tmp_path), CID, time.time()) as hold:
        wait_held(hold)
    assert hold.text == "" and hold.file.closed   # read only for a failure


def test_an_earlier_restore_s_log_is_not_held(tmp_path):
    os.makedirs(task_dir(tmp_path))
    log = os.path.join(task_dir(tmp_path), "restore.log")
    with open(log, "w") as fh:
        fh.write(LOG)
    os.utime(log, (1, 1))
    with pytest.raises(DockerAPIError), RestoreLogHold(str(tmp_path), CID, time.time()) as hold:
        deadline = time.monotonic() + 30
        while hold.looks < 3:   # it has looked (and passed the old log by), not merely not yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
        raise DockerAPIError(500, "criu failed")
    assert hold.file is None and hold.errors() == ""


def test_only_docker_s_refusal_is_read_and_only_the_log_s_end(tmp_path, monkeypatch):
    os.makedirs(task_dir(tmp_path))
    log = os.path.join(task_dir(tmp_path), "restore.log")
    with open(log, "w") as fh:
        fh.write("(00.000001) Error (criu/old.c:1): scrolled out of the tail\n" + "x" * 100 + "\n" + LOG)
    monkeypatch.setattr(RestoreLogHold, "TAIL", len(LOG) + 10)
    with pytest.raises(DockerAPIError), RestoreLogHold(str(tmp_path), CID, time.time()) as hold:
        wait_held(hold)
        raise DockerAPIError(500, "criu failed")
    assert "old.c" not in hold.errors() and "Restoring FAILED" in hold.errors()
    with pytest.raises(TimeoutError), RestoreLogHold(str(tmp_path), CID, time.time()) as hold:
        wait_held(hold)
        raise TimeoutError("the restore call timed out")   # not Docker's answer: nothing read
    assert hold.text == "" and hold.file.closed
