# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of edge_migrate: show where a long migration is while it runs.

A migration takes as long as its state takes to cross the link: a minute and
more on a slow uplink, with nothing on screen. This runs the module
asynchronously on the source (as ``async:`` would) and, every few seconds,
reads the progress file the module keeps there and prints one line: phase,
bytes acknowledged of the total, rate and expected end. The module's own work
is unchanged, so the downtime is too. With ``async:`` set on the task, or in
check mode, the module runs as usual and prints nothing extra.

The wait costs the run nothing beyond the module's own time: each poll is one
small shell command on the source that returns as soon as the job's results
file holds the module's result (checked every 0.1 s with ``head``, no Python on
the source while it migrates), else after ``POLL_S`` with the progress file;
``async_status`` runs once, for the result. (A fixed ``sleep(3)`` before each
``async_status`` made a 2 s migration a 5 s task: issue 26.)
"""
from __future__ import annotations

import json
import secrets
import shlex
import time

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

display = Display()

POLL_S = 3.0
# A bound on the whole run; the module's own waits (stall timeout, restore,
# health) end it long before this.
ASYNC_LIMIT_S = 6 * 3600


def progress_line(p: dict) -> str:
    """One line a person reads: 'streaming 38.2/155.0 MB, 4.9 Mbit/s, ~24 s left (zstd:3), 12 s'."""
    parts = [str(p.get("phase", "?"))]
    if "total_bytes" in p and "acked_bytes" in p:
        parts.append(f"{p['acked_bytes'] / 1e6:.1f}/{p['total_bytes'] / 1e6:.1f} MB")
    if p.get("raw_Bps"):
        parts.append(f"{p['raw_Bps'] * 8 / 1e6:.1f} Mbit/s")
    if p.get("eta_s") is not None:
        parts.append(f"~{p['eta_s']:.0f} s left")
    if p.get("codec"):
        parts.append(f"({p['codec']})")
    if p.get("elapsed_s") is not None:
        parts.append(f"{p['elapsed_s']:.0f} s")
    return ", ".join(parts)


# One poll, on the source: "done" once the results file no longer holds async_wrapper's
# '{"started": true, ...}' (its first 16 bytes), "missing" when the file was absent the whole wait, else
# "running"; then the progress file. Fractional sleep: GNU and busybox.
WAIT_SH = """f={results}; i=0; state=missing
while [ "$i" -lt {ticks} ]; do
  if [ -e "$f" ]; then
    case "$(head -c 16 "$f" 2>/dev/null)" in '{{"started": true'*|'') state=running ;; *) state=done; break ;; esac
  fi
  sleep 0.1; i=$((i + 1))
done
echo "$state"; cat {progress} 2>/dev/null; true"""
STATES = ("done", "running", "missing")
# async_wrapper may answer "started" before its job writes the results file (it waits 2.5 s at most for
# the job's signal): a file still missing this long after the start means the job is lost.
MISSING_GRACE_S = 15.0


def wait_command(results_file: str, progress_file: str, seconds: float) -> str:
    """The source-side wait of one poll (see the module's docstring)."""
    return WAIT_SH.format(results=shlex.quote(results_file), progress=shlex.quote(progress_file),
                          ticks=max(1, int(seconds * 10)))


def parse_wait(stdout: str) -> tuple[str, dict]:
    """(state, progress) from :data:`WAIT_SH`'s output: its first line (one of STATES, else
    "unknown"), then the progress file's JSON."""
    first, _sep, rest = stdout.strip().partition("\n")
    try:
        progress = json.loads(rest) if rest.strip() else {}
    except ValueError:  # caught while the module rewrote it
        progress = {}
    state = first.strip() if first.strip() in STATES else "unknown"
    return state, progress if isinstance(progress, dict) else {}


def should_ask(state: str, since_start_s: float) -> bool:
    """Whether to ask async_status now: the job wrote its result, or its file stayed missing past the grace."""
    return state == "done" or (state == "missing" and since_start_s > MISSING_GRACE_S)


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        if self._task.async_val or self._task.check_mode:
            wrap = bool(self._task.async_val) and not self._connection.has_native_async
            result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap))
            if not wrap:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return result

        args = dict(self._task.args)
        if not args.get("progress_file"):
            args["progress_file"] = f"/tmp/edgemig-progress-{secrets.token_hex(6)}.json"
        self._task.async_val = ASYNC_LIMIT_S
        try:
            started = self._execute_module(module_args=args, task_vars=task_vars, wrap_async=True)
        finally:
            self._task.async_val = 0
        if started.get("failed") or "ansible_job_id" not in started:
            return merge_hash(result, started)
        jid = started["ansible_job_id"]
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        results_file = started.get("results_file") or f"{async_dir}/{jid}"
        host = (task_vars or {}).get("inventory_hostname", "?")
        deadline = time.monotonic() + ASYNC_LIMIT_S
        last_line = ""
        status: dict = {}
        start = time.monotonic()
        while time.monotonic() < deadline:
            state, progress = self._wait(results_file, args["progress_file"])
            if state == "unknown":  # the wait itself did not run (its command failed): never a hot loop
                time.sleep(1.0)
            if should_ask(state, time.monotonic() - start):
                try:
                    status = self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                                  module_args={"jid": jid, "_async_dir": async_dir})
                except AnsibleError as exc:  # a bounced connection: the job goes on, ask again
                    display.vvv(f"edge_migrate: status poll failed, retrying: {exc}")
                    time.sleep(1.0)
                    continue
                if status.get("finished") or (status.get("failed") and status.get("_ansible_parsed", True)
                                              and not status.get("started")):
                    break
                time.sleep(POLL_S)  # done by its file, not yet by async_status: ask again, not at once
            line = progress_line(progress) if progress else ""
            if line and line != last_line:
                display.display(f"  [{host}] edge_migrate: {line}")
                last_line = line
        else:
            status = {"failed": True, "msg": f"edge_migrate did not finish within {ASYNC_LIMIT_S} s"}
        try:
            self._low_level_execute_command(f"rm -f {shlex.quote(results_file)} {shlex.quote(args['progress_file'])}")
        except AnsibleError:
            pass
        self._remove_tmp_path(self._connection._shell.tmpdir)
        for key in ("ansible_job_id", "started", "finished", "results_file", "erased", "stdout", "stderr",
                    "stdout_lines", "stderr_lines"):
            status.pop(key, None)
        return merge_hash(result, status)

    def _wait(self, results_file: str, progress_file: str) -> tuple[str, dict]:
        """(the job's state, its latest progress): one shell command on the source, at most ``POLL_S`` long."""
        try:
            res = self._low_level_execute_command(wait_command(results_file, progress_file, POLL_S))
        except AnsibleError as exc:  # a bounced connection: the job goes on, ask again after a pause
            display.vvv(f"edge_migrate: wait failed, retrying: {exc}")
            time.sleep(1.0)
            return "running", {}
        return parse_wait(res.get("stdout") or "")
