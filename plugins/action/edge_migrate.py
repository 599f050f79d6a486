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

With pipelining on (as a module's stdin is trusted with its code anyway), the
start is one command on the source: the module's code goes in on stdin, into a
private job directory, and runs there detached from the SSH session (its own
session: it outlives the controller, as async_wrapper's job does), writing its
result beside it. Without pipelining, Ansible's own async start runs
(async_wrapper: four more round trips and a second module to build and send).

The wait costs the run nothing beyond the module's own time: each poll is one
small shell command on the source that returns as soon as the job's results
file holds the module's result (checked every 0.1 s with ``head``, no Python on
the source while it migrates), with that result, else after ``POLL_S`` with the
progress file. ``async_status`` runs only when the result cannot be read that
way (a job lost, a result that does not parse). (A fixed ``sleep(3)`` before
each ``async_status`` made a 2 s migration a 5 s task, and the ``async_status``
run itself cost 0.4 s: issue 26.)

A move parked ahead (``gate``, issue 26): the module starts at once with
``park`` on its job directory, connects to the target and runs its warm
rounds; when its progress says parked (the wait returns as soon as it does),
the controller asks the gate URL (one GET, a long poll) and writes its answer
into the job directory as a file (``go`` or ``nogo``), which the module sees
within 20 ms; the answer goes down a command opened on the source while the
module parks (:class:`AnswerChannel`: one round trip, not a new SSH session). So the handover costs the freeze path only. The module gives up
by itself (nothing frozen) ``PARK_GRACE_S`` after the gate's timeout: a
controller that dies while parked leaves nothing frozen and nothing parked.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash
from ansible.vars.clean import remove_internal_keys

from ansible_collections.edgemig.migration.plugins.module_utils.driver.park import (
    GATE_TIMEOUT_S,
    LEASE,
    LEASE_S,
    PARK_CHECK_S,
    PARK_GRACE_S,
)

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
# "running"; on the next line, when done, the results file (async_wrapper writes it whole, by a rename,
# as one line of JSON); then the progress file. Fractional sleep: GNU and busybox.
WAIT_SH = """f={results}; i=0; state=missing
while [ "$i" -lt {ticks} ]; do
  if [ -e "$f" ]; then
    case "$(head -c 16 "$f" 2>/dev/null)" in '{{"started": true'*|'') state=running ;; *) state=done; break ;; esac
  fi
  {parked}sleep 0.1; i=$((i + 1))
done
echo "$state"; if [ "$state" = done ]; then tr -d '\\n' < "$f"; fi; echo; cat {progress} 2>/dev/null; true"""
# With a gate: the wait also ends, "parked", as soon as the running module's progress says it is parked
# (progress.ProgressFile writes json.dump's spacing; park.PARKED and PARKED_COLD begin so).
PARKED_SH = """if [ "$state" = running ] && grep -q '"phase": "parked' {progress} 2>/dev/null; then state=parked; break; fi
  """
STATES = ("done", "running", "missing", "parked")
# async_wrapper may answer "started" before its job writes the results file (it waits 2.5 s at most for
# the job's signal): a file still missing this long after the start means the job is lost.
MISSING_GRACE_S = 15.0


def wait_command(results_file: str, progress_file: str, seconds: float, parked: bool = False,
                 renew: str | None = None) -> str:
    """The source-side wait of one poll (see the module's docstring); ``parked``: it also ends when
    the module is parked at its gate; ``renew``: the parked module's lease file, touched first."""
    progress = shlex.quote(progress_file)
    wait = WAIT_SH.format(results=shlex.quote(results_file), progress=progress, ticks=max(1, int(seconds * 10)),
                          parked=PARKED_SH.format(progress=progress) if parked else "")
    return f"touch {shlex.quote(renew)} 2>/dev/null; {wait}" if renew else wait


def parse_wait(stdout: str) -> tuple[str, str, dict]:
    """(state, result, progress) from :data:`WAIT_SH`'s output: its first line (one of STATES, else
    "unknown"), the job's result as the results file holds it ("" unless done), the progress file's JSON."""
    first, _sep, rest = stdout.lstrip().partition("\n")
    state = first.strip() if first.strip() in STATES else "unknown"
    result, _sep, rest = rest.partition("\n") if state in STATES else ("", "", rest)
    try:
        progress = json.loads(rest) if rest.strip() else {}
    except ValueError:  # caught while the module rewrote it
        progress = {}
    return state, result.strip() if state == "done" else "", progress if isinstance(progress, dict) else {}


# The detached start (pipelining on): the module's code from stdin into a new private directory (named
# as Ansible names a module it runs from a file, so that ps shows what runs), a
# placeholder result as async_wrapper writes one, then the module run in its own session; its output
# lands in result.partial and is renamed to result when it exits, however it exits (killed: a line
# saying so, never an empty file, which the wait would read as async_wrapper's file being written).
START_SH = """umask 077 && mkdir {job} && cat > {job}/AnsiballZ_edge_migrate.py && printf '%s' '{{"started": true}}' > {job}/result \
&& cat > {job}/run <<'EDGEMIG_RUN' && (setsid sh {job}/run < /dev/null > /dev/null 2>&1 &) && echo edgemig-started
{env} {python} {job}/AnsiballZ_edge_migrate.py > {job}/result.partial 2> {job}/stderr
rc=$?
[ -s {job}/result.partial ] || printf 'no output: the module exited with status %s' "$rc" > {job}/result.partial
mv -f {job}/result.partial {job}/result
rm -f {job}/AnsiballZ_edge_migrate.py {job}/run
EDGEMIG_RUN"""


def start_command(job: str, python: str, env: str) -> str:
    """The source-side start of :data:`START_SH`; ``env``: Ansible's environment string (shell syntax)."""
    return START_SH.format(job=shlex.quote(job), python=python, env=env)


# ---------------------------------------------------------------- the gate (a move parked ahead)
GATE_ANSWER_MAX = 64 << 10


def gate_problem(url) -> str | None:
    """Why ``url`` is not a gate this plugin asks (it comes from an event source: hostile-ish), else None."""
    if not isinstance(url, str) or not url:
        return f"gate must be a URL, not {url!r}"
    if any(ord(c) <= 0x20 or ord(c) == 0x7f for c in url):
        return f"gate {url!r}: whitespace or control characters in the URL"
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port   # port: raises on one that is not a number
    except ValueError as exc:
        return f"gate {url!r}: {exc}"
    if parts.scheme not in ("http", "https") or not host or port == 0:
        return f"gate {url!r}: only an http or https URL with a host is asked"
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer that is not go: the URL is asked as given, nowhere else."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def ask_gate(url: str, timeout: float) -> tuple[bool, str]:
    """(go, what the gate said in words): one GET on ``url`` (checked by gate_problem), waiting up to
    ``timeout`` s for the answer; go only for a JSON object whose ``go`` is true (a bool), anything
    else - another answer, an HTTP error or redirect, no answer - is no-go. No proxy: the URL holds
    the run's secret."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers={"Accept": "application/json"}),
                         timeout=timeout) as resp:
            body = resp.read(GATE_ANSWER_MAX + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        return False, f"HTTP {exc.code} from the gate"
    except urllib.error.URLError as exc:
        return False, f"no answer from the gate: {exc.reason}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return False, f"no answer from the gate: {type(exc).__name__}: {exc}"
    if len(body) > GATE_ANSWER_MAX:
        return False, f"the gate's answer is longer than {GATE_ANSWER_MAX} bytes"
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return False, "the gate's answer is not JSON"
    if not isinstance(data, dict) or not isinstance(data.get("go"), bool):
        return False, 'the gate\'s answer is not {"go": true|false}'
    return data["go"], "go" if data["go"] else "no-go"


def should_ask(state: str, since_start_s: float) -> bool:
    """Whether to ask async_status now: the job wrote its result, or its file stayed missing past the grace."""
    return state == "done" or (state == "missing" and since_start_s > MISSING_GRACE_S)


# The gate's answer through a command opened on the source while the module is parked: it writes the
# answer's file when a line comes (only go or nogo), and nothing when its input ends without one.
ANSWER_SH = """read -r answer || exit 1
case $answer in go|nogo) touch {job}/"$answer" ;; *) exit 1 ;; esac"""


class AnswerChannel:
    """A command kept open on the source while the module is parked, through the ssh connection's
    master (its ControlPath: no new login), so that the gate's answer costs one round trip (~5 ms
    in the lab) and not a new session (``touch``: 0.07-0.13 s, which was most of go -> freeze).

    Only with the ``ssh`` connection, key authentication and no become (a password or a become
    prompt could not be answered here); otherwise, or if the channel is gone when the answer comes, the answer goes as a command."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    @classmethod
    def open(cls, connection, job_dir: str) -> AnswerChannel | None:
        if getattr(connection, "transport", None) != "ssh" or getattr(connection, "become", None) is not None:
            return None
        try:
            if (connection.get_option("password") or connection._play_context.password
                    or connection.get_option("pkcs11_provider")):
                return None   # sshpass would wait for a password only Ansible's own run writes
            host = connection.get_option("host") or connection._play_context.remote_addr
            cmd = "/bin/sh -c " + shlex.quote(ANSWER_SH.format(job=shlex.quote(job_dir)))
            argv = connection._build_command(connection.get_option("ssh_executable"), "ssh", host, cmd)
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        except Exception as exc:  # noqa: BLE001 -- any failure only costs the faster path
            display.vvv(f"edge_migrate: no answer channel to the parked module: {exc}")
            return None
        return cls(proc)

    def answer(self, name: str, timeout: float = 5.0) -> bool:
        """Whether ``name`` reached the source's job directory through the channel."""
        if self.proc.poll() is not None:
            return False
        try:
            self.proc.stdin.write(f"{name}\n".encode())
            self.proc.stdin.close()
            return self.proc.wait(timeout) == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def close(self) -> None:
        """Its input closed (the source's ``read`` ends: nothing written), the ssh client gone."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        # The controller's options: never the module's (it refuses a gate that reaches it).
        gate, gate_timeout = args.pop("gate", None), args.pop("gate_timeout", None)
        if gate is not None:
            problem = self._gate_problem(gate, gate_timeout)
            if problem:
                return merge_hash(result, {"failed": True, "rolled_back": "not_needed",
                                           "msg": f"{problem}; nothing was started, nothing frozen"})
            gate_timeout = float(gate_timeout if gate_timeout is not None else GATE_TIMEOUT_S)
        if self._task.async_val or self._task.check_mode:
            wrap = bool(self._task.async_val) and not self._connection.has_native_async
            result = merge_hash(result, self._execute_module(module_args=args, task_vars=task_vars, wrap_async=wrap))
            if not wrap:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return result

        if not args.get("progress_file"):
            args["progress_file"] = f"/tmp/edgemig-progress-{secrets.token_hex(6)}.json"
        job_dir = f"/tmp/edgemig-job-{secrets.token_hex(8)}" if self._is_pipelining_enabled("new") else None
        said = None
        if gate is not None:
            early, said = self._before_start(args, gate, gate_timeout, job_dir)
            if early is not None:
                return merge_hash(result, early)
        if job_dir:
            started = self._start_detached(job_dir, args, task_vars)
        else:
            self._task.async_val = ASYNC_LIMIT_S
            try:
                started = self._execute_module(module_args=args, task_vars=task_vars, wrap_async=True)
            finally:
                self._task.async_val = 0
        if started.get("failed") or "ansible_job_id" not in started:
            return merge_hash(result, started)
        status = self._await(started, job_dir, args["progress_file"], task_vars,
                             gate=(gate, gate_timeout) if gate is not None and job_dir else None)
        if job_dir and self._gate_said is not None and isinstance(status.get("parked"), dict):
            status["parked"]["gate"] = self._gate_said
        elif said is not None:   # asked before the start (no pipelining): it said go
            status["parked"] = {"released": True, "gate": said}
        try:
            self._low_level_execute_command(f"rm -rf {shlex.quote(job_dir or started['results_file'])} "
                                            f"{shlex.quote(args['progress_file'])}")
        except AnsibleError:
            pass
        self._remove_tmp_path(self._connection._shell.tmpdir)
        for key in ("ansible_job_id", "started", "finished", "results_file", "erased", "stdout", "stderr",
                    "stdout_lines", "stderr_lines"):
            status.pop(key, None)
        return merge_hash(result, status)

    _gate_said: str | None = None

    def _before_start(self, args: dict, gate: str, gate_timeout: float,
                      job_dir: str | None) -> tuple[dict | None, str | None]:
        """(the task's result if it ends here, what the gate said if it was asked): with a job directory
        the module parks there (``args["park"]``), a little longer than the controller waits for the
        gate (the user's refresh_s and timeout stand); without one (no pipelining) the gate is asked
        now, before the module starts."""
        if job_dir:
            park = args.get("park") or {}
            if not isinstance(park, dict):
                return {"failed": True, "rolled_back": "not_needed",
                        "msg": "park must be a dict (dir, timeout, refresh_s) with gate; nothing was started, "
                               "nothing frozen"}, None
            args["park"] = dict(park, dir=job_dir)
            if args["park"].get("timeout") is None:
                args["park"]["timeout"] = gate_timeout + PARK_GRACE_S
            if args["park"].get("lease_s") is None:
                args["park"]["lease_s"] = LEASE_S   # renewed by _at_gate
            return None, None
        display.warning("edge_migrate: gate without pipelining: the gate is asked before the module starts "
                        "(no parking ahead: the handover then waits for the module's start and connection)")
        t0 = time.monotonic()
        go, said = ask_gate(gate, gate_timeout)
        if go:
            return None, said
        return {"changed": False, "parked": {"released": False, "why": "no-go at the gate", "gate": said,
                                             "waited_s": round(time.monotonic() - t0, 3), "refresh_rounds": 0}}, said

    def _gate_problem(self, gate, gate_timeout) -> str | None:
        """Why ``gate`` (with ``gate_timeout``) cannot be asked by this task, checked before anything starts."""
        problem = gate_problem(gate)
        if problem:
            return problem
        if gate_timeout is not None:
            try:
                ok = float(gate_timeout) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                return f"gate_timeout must be a number of seconds > 0, not {gate_timeout!r}"
        if self._task.async_val:
            return "gate does not combine with async: (the action plugin waits at the gate itself)"
        return None

    def _await(self, started: dict, job_dir: str | None, progress_file: str, task_vars,
               gate: tuple[str, float] | None = None) -> dict:
        """The module's result: waits on the source (:meth:`_wait`), printing its progress as it changes;
        with ``gate`` (url, timeout), asks it once the module is parked (:meth:`_at_gate`)."""
        jid = started["ansible_job_id"]
        async_dir = None
        if not started.get("results_file"):
            async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
            started["results_file"] = f"{async_dir}/{jid}"
        host = (task_vars or {}).get("inventory_hostname", "?")
        deadline = time.monotonic() + ASYNC_LIMIT_S
        last_line = ""
        start = time.monotonic()
        while time.monotonic() < deadline:
            at_gate = gate is not None and self._gate_said is None
            state, job_result, progress = self._wait(started["results_file"], progress_file, parked=at_gate)
            if state == "unknown":  # the wait itself did not run (its command failed): never a hot loop
                time.sleep(1.0)
            status = self._module_result(job_result) if state == "done" else {}
            if status:
                return status
            if job_dir and state in ("done", "missing"):  # no async_status to ask: the job ended without a result
                return self._lost(job_dir, job_result, state)
            if should_ask(state, time.monotonic() - start):
                if async_dir is None:
                    async_dir = self._remote_expand_user(self.get_shell_option("async_dir",
                                                                               default="~/.ansible_async"))
                try:
                    status = self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                                  module_args={"jid": jid, "_async_dir": async_dir})
                except AnsibleError as exc:  # a bounced connection: the job goes on, ask again
                    display.vvv(f"edge_migrate: status poll failed, retrying: {exc}")
                    time.sleep(1.0)
                    continue
                if status.get("finished") or (status.get("failed") and status.get("_ansible_parsed", True)
                                              and not status.get("started")):
                    return status
                time.sleep(POLL_S)  # done by its file, not yet by async_status: ask again, not at once
            line = progress_line(progress) if progress else ""
            if line and line != last_line:
                display.display(f"  [{host}] edge_migrate: {line}")
                last_line = line
            if at_gate and (state == "parked" or (state == "running"
                                                  and str(progress.get("phase", "")).startswith("parked"))):
                display.display(f"  [{host}] edge_migrate: parked, asking the gate")
                self._gate_said = self._at_gate(gate, job_dir, started["results_file"], progress_file)
                display.display(f"  [{host}] edge_migrate: the gate said {self._gate_said}")
        return {"failed": True, "msg": f"edge_migrate did not finish within {ASYNC_LIMIT_S} s"}

    def _at_gate(self, gate: tuple[str, float], job_dir: str, results_file: str, progress_file: str) -> str:
        """Ask the gate (a thread: one GET, up to its timeout) while the parked job is looked at every
        ``PARK_CHECK_S``; its answer goes to the job as a file (``go``, else ``nogo``). Returns what the
        gate said, or why it was not asked to the end (the job ended first: its result says how)."""
        box: dict = {}
        asker = threading.Thread(target=lambda: box.update(answer=ask_gate(*gate)), name="edgemig-gate", daemon=True)
        asker.start()
        channel = AnswerChannel.open(self._connection, job_dir)
        try:
            while True:
                asker.join(PARK_CHECK_S)
                if not asker.is_alive():
                    break
                if self._wait(results_file, progress_file, seconds=0.1,
                              renew=f"{job_dir}/{LEASE}")[0] in ("done", "missing"):
                    return "not asked to the end: the module ended while parked"
            go, said = box.get("answer", (False, "no answer from the gate"))
            self._release(job_dir, "go" if go else "nogo", channel)
            return said
        finally:
            if channel is not None:
                channel.close()

    def _release(self, job_dir: str, name: str, channel: AnswerChannel | None = None) -> None:
        """The gate's answer to the parked module: down ``channel`` when it is open (one round trip),
        else one short command on the source (a new SSH session: ~0.1 s). A failure is retried twice;
        the module gives up by itself (nothing frozen) if it never comes."""
        if channel is not None and channel.answer(name):
            return
        cmd = f"touch {shlex.quote(job_dir + '/' + name)}"
        for attempt in range(3):
            try:
                if self._low_level_execute_command(cmd, sudoable=True).get("rc") == 0:
                    return
            except AnsibleError as exc:
                display.vvv(f"edge_migrate: releasing the gate ({name}) failed: {exc}")
            if attempt < 2:
                time.sleep(1.0)
        display.warning(f"edge_migrate: the gate's answer ({name}) could not be given to the parked module; it "
                        "gives up by itself at its park timeout, nothing frozen")

    def _wait(self, results_file: str, progress_file: str, parked: bool = False,
              seconds: float = POLL_S, renew: str | None = None) -> tuple[str, str, dict]:
        """(the job's state, its result once done, its latest progress): one shell command on the source,
        at most ``seconds`` long (``parked``: it ends when the module is parked too; ``renew``: a parked
        module's lease file, touched first)."""
        try:
            res = self._low_level_execute_command(wait_command(results_file, progress_file, seconds, parked, renew),
                                                  sudoable=True)
        except AnsibleError as exc:  # a bounced connection: the job goes on, ask again after a pause
            display.vvv(f"edge_migrate: wait failed, retrying: {exc}")
            time.sleep(1.0)
            return "running", "", {}
        return parse_wait(res.get("stdout") or "")

    def _start_detached(self, job_dir: str, args: dict, task_vars) -> dict:
        """Start the module on the source in one command (:data:`START_SH`); the answer as async_wrapper
        gives it (``ansible_job_id``, ``results_file``) or a failure."""
        self._update_module_args(self._task.action, args, task_vars)
        bits, _path = self._configure_module(module_name=self._task.action, module_args=args, task_vars=task_vars)
        self._used_interpreter = bits.shebang
        python = bits.shebang.replace("#!", "").strip()
        cmd = start_command(job_dir, python, self._compute_environment_string())
        res = self._low_level_execute_command(cmd, sudoable=True, in_data=bits.b_module_data)
        if res.get("rc") != 0 or "edgemig-started" not in (res.get("stdout") or ""):
            return {"failed": True, "msg": f"edge_migrate could not be started on the source (rc {res.get('rc')}): "
                                           f"{(res.get('stderr') or res.get('stdout') or '').strip()[-2000:]}"}
        return {"ansible_job_id": os.path.basename(job_dir), "results_file": f"{job_dir}/result"}

    def _lost(self, job_dir: str, text: str, state: str) -> dict:
        """The failure of a detached job that ended without a result it could give (the module killed, its
        output not JSON, its directory gone): what it wrote, and its stderr's end."""
        if state == "missing":
            return {"failed": True, "msg": f"edge_migrate's job on the source vanished ({job_dir}). Its migration "
                                           "record says where the service stands (playbooks/recover.yml converges)"}
        try:
            err = self._low_level_execute_command(f"tail -c 2000 {shlex.quote(job_dir + '/stderr')}").get("stdout")
        except AnsibleError:
            err = ""
        return {"failed": True, "msg": f"edge_migrate ended without a result on the source: {text[-1000:]!r}; "
                                       f"stderr: {(err or '').strip()!r}. Its migration record says where the "
                                       "service stands (playbooks/recover.yml converges)"}

    def _module_result(self, text: str) -> dict:
        """The module's result from the results file's text, as async_status would return it (decoded as
        the module's own output is, internal keys removed); {} when it does not parse (async_status is
        asked then)."""
        if not text:
            return {}
        data = self._parse_returned_data({"stdout": text, "stderr": "", "rc": 0}, "legacy")
        if not data.pop("_ansible_parsed", False) or data.get("started"):
            return {}
        remove_internal_keys(data)
        data.pop("ansible_job_id", None)
        return data
