# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of edge_migrate: show where a long migration is while it runs.

A migration takes as long as its state takes to cross the link: a minute and
more on a slow uplink, with nothing on screen. This runs the module
asynchronously on the source (as ``async:`` would) and, every few seconds,
reads the progress file the module keeps there and prints one line: phase,
bytes acknowledged of the total, rate and expected end. The module's own work
is unchanged, so the downtime is too; the polls are small SSH commands to the
source. With ``async:`` set on the task, or in check mode, the module runs as
usual and prints nothing extra.
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
        host = (task_vars or {}).get("inventory_hostname", "?")
        deadline = time.monotonic() + ASYNC_LIMIT_S
        last_line = ""
        status: dict = {}
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            try:
                status = self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                              module_args={"jid": jid, "_async_dir": async_dir})
            except AnsibleError as exc:  # a bounced connection: the job goes on, ask again
                display.vvv(f"edge_migrate: status poll failed, retrying: {exc}")
                continue
            if status.get("finished") or (status.get("failed") and status.get("_ansible_parsed", True)
                                          and not status.get("started")):
                break
            line = self._progress(args["progress_file"])
            if line and line != last_line:
                display.display(f"  [{host}] edge_migrate: {line}")
                last_line = line
        else:
            status = {"failed": True, "msg": f"edge_migrate did not finish within {ASYNC_LIMIT_S} s"}
        try:
            self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                 module_args={"jid": jid, "mode": "cleanup", "_async_dir": async_dir})
            self._low_level_execute_command(f"rm -f {shlex.quote(args['progress_file'])}")
        except AnsibleError:
            pass
        self._remove_tmp_path(self._connection._shell.tmpdir)
        for key in ("ansible_job_id", "started", "finished", "results_file", "erased", "stdout", "stderr",
                    "stdout_lines", "stderr_lines"):
            status.pop(key, None)
        return merge_hash(result, status)

    def _progress(self, path: str) -> str:
        try:
            res = self._low_level_execute_command(f"cat {shlex.quote(path)}")
            if res.get("rc") != 0:
                return ""
            return progress_line(json.loads(res.get("stdout") or "{}"))
        except (AnsibleError, ValueError):
            return ""
