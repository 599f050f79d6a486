# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Entry point of the receiving side, run on the target host.

The sender starts it over SSH (see transfer.py: the sources travel with the
stream, so the target needs Python and the codec libraries, nothing else).
It reads the stream from stdin and answers on stdout, one JSON message per
line: ``{"ack": n}`` while data arrives, then ``{"ok": true, ...}`` or
``{"error": "..."}``. Exit status 0 only when every byte was verified and
written.

With ``--then-restore`` the end of the stream is a two-phase commit
(docs/design.md, "Commit point"): after END the receiver answers
``verified`` and waits for the sender's COMMIT frame. Without it (link lost,
sender gone, ABORT) it does NOT restore: it records ``in_doubt`` in the
target's state file, keeps the checkpoint and exits, and the recovery decides.
With it the target has won: the receiver restores, checks health and takes
the address whatever happens to the sender; if that fails it fences itself
(container removed, address dropped) before answering ``fenced``.

This file is the root of the receiver bundle: transfer.receiver_bundle ships
it and everything it imports (transitively) from module_utils, and nothing
else. Its one import from the Docker side is switchover.py, the glue that
restores the container the moment the stream is verified.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable

from ansible_collections.edgemig.migration.plugins.module_utils.migration_state import clear_state, write_state
from ansible_collections.edgemig.migration.plugins.module_utils.protocol import (
    T_ABORT,
    T_COMMIT,
    FrameReader,
    ProtocolError,
    parse_json,
)
from ansible_collections.edgemig.migration.plugins.module_utils.stream_receiver import receive_stream
from ansible_collections.edgemig.migration.plugins.module_utils.switchover import (
    SwitchoverError,
    fence,
    restore_and_switch,
)


def parse_roots(specs: Iterable[str]) -> dict[str, str]:
    """``name=/abs/dir`` pairs from the receiver's command line."""
    roots = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not os.path.isabs(path):
            raise ProtocolError(f"bad root spec {spec!r}: expected name=/absolute/dir")
        roots[name] = path
    return roots


