# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The action plugin's wait on the source: the shell command itself, run here by sh against real files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from ansible.errors import AnsibleError
from fakes import bare_action

from ansible_collections.edgemig.migration.plugins.action import edge_migrate as em
from ansible_collections.edgemig.migration.plugins.action.edge_migrate import (
    MISSING_GRACE_S,
    parse_wait,
    should_ask,
    wait_command,
)

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
    assert wait(results, progress) == ("running", "", {"phase": "streaming", "acked_bytes": 5})
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
    state, result, progress = wait(results, tmp_path / "absent.json", seconds=20)
    assert state == "done" and progress == {} and time.monotonic() - t0 < 15
    assert json.loads(result) == {"changed": True, "downtime_s": 0.5}     # the result comes with the wait


def test_the_result_comes_whole_and_on_its_line_before_the_progress(tmp_path):
    results, progress = tmp_path / "j1", tmp_path / "p.json"
    body = {"changed": True, "msg": "line one\nline two", "stderr": "x\n"}
    results.write_text(json.dumps(body, indent=2) + "\n")          # even a result spread over lines
    progress.write_text(json.dumps({"phase": "cleaned"}))
    state, result, prog = wait(results, progress, seconds=2)
    assert state == "done" and json.loads(result) == body and prog == {"phase": "cleaned"}


def test_a_job_file_not_there_yet_is_waited_for_then_called_lost(tmp_path):
    results = tmp_path / "j1"

    def appear():   # async_wrapper may answer "started" before its job wrote the file
        time.sleep(0.3)
        results.write_text(STARTED)

    threading.Thread(target=appear).start()
    assert wait(results, tmp_path / "absent.json", seconds=1)[0] == "running"
    assert wait(tmp_path / "gone", tmp_path / "absent.json", seconds=0.3)[0] == "missing"
    # missing: async_status is asked (it says the job is lost) only after the grace, never at once
    assert not should_ask("missing", 1.0) and should_ask("missing", MISSING_GRACE_S + 1)
    assert should_ask("done", 0.1) and not should_ask("running", 1e6) and not should_ask("unknown", 1e6)


def test_hostile_or_odd_paths_stay_one_argument_each(tmp_path):
    weird = tmp_path / "a b;touch pwned'$(id)"
    weird.write_text(STARTED)
    assert wait(weird, tmp_path / "p q.json", seconds=0.2) == ("running", "", {})
    assert not (tmp_path / "pwned").exists()


def test_a_progress_file_caught_mid_write_is_no_progress():
    assert parse_wait("running\n\n{\"phase\": \"stream") == ("running", "", {})
    assert parse_wait("done\n\n") == ("done", "", {})
    assert parse_wait("") == ("unknown", "", {})          # the wait did not run: the loop pauses, never spins
    assert parse_wait("sh: 1: head: not found") == ("unknown", "", {})
    assert parse_wait("running\n{\"changed\": true}\n") == ("running", "", {})   # a result only when done


def action_with(monkeypatch, waits: list[str], statuses: list):
    """The action plugin's run() with Ansible's plumbing replaced: ``waits`` are the source's answers
    to each wait, ``statuses`` async_status's (an exception is raised); returns (result, calls, sleeps)."""
    calls, sleeps = [], []
    monkeypatch.setattr(em.time, "sleep", sleeps.append)
    act = bare_action(monkeypatch, em, pipelining=False)      # Ansible's async start (async_wrapper)

    def execute_module(module_name=None, module_args=None, task_vars=None, wrap_async=False):
        calls.append(module_name or "edge_migrate")
        if wrap_async:
            return {"ansible_job_id": "j1", "results_file": "/root/.ansible_async/j1", "started": True}
        answer = statuses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def low_level(cmd, **kw):
        calls.append("rm" if cmd.startswith("rm ") else "wait")
        return {"rc": 0, "stdout": (waits.pop(0) if waits else "done") + "\n"} if not cmd.startswith("rm ") else {"rc": 0}

    act._execute_module = execute_module
    act._low_level_execute_command = low_level
    return act.run(task_vars={"inventory_hostname": "edge1"}), calls, sleeps


def test_the_task_ends_at_the_first_wait_that_sees_the_result_and_takes_it_from_there(monkeypatch):
    done = 'done\n{"changed": true, "downtime_s": 0.5, "failed": false, "_ansible_no_log": false}'
    result, calls, sleeps = action_with(monkeypatch, ["running", done], [])
    assert result == {"changed": True, "downtime_s": 0.5, "failed": False}
    assert calls == ["edge_migrate", "wait", "wait", "rm"]    # no async_status run
    assert sleeps == []   # the waits themselves wait, on the source


def test_a_failed_module_result_is_the_tasks_result(monkeypatch):
    result, calls, _sleeps = action_with(monkeypatch, ['done\n{"failed": true, "msg": "rolled back"}'], [])
    assert result["failed"] is True and result["msg"] == "rolled back" and "ansible.legacy.async_status" not in calls


