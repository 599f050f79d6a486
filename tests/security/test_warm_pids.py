# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 23 item 6: a warm round reads a pid's memory only while the pid is still the container's process.

Host pids are collected once and warm rounds run for minutes; a pid recycled meanwhile names
another process, whose memory the sender (root) would read and ship to the target. Each read is
preceded by a check of the process's start time and cgroup against what was recorded at the
collection; a pid that fails it is skipped and counted. With real processes: a child is recorded,
killed, and another one started with the very same pid (``ns_last_pid``, as root) or, where that
is not allowed, recorded under the first one's identity.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.sender import precopy, process_memory as pm
from ansible_collections.edgemig.migration.plugins.module_utils.sender.precopy import RoundItems, WarmState

# A child that fills 16 pages with a marker of its own and waits.
CHILD = r"""
import ctypes, mmap, sys
mark = sys.argv[1].encode()
buf = mmap.mmap(-1, 16 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
buf[:] = (mark * (16 * 4096 // len(mark) + 1))[:16 * 4096]
print("ready", flush=True)
sys.stdin.read()
"""


def spawn(mark: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", CHILD, mark], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    return p


def stop(p: subprocess.Popen) -> None:
    p.kill()
    p.wait()


def spawn_with_pid(pid: int, mark: str) -> subprocess.Popen | None:
    """A child that gets ``pid`` (recycled: its owner is gone), or None where that cannot be arranged."""
    for _attempt in range(5):
        try:
            with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
                fh.write(str(pid - 1))
        except OSError:
            return None  # not root, or no CAP_CHECKPOINT_RESTORE in this pid namespace
        p = spawn(mark)
        if p.pid == pid:
            return p
        stop(p)  # another process forked in between: try again
    return None


@pytest.fixture
def readable():
    p = spawn("PROBE")
    try:
        os.close(os.open(f"/proc/{p.pid}/mem", os.O_RDONLY))
    except PermissionError:
        pytest.skip("cannot read another process's memory here (ptrace restrictions)")
    finally:
        stop(p)


def recorded(*procs: subprocess.Popen) -> pm.ContainerProcesses:
    """What process_memory.container_processes returns for these processes (namespace pid 1, 2, ...)."""
    return pm.ContainerProcesses({p.pid: i for i, p in enumerate(procs, 1)},
                                 {p.pid: pm.read_identity(p.pid) for p in procs})


def warm_round(state: WarmState, memory_pids) -> tuple[bytes, dict]:
    """One warm round's memory, as StreamSender would send it: (every chunk's bytes, the round's stats)."""
    items = RoundItems(state, [], 1 << 20, memory_pids)
    sent = b"".join(item[3] for item in items if item[0] == "chunk")
    return sent, items.stats


def test_identity_is_start_time_and_cgroup_and_a_later_process_differs():
    a = spawn("A")
    try:
        ident = pm.read_identity(a.pid)
        with open(f"/proc/{a.pid}/stat") as fh:
            assert ident.start_time == int(fh.read().rsplit(")", 1)[1].split()[19])
        with open(f"/proc/{a.pid}/cgroup") as fh:
            assert ident.cgroup == fh.read()
    finally:
        stop(a)
    time.sleep(0.03)  # start times count clock ticks (10 ms)
    b = spawn("B")
    try:
        later = pm.read_identity(b.pid)
        assert later.start_time > ident.start_time and later != ident
    finally:
        stop(b)


def test_a_recycled_pid_is_not_read_and_is_counted(readable):
    a = spawn("SECRET-A")
    pids = recorded(a)
    state = WarmState()
    sent, stats = warm_round(state, pids)
    assert b"SECRET-A" in sent and stats["pids_skipped"] == 0               # round 1: the container's process
    pid = a.pid
    stop(a)
    time.sleep(0.03)
    b = spawn_with_pid(pid, "SECRET-B")
    if b is None:
        # No pid recycling here: the same situation, spelled out (B under A's recorded identity).
        b = spawn("SECRET-B")
        pids = pm.ContainerProcesses({b.pid: 1}, {b.pid: pids.identity[pid]})
    try:
        sent, stats = warm_round(state, pids)
        assert b"SECRET-B" not in sent and sent == b""
        assert stats["pids_skipped"] == 1 and stats["pages_sent"] == 0 and state.pids_skipped == 1
        # The prediction between rounds does not read it either.
        assert precopy.predict_final_detail(state, pids, [])["pages"] == 0
    finally:
        stop(b)


def test_a_pid_in_another_cgroup_is_skipped(readable):
    a = spawn("SECRET-A")
    try:
        real = pm.read_identity(a.pid)
        moved = pm.ProcIdentity(real.start_time, "0::/system.slice/elsewhere.service\n")
        state = WarmState()
        sent, stats = warm_round(state, pm.ContainerProcesses({a.pid: 1}, {a.pid: moved}))
        assert sent == b"" and stats["pids_skipped"] == 1
        sent, stats = warm_round(state, recorded(a))                            # a fresh collection: read again
        assert b"SECRET-A" in sent and stats["pids_skipped"] == 0
    finally:
        stop(a)


def test_bare_pids_are_guarded_from_the_first_read_on(readable):
    # A caller passing a plain {host pid: ns pid} (no identities): the first read records them.
    a = spawn("SECRET-A")
    pid = a.pid
    state = WarmState()
    sent, _stats = warm_round(state, {pid: 1})
    assert b"SECRET-A" in sent and state.identities[pid] == pm.read_identity(pid)
    stop(a)
    b = spawn_with_pid(pid, "SECRET-B")
    if b is None:
        pytest.skip("pids cannot be recycled on purpose here (needs root and ns_last_pid)")
    try:
        sent, stats = warm_round(state, {pid: 1})
        assert b"SECRET-B" not in sent and stats["pids_skipped"] == 1
    finally:
        stop(b)


def test_the_check_and_the_read_are_of_one_process(readable):
    # ProcessMemory reads through one /proc/<pid> directory: once its process is gone, neither the
    # identity nor the memory of whoever has the pid next can be had through it.
    a = spawn("SECRET-A")
    ident = pm.read_identity(a.pid)
    mem = pm.ProcessMemory(a.pid)
    try:
        assert mem.is_process(ident)
        pid = a.pid
        stop(a)
        b = spawn_with_pid(pid, "SECRET-B") or spawn("SECRET-B")
        try:
            assert not mem.is_process(ident) and not mem.is_process(pm.read_identity(b.pid))
            with pytest.raises(ProcessLookupError):
                list(mem.read_runs())
        finally:
            stop(b)
    finally:
        mem.close()


def test_an_exited_process_is_skipped_quietly(readable):
    a = spawn("SECRET-A")
    pids = recorded(a)
    stop(a)
    sent, stats = warm_round(WarmState(), pids)
    assert sent == b"" and stats["pids_skipped"] == 0                        # gone: nothing to count


def test_warm_up_reports_the_skipped_pids_of_each_round(readable, tmp_path):
    a = spawn("SECRET-A")
    b = spawn("SECRET-B")
    pids = recorded(a, b)
    pids.identity[b.pid] = pm.ProcIdentity(pids.identity[b.pid].start_time - 1, pids.identity[b.pid].cgroup)

    class Conn:
        """A stand-in for the SSH stream: runs the real RoundItems, reports what StreamSender reports."""

        def __init__(self):
            self.warm = WarmState()

        def keepalive(self):
            return contextlib.nullcontext()

        def warm_round(self, roots, memory_pids, policy="model"):
            sent, stats = warm_round(self.warm, memory_pids)
            assert b"SECRET-B" not in sent
            return {"bytes_raw": len(sent), "bytes_wire": len(sent), "seconds": 0.01,
                    "pages_sent": stats["pages_sent"]}                  # StreamSender's keys: no pids_skipped

    try:
        rep = precopy.warm_up(Conn(), [], pids, downtime_target=1e-9, max_rounds=2)
        assert rep["rounds"] and all(r["pids_skipped"] == 1 for r in rep["rounds"])
    finally:
        stop(a)
        stop(b)