def clear_dir(path: str) -> None:
    """Empty ``path`` (not the directory itself), never following symlinks."""
    with os.scandir(path) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def corrupt_every(n: int) -> Callable[[dict], None]:
    """Fault-injection hook (tests only): flip a byte in every n-th chunk."""
    count = [0]

    def hook(ch: dict) -> None:
        count[0] += 1
        if count[0] % n == 0 and ch["data"]:
            data = bytearray(ch["data"])
            data[len(data) // 2] ^= 0xFF
            ch["data"] = bytes(data)
    return hook


def set_process_name(name: str) -> None:
    """Best effort: ``comm`` (``pgrep -x``, ``ps -o comm``) becomes ``name`` (15 chars)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except Exception:
        pass


HELLO_TIMEOUT = 600.0  # default bound before HELLO, see IdleWatchdog


class IdleWatchdog:
    """Exit when the sender went quiet: two bounds, one per phase.

    Before HELLO (``start()`` not called yet) only ``start_timeout`` counts,
    from the receiver's start: the sender opens the stream and probes the
    link while the service still runs, then holds the connection open, with
    nothing to send, while it checkpoints the container (seconds to minutes
    for a large one). That is not idleness. From ``start()`` (HELLO) on,
    ``timeout`` s without a byte means the link or the sender is gone: a
    dropped link leaves our stdin open for as long as TCP keeps trying, and
    without this the receiver would wait there for many minutes.
    ``on_stall(phase)`` gets ``"hello"`` or ``"idle"``.
    """

    def __init__(self, timeout: float, progress, on_stall, start_timeout: float = 0.0):
        self.timeout, self.progress, self.on_stall = timeout, progress, on_stall
        self.start_timeout = start_timeout
        self.created = time.monotonic()
        self.stop = threading.Event()
        self._started = threading.Event()
        self._last = self._since = None
        ticks = [1.0, timeout / 4] + ([start_timeout / 4] if start_timeout > 0 else [])
        self._tick = max(min(ticks), 0.01)
        threading.Thread(target=self._run, name="edgemig-idle", daemon=True).start()

    def start(self) -> None:
        """HELLO arrived: idleness counts from now."""
        self._last, self._since = self.progress(), time.monotonic()
        self._started.set()

    def _run(self) -> None:
        while not self.stop.wait(self._tick):
            now = time.monotonic()
            if not self._started.is_set():
                if self.start_timeout > 0 and now - self.created >= self.start_timeout:
                    self.on_stall("hello")
                    return
                continue
            cur = self.progress()
            if cur != self._last:
                self._last, self._since = cur, now
            elif now - self._since >= self.timeout:
                self.on_stall("idle")
                return


def check_interface(spec: dict) -> None:
    """Refuse at start, before the source freezes anything, when the address has nowhere to go here."""
    iface = spec.get("interface")
    if not spec.get("address") or not iface:
        return
    try:
        socket.if_nametoindex(iface)
    except OSError:
        raise ProtocolError(f"target interface {iface!r} does not exist on the target host "
                            f"(target.interface, from the target's edgemig_address_interface): set it to "
                            f"the target's interface for service address {spec['address']}") from None


COMMIT_TIMEOUT = 60.0  # default bound on the wait for COMMIT after ``verified``
HEARTBEAT_S = 2.0  # ``{"restoring": s}`` lines while restoring: the sender tells a slow restore from a dead link


class NotCommitted(Exception):
    """No COMMIT after ``verified``: the checkpoint is kept, nothing restored (in doubt)."""


def await_commit(read: Callable[[int], bytes], timeout: float) -> tuple[str, str]:
    """Wait for the frame after END: ("commit" | "abort" | "lost" | "timeout", detail).

    The read runs on its own thread: a dropped link leaves stdin open (TCP
    keeps trying), so only a timer can bound the wait.
    """
    box: list[tuple[str, str]] = []
    done = threading.Event()

    def run() -> None:
        try:
            ftype, payload = FrameReader(read).next()
            if ftype == T_COMMIT:
                box.append(("commit", str(parse_json(payload, "COMMIT").get("migration", ""))))
            elif ftype == T_ABORT:
                box.append(("abort", str(parse_json(payload, "ABORT").get("reason", ""))))
            else:
                box.append(("lost", f"frame type {ftype} where COMMIT was expected"))
        except (ProtocolError, OSError, ValueError) as exc:
            box.append(("lost", str(exc) or type(exc).__name__))
        finally:
            done.set()
    threading.Thread(target=run, name="edgemig-commit", daemon=True).start()
    if not done.wait(timeout if timeout > 0 else None):
        return "timeout", f"no COMMIT within {timeout:g} s of verified"
    return box[0]


def commit_then_switch(spec: dict, read: Callable[[int], bytes], reply: Callable[[dict], None],
                       commit_timeout: float, own_process: bool) -> dict:
    """The target's half of the commit point: wait for COMMIT, then restore, or fence on failure."""
    state_dir, name = spec.get("state_dir"), spec["name"]
    faults = spec.get("faults") or {}

    def record(phase: str, **fields) -> None:
        if not state_dir:
            return
        try:
            # work_dir: what the recovery deletes once this edge serves or stands down.
            write_state(state_dir, name, "target", phase, migration=spec.get("migration", ""),
                        checkpoint_dir=spec.get("checkpoint_dir"),
                        work_dir=os.path.dirname(spec["checkpoint_dir"]) if spec.get("checkpoint_dir") else None,
                        **fields)
        except OSError as exc:  # the decision stands; recovery reads Docker's state too
            sys.stderr.write(f"edgemig-receiver: cannot write state: {exc}\n")

    record("verified")
    outcome, detail = await_commit(read, commit_timeout)
    if outcome != "commit":
        record("in_doubt", why=f"{outcome}: {detail}")
        raise NotCommitted(f"verified, but no COMMIT from the sender ({outcome}: {detail}); "
                           "not restored, checkpoint kept for recovery")
    # Past the commit point the target wins: a hang-up of the sender's
    # session must not kill us half-way through the restore.
    if own_process:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    record("committed")
    stop = threading.Event()
    t0 = time.monotonic()

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_S):
            reply({"restoring": round(time.monotonic() - t0, 1)})
    reply({"committed": True})
    threading.Thread(target=heartbeat, name="edgemig-heartbeat", daemon=True).start()
    try:
        if faults.get("pause_restore"):
            time.sleep(float(faults["pause_restore"]))  # fault suite: a window "in the middle of the restore"
        result = restore_and_switch(spec)
    except Exception as exc:
        fenced = fence(spec)
        record("fenced" if fenced else "committed", error=str(exc)[:500])
        err = exc if isinstance(exc, SwitchoverError) else SwitchoverError(f"{type(exc).__name__}: {exc}")
        err.fenced = fenced
        raise err from None
    finally:
        stop.set()
    if state_dir:
        clear_state(state_dir, name)  # serving: Docker's state says the rest
    return result