@pytest.mark.parametrize("line", ["", '{"changed": tr', '{"started": true, "finished": false}', "[1, 2]"])
def test_a_done_result_that_does_not_parse_is_asked_of_async_status(monkeypatch, line):
    result, calls, _sleeps = action_with(monkeypatch, ["done\n" + line], [{"finished": True, "changed": True}])
    assert result == {"changed": True}
    assert calls == ["edge_migrate", "wait", "ansible.legacy.async_status", "rm"]


def test_a_failing_status_call_is_retried_after_a_pause_not_in_a_spin(monkeypatch):
    result, calls, sleeps = action_with(monkeypatch, [], [AnsibleError("ssh bounced")] * 3
                                        + [{"started": True, "finished": False}, {"finished": True, "changed": True}])
    assert result == {"changed": True}
    assert calls.count("ansible.legacy.async_status") == 5 and len(sleeps) == 4 and all(s >= 1.0 for s in sleeps)


def test_a_wait_that_did_not_run_pauses_before_the_next(monkeypatch):
    result, calls, sleeps = action_with(monkeypatch, ["", "sh: head: not found", "done"], [{"finished": True}])
    assert sleeps == [1.0, 1.0] and calls.count("wait") == 3


# ---------------------------------------------------------------- the detached start (pipelining on)
def start(job, module_code: str, env: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", em.start_command(str(job), sys.executable, env)], input=module_code,
                          capture_output=True, text=True, timeout=30, check=False)


def wait_done(job, seconds=60):
    """The action's own wait, polled until it says done (a loaded machine: a generous bound)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state, result, _progress = wait(job / "result", job / "none.json", seconds=1)
        if state == "done":
            return result
        assert state == "running", state
    raise AssertionError("the detached job never finished")


def test_the_detached_start_returns_at_once_and_its_result_comes_through_the_wait(tmp_path):
    job = tmp_path / "edgemig-job-1"
    gate = tmp_path / "release"   # the module holds until the test says so: no timing assumed
    code = ("import json, os, sys, time\n"
            f"deadline = time.monotonic() + 60\n"
            f"while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:\n"
            "    time.sleep(0.02)\n"
            "print(json.dumps({'changed': True, 'env': os.environ.get('EDGEMIG_FAULTS'), 'sid': os.getsid(0)}))\n")
    proc = start(job, code, env="EDGEMIG_FAULTS='{\"a\": 1}'")   # as Ansible's shell makes it: no trailing space
    assert proc.returncode == 0 and "edgemig-started" in proc.stdout, proc
    # the start returned while the module still runs: its result is async_wrapper's placeholder
    assert (job / "result").read_text().startswith('{"started": true')
    assert oct(os.stat(job).st_mode & 0o777) == "0o700"
    gate.touch()
    result = json.loads(wait_done(job))
    assert result["changed"] is True and result["env"] == '{"a": 1}'      # the task's environment
    assert result["sid"] != os.getsid(0)                                  # its own session: outlives the SSH one
    assert sorted(os.listdir(job)) == ["result", "stderr"]               # the code is gone, the result stays


def test_a_job_killed_before_its_result_ends_done_without_one_and_a_used_directory_is_refused(tmp_path):
    job = tmp_path / "edgemig-job-2"
    proc = start(job, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert proc.returncode == 0
    assert wait_done(job) == "no output: the module exited with status 137"   # done, not JSON: _lost says so
    again = start(job, "print('{}')\n")
    assert again.returncode != 0 and "edgemig-started" not in again.stdout   # mkdir refuses an existing path


def test_hostile_job_paths_stay_one_argument(tmp_path):
    job = tmp_path / "a b;touch pwned'$(id)"
    assert start(job, "print('{\"changed\": false}')\n").returncode == 0
    assert json.loads(wait_done(job)) == {"changed": False} and not (tmp_path / "pwned").exists()


def test_with_pipelining_the_task_starts_in_one_command_and_never_runs_async_status(monkeypatch):
    calls = []
    monkeypatch.setattr(em.time, "sleep", lambda s: None)
    act = bare_action(monkeypatch, em)

    def low_level(cmd, **kw):
        calls.append(cmd.split()[0] if not cmd.startswith("f=") else "wait")
        if cmd.startswith("umask"):
            assert kw["in_data"] == b"code" and "setsid" in cmd
            return {"rc": 0, "stdout": "edgemig-started\n"}
        if cmd.startswith("f="):
            return {"rc": 0, "stdout": 'done\n{"changed": true}\n'}
        return {"rc": 0, "stdout": ""}
    act._low_level_execute_command = low_level
    act._execute_module = lambda **kw: calls.append("module") or {}
    result = act.run(task_vars={"inventory_hostname": "edge1"})
    assert result == {"changed": True} and calls == ["umask", "wait", "rm"]


def test_with_pipelining_a_start_that_fails_says_why(monkeypatch):
    act = bare_action(monkeypatch, em)
    act._low_level_execute_command = lambda cmd, **kw: {"rc": 1, "stdout": "", "stderr": "mkdir: No space left"}
    result = act.run(task_vars={})
    assert result["failed"] and "could not be started" in result["msg"] and "No space left" in result["msg"]
