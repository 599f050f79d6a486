# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Entry point of the receiving side, run on the target host.

A sender edge starts it over SSH through the installed launcher (receiver_install.py:
the receiver's sources were installed by provisioning; nothing but a request travels).
The request is ``--expect-version V --ticket ID [--commit]`` (parse_request, the one
parser, used by the launcher too); everything else (where to write, what to empty,
which container to restore with what health check and address) comes from the ticket
the controller had this host write when it prepared the target (ticket.py), checked
against this host's receiver.json. The receiver reads the stream from stdin and answers
on stdout, one JSON message per line: ``{"ack": n}`` while data arrives, then
``{"ok": true, ...}`` or ``{"error": "..."}``. Exit status 0 only when every byte was
verified and written.

With ``--commit`` the end of the stream is a two-phase commit
(docs/design.md, "Commit point"): after END the receiver answers
``verified`` and waits for the sender's COMMIT frame. Without it (link lost,
sender gone, ABORT) it does NOT restore: it records ``in_doubt`` in the
target's state file, keeps the checkpoint and exits, and the recovery decides.
With it the target has won: the receiver restores, checks health and takes
the address whatever happens to the sender; if that fails it fences itself
(container removed, address dropped) before answering ``fenced``.

This file is the root of the receiver bundle: receiver_install.receiver_bundle ships
it and everything it imports (transitively) from module_utils, and nothing
else. Its one import from the Docker side is switchover.py, the glue that
restores the container the moment the stream is verified.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ansible_collections.edgemig.migration.plugins.module_utils.common.migration_state import clear_state, write_state
from ansible_collections.edgemig.migration.plugins.module_utils.common.timeouts import (
    COMMIT_TIMEOUT,
    commit_wait_s,
    receiver_idle_s,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.switchover import (
    DockerReady,
    SwitchoverError,
    fence,
    give_back_prepared,
    interface_exists,
    restore_and_switch,
)
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.stream_receiver import receive_stream
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.ticket import (
    TICKET_ID,
    TicketError,
    check_restore,
    check_roots,
    claim,
    peek,
    ticket_dir,
)
from ansible_collections.edgemig.migration.plugins.module_utils.wire.protocol import (
    T_ABORT,
    T_COMMIT,
    FrameReader,
    ProtocolError,
    parse_json,
)

CONFIG_NAME = "receiver.json"  # beside the launcher: version, allowed_roots, dump_dir (receiver_install)


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
    if not interface_exists(iface):
        raise ProtocolError(f"target interface {iface!r} does not exist on the target host "
                            f"(target.interface, from the target's edgemig_address_interface): set it to "
                            f"the target's interface for service address {spec['address']}")


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
                       commit_timeout: float, own_process: bool, ready: DockerReady | None = None) -> dict:
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
        result = restore_and_switch(spec, ready=ready)
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


@dataclass
class Session:
    """What one receiver run does, all of it derived from a ticket (session_from_ticket).

    ``roots``: root name -> directory; ``clear``: roots emptied first; ``create``: roots made
    (0700); ``then_restore``: the restore spec (switchover) for a two-phase end, or None;
    ``corrupt_every``: fault suite only, from a ticket the controller wrote with EDGEMIG_FAULTS.
    """
    roots: dict[str, str]
    clear: list[str] = field(default_factory=list)
    create: list[str] = field(default_factory=list)
    then_restore: dict | None = None
    stall_timeout: float = 0.0
    commit_timeout: float = COMMIT_TIMEOUT
    hello_timeout: float = HELLO_TIMEOUT
    workers: int = 0
    corrupt_every: int = 0