def main(argv: list[str] | None = None, stdin=None, stdout=None) -> int:
    parser = argparse.ArgumentParser(prog="edgemig-receive")
    parser.add_argument("--root", action="append", default=[], help="name=/absolute/dir")
    parser.add_argument("--clear", action="append", default=[], help="root to empty first")
    parser.add_argument("--create", action="append", default=[], help="root dir to create (0700)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--fault-corrupt-every", type=int, default=0)
    parser.add_argument("--then-restore", default="", help="JSON spec: restore and switch over after the stream")
    parser.add_argument("--tag", default="", help="marker for process listings (edgemig-receiver:<service>)")
    parser.add_argument("--stall-timeout", type=float, default=0.0,
                        help="after HELLO, give up when no data arrived for this many seconds (0: never)")
    parser.add_argument("--commit-timeout", type=float, default=COMMIT_TIMEOUT,
                        help="with --then-restore: how long to wait for COMMIT after verified (0: forever)")
    parser.add_argument("--hello-timeout", type=float, default=HELLO_TIMEOUT,
                        help="with --stall-timeout: give up when HELLO did not come this many seconds "
                             "after the start (the sender checkpoints in between; 0: never)")
    args = parser.parse_args(argv)
    if stdin is None:
        set_process_name("edgemig-recv")
    inp = stdin or sys.stdin.buffer
    out = stdout or sys.stdout.buffer
    lock = threading.Lock()

    def reply(msg: dict) -> None:
        line = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        with lock:
            try:
                out.write(line)
                out.flush()
            except (OSError, ValueError):
                # The sender is gone (session killed): what we do next does
                # not depend on it being told, past the commit point least of all.
                pass

    try:
        roots = parse_roots(args.root)
        for name in args.create:
            if name not in roots:
                raise ProtocolError(f"--create {name}: no such root")
            os.makedirs(roots[name], mode=0o700, exist_ok=True)
        for name, path in roots.items():
            if not os.path.isdir(path):
                raise ProtocolError(f"destination root {name}={path} does not exist on the receiver")
        for name in args.clear:
            if name not in roots:
                raise ProtocolError(f"--clear {name}: no such root")
            clear_dir(roots[name])
        then_restore = json.loads(args.then_restore) if args.then_restore else None
        if then_restore:
            check_interface(then_restore)

        def drop_warm() -> None:
            # Warm pages (memory) serve this session only: the next one starts from an empty
            # store (--clear warm), so nothing of them is kept after a failure either.
            if "warm" in roots:
                shutil.rmtree(roots["warm"], ignore_errors=True)

        hook = corrupt_every(args.fault_corrupt_every) if args.fault_corrupt_every else None
        received = [0]

        read_some = getattr(inp, "read1", inp.read)  # partial reads: progress is seen mid-frame

        def read(n: int) -> bytes:
            data = read_some(n)
            received[0] += len(data)
            return data

        watchdog = None
        if args.stall_timeout > 0:
            def stalled(phase: str) -> None:
                try:
                    if phase == "hello":
                        reply({"error": f"receiver got no HELLO within {args.hello_timeout:g} s of its start "
                                        "(sender gone before the stream began); gave up"})
                    else:
                        reply({"error": f"receiver got no data for {args.stall_timeout:g} s "
                                        "(link down or sender gone); gave up"})
                finally:
                    drop_warm()
                    os._exit(3)
            watchdog = IdleWatchdog(args.stall_timeout, lambda: received[0], stalled,
                                    start_timeout=args.hello_timeout)

        def failed() -> None:
            # The writer failed and receive_stream already answered why. Our
            # main thread may sit in a blocking read (the sender, throttled,
            # waits for an ack): exit now, the sender has the cause. In
            # process (tests pass stdin) receive_stream raises instead.
            if stdin is None:
                drop_warm()
                os._exit(1)
        try:
            summary = receive_stream(read, reply, roots, workers=args.workers or None,
                                     corrupt_hook=hook,
                                     on_hello=watchdog.start if watchdog is not None else None,
                                     on_failure=failed)
        finally:
            if watchdog is not None:
                watchdog.stop.set()
            drop_warm()
        if then_restore:
            # The stream is verified: one round trip to the sender (COMMIT,
            # no Ansible in between), then restore at once.
            summary["switchover"] = commit_then_switch(then_restore, read, reply, args.commit_timeout,
                                                       own_process=stdin is None)
    except NotCommitted as exc:
        reply({"error": str(exc), "in_doubt": True})
        if stdin is None:
            # The COMMIT reader may still block in a read of stdin (link dropped, session open):
            # interpreter shutdown would wait on that stream's lock. The record is written.
            os._exit(4)
        return 4
    except SwitchoverError as exc:
        reply({"error": str(exc), "fenced": bool(getattr(exc, "fenced", False))})
        return 1
    except ProtocolError as exc:
        if not getattr(exc, "reported", False):
            reply({"error": str(exc)})
        return 1
    except OSError as exc:
        reply({"error": f"receiver I/O error: {exc}"})
        return 1
    except Exception as exc:  # never a traceback without a message on the wire
        reply({"error": f"receiver crashed: {type(exc).__name__}: {exc}"})
        return 1
    summary["ok"] = True
    reply(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
