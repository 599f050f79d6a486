# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The follow rulebook on the lab, for tests/integration/test_follow.py and bench/mobility_bench.py.

``Rulebook`` runs ``ansible-rulebook -r extensions/eda/rulebooks/follow.yml``
(the same command line as ``make follow``) with its own vars file, port and
event log; ``Prober`` is the user's client: HTTP requests to the service's
stable address all along, each one timed.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import yaml
from labutil import INVENTORY, ROOT, env, playbook, running_on

RULEBOOK = os.path.join(ROOT, "extensions", "eda", "rulebooks", "follow.yml")


def place(svc: str, edge: str) -> None:
    """``svc`` deployed and running on ``edge`` (deploy.yml leaves a running service where it runs)."""
    playbook("deploy.yml", "-e", f"svc={svc}", "-e", f"host={edge}")
    if running_on(svc) != [edge]:
        playbook("migrate.yml", "-e", f"svc={svc}", "-e", f"target={edge}")
    assert running_on(svc) == [edge], f"{svc} runs on {running_on(svc)}, not {edge}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def follow_inventory(directory: str) -> str:
    """What ``make follow-inventory`` makes: the lab inventory, its group_vars and an explicit localhost."""
    inv = os.path.join(directory, "inventory")
    os.makedirs(inv, exist_ok=True)
    shutil.copy(INVENTORY, os.path.join(inv, "hosts.yml"))
    shutil.copy(os.path.join(ROOT, "extensions", "eda", "controller.yml"), os.path.join(inv, "controller.yml"))
    shutil.copytree(os.path.join(os.path.dirname(INVENTORY), "group_vars"), os.path.join(inv, "group_vars"),
                    dirs_exist_ok=True)
    return inv


class Rulebook:
    """ansible-rulebook with the follow rulebook; a context manager (stops it, and its runs, at exit)."""

    def __init__(self, services: dict | None = None, dwell_s: float = 3.0, ttl_s: float = 30.0,
                 locations: dict | None = None, port: int | None = None, workdir: str | None = None,
                 rulebook: str = RULEBOOK, cwd: str = ROOT, environ: dict | None = None):
        """``rulebook``, ``cwd``, ``environ``: another rulebook (``edgemig.migration.follow``: the installed
        collection's), started in another directory with another environment (default: this checkout's,
        ``labutil.env()``, with every run's tasks timed)."""
        self.rulebook, self.cwd, self.environ = rulebook, cwd, environ
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = workdir or tempfile.mkdtemp(prefix="edgemig-follow-")
        os.makedirs(self.dir, exist_ok=True)
        self.log_path = os.path.join(self.dir, "follow-events.jsonl")
        self.out_path = os.path.join(self.dir, "ansible-rulebook.log")
        self.vars = {"follow_services": services or {"u1": ["apache"]}, "follow_port": self.port,
                     "follow_dwell_s": dwell_s, "follow_ttl_s": ttl_s, "follow_log": self.log_path,
                     "follow_locations": locations or {}}
        self.token_file = os.path.join(self.dir, "follow-token")
        self.vars["follow_token_file"] = self.token_file
        self.vars["follow_edges"] = ["edge1", "edge2"]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Rulebook:
        vars_file = os.path.join(self.dir, "follow-vars.yml")
        with open(vars_file, "w") as fh:
            yaml.safe_dump(self.vars, fh)
        if self.environ is None:
            e = env()
            # Every follow run's tasks timed in the rulebook's log (what stands between event and freeze).
            e.setdefault("ANSIBLE_CALLBACKS_ENABLED", "ansible.posix.profile_tasks")
        else:
            e = dict(self.environ)
        cmd = ["ansible-rulebook", "-r", self.rulebook, "-i", follow_inventory(self.dir), "--vars", vars_file, "-v"]
        self.out = open(self.out_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=e, stdout=self.out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ansible-rulebook exited {self.proc.returncode}:\n{self.tail()}")
            try:
                self.status()
                return self
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"ansible-rulebook did not listen on {self.base} in 90 s:\n{self.tail()}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.out.close()

    def tail(self, n: int = 6000) -> str:
        with open(self.out_path, errors="replace") as fh:
            return fh.read()[-n:]

    def _req(self, path: str, body: object | None = None, timeout: float = 5.0) -> dict:
        """Authenticated (issue 23): the source makes its token file (0600) in the run's directory on start
        and every request sends ``Authorization: Bearer <token>``; until the file exists a request fails
        with an OSError, which the start-up wait retries."""
        with open(self.token_file) as fh:
            token = fh.read().strip()
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method="POST" if data else "GET",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def event(self, edge: str, kind: str = "handover", user: str = "u1", confidence: float = 1.0) -> dict:
        return self._req("/event", {"user": user, "edge": edge, "kind": kind, "confidence": confidence})

    def status(self) -> dict:
        return self._req("/status")

    def log(self) -> list[dict]:
        return self.status()["log"]

    def wait(self, pred, timeout: float, what: str) -> dict:
        """Poll /status until ``pred(status)``; fails with the rulebook's output otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if pred(st):
                return st
            time.sleep(0.2)
        raise AssertionError(f"{what}: not within {timeout} s; status {json.dumps(self.status()['policy'])}\n{self.tail()}")

    def wait_idle(self, svc: str, timeout: float = 120.0) -> dict:
        return self.wait(lambda st: svc not in st["policy"]["plans"], timeout, f"{svc}: runs done")

    def wait_parked(self, svc: str, timeout: float = 120.0) -> dict:
        return self.wait(lambda st: st["policy"]["plans"].get(svc, {}).get("state") == "parked", timeout,
                         f"{svc}: target prepared")


class Prober(threading.Thread):
    """The user's client: GET http://host:port/path every ``interval`` s; each request (start, end, ok)."""

    def __init__(self, host: str, port: int, path: str = "/", interval: float = 0.05, timeout: float = 1.0):
        super().__init__(daemon=True)
        self.host, self.port, self.path, self.interval, self.timeout = host, port, path, interval, timeout
        self.samples: list[tuple[float, float, bool]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            t0 = time.time()
            ok = False
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request("GET", self.path)
                resp = conn.getresponse()
                resp.read()
                ok = 200 <= resp.status < 400
                conn.close()
            except (OSError, http.client.HTTPException):
                ok = False
            t1 = time.time()
            self.samples.append((t0, t1, ok))
            self._halt.wait(max(0.0, self.interval - (t1 - t0)))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def back_after(self, a: float, b: float, slow_s: float = 0.5) -> float | None:
        """The service back: end of the first good request after the last failed or slow one
        started in [a, b) (None: the client saw no interruption there)."""
        last_bad = None
        for i, (t0, t1, ok) in enumerate(self.samples):
            if a <= t0 < b and (not ok or t1 - t0 > slow_s):
                last_bad = i
        if last_bad is None:
            return None
        for _t0, t1, ok in self.samples[last_bad + 1:]:
            if ok:
                return t1
        return None

    def window(self, a: float, b: float, slow_s: float = 0.5) -> dict:
        """Requests started in [a, b): count, failed, slow (ok but > slow_s), longest gap without an answer."""
        inside = [s for s in self.samples if a <= s[0] < b]
        gap, last_ok = 0.0, None
        for _t0, t1, ok in inside:
            if ok:
                if last_ok is not None:
                    gap = max(gap, t1 - last_ok)
                last_ok = t1
        return {"requests": len(inside), "failed": sum(1 for s in inside if not s[2]),
                "slow": sum(1 for s in inside if s[2] and s[1] - s[0] > slow_s), "max_gap_s": round(gap, 3)}