# ---------------------------------------------------------------- the request, as the launcher gets it
LAUNCHER_NAME = "edgemig-receiver"
VERSION = re.compile(r"^[0-9a-f]{16}$")
TAG = re.compile(r"^edgemig-receiver:[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# option -> (takes a value, its pattern); exactly these spellings, each at most once.
REQUEST_OPTIONS = {"--expect-version": VERSION, "--ticket": TICKET_ID, "--commit": None, "--tag": TAG}


class RequestError(Exception):
    """The sender's request is not one this receiver takes."""


def parse_request(argv: list[str], forced: bool = True) -> dict:
    """The receiver's one parser: ``--expect-version V --ticket ID [--commit]``, nothing else.

    No abbreviations, no ``--opt=value`` forms, no ``--``, no option twice, no value that
    does not match its pattern. ``--tag`` is the launcher's own (added when it re-executes
    itself, derived from the ticket), never taken from a sender (``forced``).
    """
    out: dict = {}
    args = list(argv)
    while args:
        opt = args.pop(0)
        if opt not in REQUEST_OPTIONS or (forced and opt == "--tag"):
            raise RequestError(f"unknown receiver option {opt[:80]!r}: a sender may give only "
                               "--expect-version, --ticket and --commit")
        key = opt[2:].replace("-", "_")
        if key in out:
            raise RequestError(f"option {opt} given twice")
        pattern = REQUEST_OPTIONS[opt]
        if pattern is None:
            out[key] = True
            continue
        if not args or not isinstance(args[0], str) or not pattern.match(args[0]):
            raise RequestError(f"option {opt} needs a value matching {pattern.pattern}")
        out[key] = args.pop(0)
    for need in ("expect_version", "ticket"):
        if need not in out:
            raise RequestError(f"--{need.replace('_', '-')} is required")
    out.setdefault("commit", False)
    return out


def session_from_ticket(tk: dict, config: dict, commit: bool, forbidden: list[str] = ()) -> Session:
    """Everything this run may do, from the ticket and this host's configuration only."""
    dump_dir = os.path.realpath(config["dump_dir"])
    roots = check_roots(tk.get("roots"), config["allowed_roots"], [ticket_dir(dump_dir), *forbidden])
    clear, create = tk.get("clear") or [], tk.get("create") or []
    for what, names in (("clear", clear), ("create", create)):
        if not isinstance(names, list) or any(n not in roots for n in names):
            raise TicketError(f"the ticket's {what} names roots it does not hold: {names!r}")
    then_restore = None
    if commit:
        then_restore = check_restore(tk.get("restore"), roots, dump_dir, config["allowed_roots"])
        if then_restore is None:
            raise TicketError("this ticket is for a stream without a restore: --commit refused")
        then_restore["migration"] = tk.get("id", "")
    stall = float(tk.get("stall_timeout") or 0)
    faults = tk.get("faults") or {}
    if then_restore is not None and faults:
        then_restore = apply_target_faults(then_restore, faults)
    return Session(roots=roots, clear=list(clear), create=list(create), then_restore=then_restore,
                   # the sender gives up first, with the better message
                   stall_timeout=receiver_idle_s(stall), commit_timeout=commit_wait_s(stall),
                   corrupt_every=int(faults.get("corrupt_every") or 0))


def apply_target_faults(spec: dict, faults: dict) -> dict:
    """Fault suite only (docs/reliability.md): the controller wrote them into the ticket."""
    spec = dict(spec)
    if faults.get("restore"):
        spec["checkpoint_dir"] = os.path.join(os.path.dirname(spec["checkpoint_dir"]), "edgemig-fault-missing")
    if faults.get("health"):
        spec["health"] = {"type": "cmd", "command": ["/bin/false"], "timeout": 3}
    if faults.get("pause_restore"):
        spec["faults"] = {"pause_restore": float(faults["pause_restore"])}
    return spec


def _refuse(msg: str, code: int = 3) -> int:
    sys.stdout.write(json.dumps({"error": msg}) + "\n")
    sys.stdout.flush()
    return code


def launch(here: str, launcher: str, environ: dict, argv: list[str]) -> int:
    """The installed launcher's logic: the forced command of the other edges' migration keys.

    ``SSH_ORIGINAL_COMMAND`` (what the sender asked for) must be this launcher and a request
    parse_request takes; the version must be this receiver's; the ticket must exist here,
    unused and unexpired. The launcher then runs itself again with the checked request and a
    tag derived from the ticket (``pgrep -f edgemig-receiver:<service>`` finds it), and
    that run claims the ticket and receives.
    """
    try:
        with open(os.path.join(here, CONFIG_NAME)) as fh:
            config = json.load(fh)
    except (OSError, ValueError) as exc:
        return _refuse(f"receiver configuration unreadable: {exc}")
    if not config.get("dump_dir"):
        return _refuse("this receiver was installed without a dump dir: run playbooks/provision.yml "
                       "(migration_trust) to install the receiver of this collection")
    forced = "SSH_ORIGINAL_COMMAND" in environ
    try:
        if forced:
            try:
                words = shlex.split(environ["SSH_ORIGINAL_COMMAND"])
            except ValueError as exc:
                raise RequestError(f"unparsable request: {exc}") from None
            if not words or os.path.basename(words[0]) != LAUNCHER_NAME:
                raise RequestError(f"this key only starts the edgemig receiver ({LAUNCHER_NAME}), not: "
                                   + " ".join(words)[:200])
            argv = words[1:]
        req = parse_request(argv, forced=forced)
        if req["expect_version"] != config["version"]:
            raise RequestError(f"receiver on this edge is version {config['version']}, the sender's is "
                               f"{req['expect_version']}: run playbooks/provision.yml (migration_trust) so "
                               "every edge has the receiver of the same collection")
        tk = peek(config["dump_dir"], req["ticket"])
        tag = f"edgemig-receiver:{tk.get('service') or 'stream'}"
        if not TAG.match(tag):
            raise TicketError(f"the ticket's service {tk.get('service')!r} is not a container name")
        if forced:
            env = {k: v for k, v in environ.items() if k != "SSH_ORIGINAL_COMMAND"}
            argv = ["--expect-version", req["expect_version"], "--ticket", req["ticket"], "--tag", tag]
            argv += ["--commit"] if req["commit"] else []
            os.execve(sys.executable, [sys.executable, "-I", launcher, *argv], env)
        if req.get("tag") not in (None, tag):
            raise RequestError(f"--tag must be {tag}")
    except (RequestError, TicketError) as exc:
        return _refuse(str(exc))
    return main(req, config, forbidden=[here])


def main(req: dict, config: dict, stdin=None, stdout=None, forbidden: list[str] = ()) -> int:
    """Claim the request's ticket and serve the stream it allows."""
    try:
        tk = claim(config["dump_dir"], req["ticket"])
        session = session_from_ticket(tk, config, bool(req.get("commit")), forbidden)
        if session.then_restore is not None:
            check_interface(session.then_restore)
    except (TicketError, ProtocolError) as exc:
        out = stdout or sys.stdout.buffer
        out.write((json.dumps({"error": str(exc)}) + "\n").encode())
        out.flush()
        return 3
    return serve(session, stdin=stdin, stdout=stdout)


def serve(session: Session, stdin=None, stdout=None) -> int:
    """Receive one stream as ``session`` says; in process when ``stdin``/``stdout`` are given (tests)."""
    own_process = stdin is None
    if own_process:
        set_process_name("edgemig-recv")
    reply = _replier(stdout or sys.stdout.buffer)
    try:
        prepare_roots(session)
        summary = _receive(session, stdin or sys.stdin.buffer, reply, own_process)
    except Exception as exc:  # never a traceback without a message on the wire
        return _answer_failure(exc, reply, own_process)
    summary["ok"] = True
    reply(summary)
    return 0


def _replier(out) -> Callable[[dict], None]:
    """``reply``: one JSON line to the sender, from any thread; a sender gone is not an error."""
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
    return reply


class _CountingReader:
    """The stream's reads, partial (progress is seen mid-frame), with a count for the idle watchdog."""

    def __init__(self, inp):
        self._read_some = getattr(inp, "read1", inp.read)
        self.received = 0

    def read(self, n: int) -> bytes:
        data = self._read_some(n)
        self.received += len(data)
        return data


def _drop_warm(roots: dict[str, str]) -> None:
    # Warm pages (memory) serve this session only: the next one starts from an empty
    # store (clear warm), so nothing of them is kept after a failure either.
    if "warm" in roots:
        shutil.rmtree(roots["warm"], ignore_errors=True)


def _give_back(session: Session) -> None:
    # The stream ended before verified (the sender gave up, was killed or its edge went down;
    # a parked move whose controller died ends so): the source serves on, and the container
    # prepared for this ticket - never started, its ticket used - goes too.
    if session.then_restore:
        give_back_prepared(session.then_restore)


def _receive(session: Session, inp, reply: Callable[[dict], None], own_process: bool) -> dict:
    """The stream into the session's roots, then (two-phase sessions) COMMIT and the switch-over."""
    roots = session.roots
    hook = corrupt_every(session.corrupt_every) if session.corrupt_every else None
    reader = _CountingReader(inp)
    # Docker's client and data root for the restore, asked now, while the source still serves.
    ready = DockerReady(session.then_restore) if session.then_restore else None
    watchdog = _idle_watchdog(session, reader, reply)

    def failed() -> None:
        # The writer failed and receive_stream already answered why. Our
        # main thread may sit in a blocking read (the sender, throttled,
        # waits for an ack): exit now, the sender has the cause. In
        # process (tests pass stdin) receive_stream raises instead.
        if own_process:
            _drop_warm(roots)
            _give_back(session)
            os._exit(1)
    try:
        summary = receive_stream(reader.read, reply, roots, workers=session.workers or None,
                                 corrupt_hook=hook,
                                 on_hello=watchdog.start if watchdog is not None else None,
                                 on_failure=failed)
    except BaseException:
        _give_back(session)
        raise
    finally:
        if watchdog is not None:
            watchdog.stop.set()
        _drop_warm(roots)
    if session.then_restore:
        # The stream is verified: one round trip to the sender (COMMIT,
        # no Ansible in between), then restore at once.
        summary["switchover"] = commit_then_switch(session.then_restore, reader.read, reply,
                                                   session.commit_timeout, own_process=own_process, ready=ready)
    return summary


def _idle_watchdog(session: Session, reader: _CountingReader, reply: Callable[[dict], None]) -> IdleWatchdog | None:
    """The watchdog that ends this process when the sender goes quiet; None without a stall timeout."""
    if session.stall_timeout <= 0:
        return None

    def stalled(phase: str) -> None:
        try:
            if phase == "hello":
                reply({"error": f"receiver got no HELLO within {session.hello_timeout:g} s of its start "
                                "(sender gone before the stream began); gave up"})
            else:
                reply({"error": f"receiver got no data for {session.stall_timeout:g} s "
                                "(link down or sender gone); gave up"})
        finally:
            _drop_warm(session.roots)
            os._exit(3)
    return IdleWatchdog(session.stall_timeout, lambda: reader.received, stalled,
                        start_timeout=session.hello_timeout)


def _answer_failure(exc: Exception, reply: Callable[[dict], None], own_process: bool) -> int:
    """Tell the sender why this run failed; returns the exit status (4: in doubt, else 1)."""
    if isinstance(exc, NotCommitted):
        reply({"error": str(exc), "in_doubt": True})
        if own_process:
            # The COMMIT reader may still block in a read of stdin (link dropped, session open):
            # interpreter shutdown would wait on that stream's lock. The record is written.
            os._exit(4)
        return 4
    if isinstance(exc, SwitchoverError):
        reply({"error": str(exc), "fenced": bool(getattr(exc, "fenced", False))})
    elif isinstance(exc, ProtocolError):
        if not getattr(exc, "reported", False):
            reply({"error": str(exc)})
    elif isinstance(exc, OSError):
        reply({"error": f"receiver I/O error: {exc}"})
    else:
        reply({"error": f"receiver crashed: {type(exc).__name__}: {exc}"})
    return 1


def prepare_roots(session: Session) -> None:
    """Make the roots to create, check every root is a directory, empty the roots to clear."""
    roots = session.roots
    for name in session.create:
        if name not in roots:
            raise ProtocolError(f"create {name}: no such root")
        os.makedirs(roots[name], mode=0o700, exist_ok=True)
    for name, path in roots.items():
        if os.path.islink(path) or not os.path.isdir(path):
            raise ProtocolError(f"destination root {name}={path} is not a directory on the receiver")
    for name in session.clear:
        if name not in roots:
            raise ProtocolError(f"clear {name}: no such root")
        clear_dir(roots[name])


if __name__ == "__main__":
    sys.exit(_refuse("run the installed launcher (edgemig-receiver), not this module"))
