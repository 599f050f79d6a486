# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which programs ran, and when, while a call was in flight: the kernel's exec and exit events.

A tracefs instance of its own (the host's global trace is left alone) records
``sched_process_exec`` and ``sched_process_exit`` with CLOCK_MONOTONIC stamps,
the clock of ``time.monotonic()``: the times line up with the caller's own.
Nothing is attached to any process (strace on dockerd would slow every syscall of
it); the kernel writes the events into a ring buffer at no cost to the tracee.

Benchmark code (make bench-floor), not part of the collection.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile

EVENTS = ("sched/sched_process_exec", "sched/sched_process_exit")
_LINE = re.compile(r"^\s*(?P<task>.+?)-(?P<tid>\d+)\s+\[\d+\]\s+\S+\s+(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s+(?P<rest>.*)$")
_FIELDS = re.compile(r"(\w+)=(\S+)")


class ExecTrace:
    """``with ExecTrace() as tr: ...; tr.take()`` -> the processes exec'd since the last take."""

    def __init__(self, buffer_kb: int = 4096):
        self.buffer_kb = buffer_kb
        self.mount = None
        self.inst = None

    def __enter__(self) -> ExecTrace:
        root = "/sys/kernel/tracing"
        if not os.path.isfile(os.path.join(root, "trace_clock")):
            self.mount = tempfile.mkdtemp(prefix="edgemig-tracefs-")
            subprocess.run(["mount", "-t", "tracefs", "nodev", self.mount], check=True)
            root = self.mount
        self.inst = os.path.join(root, "instances", f"edgemig-floor-{os.getpid()}")
        os.mkdir(self.inst)
        self._write("trace_clock", "mono")
        self._write("buffer_size_kb", str(self.buffer_kb))
        for event in EVENTS:
            self._write(os.path.join("events", event, "enable"), "1")
        self._write("tracing_on", "1")
        self.take()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._write("tracing_on", "0")
            os.rmdir(self.inst)
        finally:
            if self.mount:
                subprocess.run(["umount", self.mount], check=False)
                os.rmdir(self.mount)

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.inst, name), "w") as fh:
            fh.write(value)

    def take(self) -> list[dict]:
        """The processes seen since the last take: ``{pid, file, comm, exec, exit}`` (exit None: still running),
        in exec order; the buffer is emptied."""
        with open(os.path.join(self.inst, "trace")) as fh:
            text = fh.read()
        self._write("trace", "")
        procs: dict[int, dict] = {}
        order: list[dict] = []
        for line in text.splitlines():
            m = _LINE.match(line)
            if not m:
                continue
            fields = dict(_FIELDS.findall(m["rest"]))
            ts = float(m["ts"])
            if m["event"] == "sched_process_exec":
                pid = int(fields.get("pid", m["tid"]))
                if pid in procs and procs[pid]["exit"] is None:
                    procs[pid]["reexec"] = fields.get("filename", "?")  # a wrapper exec'ing its loader: one process
                    continue
                rec = {"pid": pid, "file": fields.get("filename", "?"), "comm": m["task"].strip(),
                       "exec": ts, "exit": None}
                procs[pid] = rec
                order.append(rec)
            elif m["event"] == "sched_process_exit":
                rec = procs.get(int(fields.get("pid", m["tid"])))
                if rec is not None and rec["exit"] is None:
                    rec["exit"] = ts
        return order
