# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Edge-to-edge transfer of a migration stream over one paramiko SSH channel.

The source opens an SSH session to the target (host key verified against a
known_hosts file, never auto-accepted) and asks for the pinned receiver with a
request of three words: the receiver version it was built with, the ticket the
controller had the target write when it prepared it, and whether the receiver
restores after the stream (receiver.parse_request). The target's launcher is the
forced command of this edge's migration key there; what the receiver writes and
restores comes from the ticket, never from this side.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import threading
import time

from ansible_collections.edgemig.migration.plugins.module_utils.common.timeouts import (
    keepalive_interval,
    ssh_keepalive_s,
)
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.receiver_install import (
    LAUNCHER_NAME,
    RECEIVER_DIR,
    receiver_version,
)
from ansible_collections.edgemig.migration.plugins.module_utils.sender.controller import make_controller
from ansible_collections.edgemig.migration.plugins.module_utils.sender.netmon import NetMonitor
from ansible_collections.edgemig.migration.plugins.module_utils.sender.precopy import WarmState
from ansible_collections.edgemig.migration.plugins.module_utils.sender.stream_sender import (
    AckState,
    StreamSender,
    keepalive,
    probe_link,
)
from ansible_collections.edgemig.migration.plugins.module_utils.wire.protocol import (
    T_ABORT,
    T_COMMIT,
    ProtocolError,
    json_frame,
)

try:
    import paramiko
    HAS_PARAMIKO = True
    PARAMIKO_IMPORT_ERROR = None
except ImportError as _exc:  # reported by the module with missing_required_lib
    paramiko = None
    HAS_PARAMIKO = False
    PARAMIKO_IMPORT_ERROR = _exc

# The migration_trust role's places on every edge: this edge's migration key and
# the known_hosts the other edges are verified against (edgemig_migration_key,
# edgemig_known_hosts).
DEFAULT_KEY_FILE = "/etc/edgemig/migration_key"
DEFAULT_KNOWN_HOSTS = "/etc/edgemig/known_hosts"

# The target as a sender needs it: how to reach its receiver, and the ticket its prepare wrote
# (the argument spec of edge_migrate's and checkpoint_transfer's ``target``; its documentation is
# the doc fragment edgemig.migration.target). Typed, so a misspelt key is an error, not a default.
TARGET_OPTIONS = dict(
    host=dict(type="str", required=True),
    port=dict(type="int", default=22),
    user=dict(type="str", default="root"),
    key_file=dict(type="path", default=DEFAULT_KEY_FILE, no_log=False),
    known_hosts=dict(type="path", default=DEFAULT_KNOWN_HOSTS),
    receiver_dir=dict(type="path", default=RECEIVER_DIR),
    ticket=dict(type="str", required=True, no_log=False),
    volumes=dict(type="list", elements="dict"),
    name=dict(type="str"),
)


class TransferError(Exception):
    """The transfer failed; the message says where and why."""


class OutcomeUnknown(TransferError):
    """COMMIT was sent and then the receiver went silent: it may be serving. Never roll back on this."""


class CommitAcks(AckState):
    """AckState for the two-phase end of a stream (``then_restore``).

    ``verified`` (all bytes written and checked) ends the stream for the
    StreamSender (``done``): the sender then records the commit and sends
    COMMIT. The final answer (``ok``, or ``error`` with ``fenced`` /
    ``in_doubt``) sets ``final``; every line (heartbeats while the target
    restores) moves ``heard``, so a silent link is told from a slow restore.
    """

    def __init__(self, two_phase: bool):
        super().__init__()
        self.two_phase = two_phase
        self.verified = threading.Event()
        self.final = threading.Event()
        self.final_msg: dict = {}
        self.heard = time.monotonic()
        self.closed = False

    def feed_line(self, line: bytes) -> None:
        self.heard = time.monotonic()
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        if msg.get("verified"):
            self.verified.set()
            if self.two_phase:
                self.done.set()  # super().feed_line wakes the waiters
        super().feed_line(line)
        if "error" in msg or msg.get("ok"):
            self.final_msg = msg
            self.final.set()

    def eof(self) -> None:
        """The channel closed: nothing more will come."""
        self.closed = True
        self.final.set()


def receiver_request(launcher: str, ticket: str, commit: bool = False) -> str:
    """The command the sender asks for: the target's pinned launcher, its version, the ticket."""
    args = [launcher, "--expect-version", receiver_version(), "--ticket", ticket]
    if commit:
        args.append("--commit")
    return " ".join(shlex.quote(a) for a in args)


# Ciphers tried first for the bulk stream: AES-GCM is an AEAD (no separate
# HMAC pass in Python), measured ~40 % less sender CPU per byte than
# paramiko's default aes128-ctr + hmac-sha2-256 (bench/stream_bench.py).
# The others stay as fallbacks, in paramiko's order.
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr")


def _fast_transport(sock, **kwargs):
    transport = paramiko.Transport(sock, **kwargs)
    opts = transport.get_security_options()
    have = list(opts.ciphers)
    first = [c for c in FAST_CIPHERS if c in have]
    opts.ciphers = tuple(first + [c for c in have if c not in first])
    return transport


def connect(host: str, port: int, user: str, key_file: str, known_hosts: str,
            timeout: float = 20.0):
    """An SSHClient to the target; unknown or changed host keys are refused."""
    if not os.path.isfile(known_hosts):
        raise TransferError(f"known_hosts file {known_hosts} does not exist: "
                            "run the migration_trust role so edge host keys are known")
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    extra = {}
    if "transport_factory" in paramiko.SSHClient.connect.__code__.co_varnames:
        extra["transport_factory"] = _fast_transport
    try:
        client.connect(host, port=port, username=user, key_filename=key_file, timeout=timeout,
                       banner_timeout=timeout, auth_timeout=timeout, look_for_keys=False,
                       allow_agent=False, **extra)
    except paramiko.SSHException as exc:
        client.close()
        raise TransferError(f"SSH to {user}@{host}:{port} failed: {exc}") from None
    except OSError as exc:
        client.close()
        raise TransferError(f"cannot reach {host}:{port}: {exc}") from None
    return client


def _pump_replies(chan, acks: AckState, stderr_buf: list) -> None:
    buf = b""
    while True:
        data = chan.recv(65536)
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            acks.feed_line(line)
    while chan.recv_stderr_ready():
        stderr_buf.append(chan.recv_stderr(65536))
    if isinstance(acks, CommitAcks):
        acks.eof()
    if not acks.done.is_set():
        acks.error = acks.error or "receiver closed the channel without confirming"
        acks.done.set()


class SshStream:
    """One edge-to-edge stream: ``open()`` connects and starts the receiver,
    ``stream()`` sends the roots, ``close()`` hangs up.

    Opening is split from streaming so that a migration can connect, do the
    SSH handshake and start the receiver (Python start-up, imports) *before*
    it freezes the container: none of that sits on the downtime path.
    """

    def __init__(self, ticket: str, *, host: str, port: int = 22, user: str = "root",
                 key_file: str, known_hosts: str, receiver_dir: str = RECEIVER_DIR, commit: bool = False,
                 stall_timeout: float = 30.0, link_probe: bool = True, link_share: float = 1.0):
        """``ticket``: the ID the target's prepare wrote (it says where everything goes there);
        ``commit``: the receiver restores after a two-phase end (the ticket says how)."""
        if not HAS_PARAMIKO:
            raise TransferError(f"paramiko is required: {PARAMIKO_IMPORT_ERROR}")
        self.host, self.port, self.user = host, port, user
        self.key_file, self.known_hosts = key_file, known_hosts
        self.command = receiver_request(os.path.join(receiver_dir, LAUNCHER_NAME), ticket, commit)
        self.stall_timeout = stall_timeout
        self.two_phase = commit
        self.client = self.transport = self.chan = self.pump = None
        self.acks = CommitAcks(self.two_phase)
        self.stderr_buf: list[bytes] = []
        self.connect_s = 0.0
        self.link_probe = link_probe
        # options.MigrationOptions.link_share: the part of the probed link the controller starts from.
        self.link_share = link_share
        self.probe: dict | None = None
        self.sender: StreamSender | None = None  # the running stream, for progress readers
        # The pre-copy session's state (precopy.WarmSession): empty, and nothing armed on the
        # receiver, until the first warm round sends HELLO.
        self.warm = WarmState()

    def open(self) -> SshStream:
        t0 = time.monotonic()
        self.client = connect(self.host, self.port, self.user, self.key_file, self.known_hosts)
        self.transport = self.client.get_transport()
        # Keepalives keep a long silent phase (checkpoint before the stream,
        # restore after COMMIT) from being dropped by middleboxes, and make
        # TCP notice a dead peer; the waits below are bounded on top of that.
        self.transport.set_keepalive(ssh_keepalive_s(self.stall_timeout))
        self.chan = self.transport.open_session(window_size=8 << 20, max_packet_size=1 << 15)
        self.chan.exec_command(self.command)
        self.pump = threading.Thread(target=_pump_replies, args=(self.chan, self.acks, self.stderr_buf),
                                     name="edgemig-replies", daemon=True)
        self.pump.start()
        # Wait until the receiver answers (it is up: its start-up stays off
        # the downtime path) and, with link_probe, measure the link now,
        # while the service still runs: the controller then starts the
        # stream from a measured rate, not a guess.
        self.probe = probe_link(self.chan.sendall, self.acks, measure=self.link_probe)
        self.connect_s = time.monotonic() - t0
        if self.acks.error:
            # The receiver refused at start (bad root, no such target
            # interface...): say so now, while nothing is frozen yet.
            self.pump.join(timeout=5)
            err = self.acks.error
            self.close()
            raise TransferError(f"receiver on {self.host} refused to start: {err}")
        return self

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def __enter__(self) -> SshStream:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _stderr(self) -> str:
        return b"".join(self.stderr_buf).decode(errors="replace").strip()[-800:]

    def warm_round(self, roots: list[tuple[str, str]], memory_pids: dict[int, int] | None = None, *,
                   policy: str = "model", state: WarmState | None = None, **kwargs) -> dict:
        """One pre-copy warm round while the service runs (see precopy.py); returns its stats.

        ``memory_pids``: host pid -> namespace pid (process_memory.container_processes).
        The state is ``state`` or this stream's own (``self.warm``); pass the
        same to ``stream(..., warm=...)`` for the final round.
        """
        return self.stream(roots, policy=policy, warm=self.warm if state is None else state, _warm_round=True,
                           _memory_pids=memory_pids, **kwargs)

    def keepalive(self):
        """Context: keep the receiver's idle watchdog fed while this side works between rounds
        (stream_sender.keepalive); nothing to do before a pre-copy session's HELLO, when the
        receiver's watchdog is not armed yet."""
        if not self.warm.started or not self.stall_timeout:
            return contextlib.nullcontext()
        return keepalive(self.chan.sendall, keepalive_interval(self.stall_timeout))

    def broken(self) -> str | None:
        """Why this session can no longer carry the migration (the receiver answered an error or
        closed the channel, the SSH transport is down), else None. Cheap: for a parked migration
        (driver/park.py), which sends nothing between its rounds and would otherwise learn of a
        dead receiver only after the freeze. A link that drops silently is not seen here: the next
        round's stall watchdog sees it."""
        if self.acks.error:
            return f"receiver on {self.host}: {self.acks.error}"
        if self.acks.closed:
            return f"receiver on {self.host} closed the channel"
        if self.transport is None or not self.transport.is_active():
            return f"SSH session to {self.host} is down"
        return None

    def stream(self, src_roots: list[tuple[str, str]], *, policy: str = "model", workers: int = 0,
               chunk_size: int = 1 << 20, dedup: bool = True, pipelined: bool = True,
               timeout: float = 3600.0, warm: WarmState | None = None, _warm_round: bool = False,
               _memory_pids: dict[int, int] | None = None) -> dict:
        """Send ``src_roots``; returns stats and timeline once the receiver confirmed.

        ``warm``: the final round of a pre-copy session (only what differs
        from what the warm rounds sent, memory pages by reference).
        """
        cores = workers or os.cpu_count() or 1
        ctl = make_controller(policy, cores)
        if self.probe and self.probe.get("rate_Bps"):
            ctl.seed_network(self.probe["rate_Bps"] * self.link_share)
        host, chan, acks = self.host, self.chan, self.acks
        if acks.error:  # the receiver already gave up (bad root, no space...)
            self.pump.join(timeout=5)
            raise TransferError(f"receiver on {host} failed before the stream: {acks.error}")
        monitor = NetMonitor(self.transport.sock)
        transport = self.transport
        sender = StreamSender(src_roots, ctl, chan.sendall, acks, workers=cores,
                              chunk_size=chunk_size, dedup=dedup, pipelined=pipelined,
                              monitor=monitor, stall_timeout=self.stall_timeout,
                              on_stall=lambda _msg: transport.close(), warm=warm, warm_round=_warm_round,
                              memory_pids=_memory_pids)
        self.sender = sender
        try:
            result = sender.run(timeout=timeout)
        except ProtocolError as exc:
            if sender.stalled:
                raise TransferError(f"{sender.stalled} (to {host})") from None
            self.pump.join(timeout=5)
            detail = self._stderr()
            raise TransferError(f"{exc}{': ' + detail if detail else ''}") from None
        except (OSError, EOFError) as exc:
            if sender.stalled:
                raise TransferError(f"{sender.stalled} (to {host})") from None
            self.pump.join(timeout=5)
            if acks.error:  # the receiver said why before it hung up (write error, bad chunk...)
                raise TransferError(f"receiver on {host} failed: {acks.error}") from None
            why = str(exc) or type(exc).__name__
            if chan.exit_status_ready():
                why += f" (receiver exit status {chan.recv_exit_status()})"
            raise TransferError(f"connection to {host} lost during transfer: {why}") from None
        if _warm_round:  # the session goes on: the channel stays open for the next round
            result["timeline"] = sender.timeline
            return result
        if self.two_phase:
            # Verified, not yet committed: the caller records the commit and
            # calls commit(), then outcome(). The channel stays open for COMMIT.
            result["connect_s"] = round(self.connect_s, 4)
            result["link_probe"] = self.probe
            result["cipher"] = getattr(transport, "local_cipher", None)
            result["timeline"] = sender.timeline
            return result
        chan.shutdown_write()
        # The receiver confirmed (acks.done): its exit status follows at once.
        # Never hang here on a link that died right after the confirmation.
        status = chan.recv_exit_status() if chan.status_event.wait(30) else (0 if acks.result else -1)
        self.pump.join(timeout=10)
        if status != 0:
            raise TransferError(f"receiver on {host} exited with status {status}: {self._stderr()}")
        result["connect_s"] = round(self.connect_s, 4)
        result["link_probe"] = self.probe
        result["cipher"] = getattr(transport, "local_cipher", None)
        result["timeline"] = sender.timeline
        return result

    def commit(self, migration: str = "") -> None:
        """Send COMMIT (after the caller recorded the commit durably). Errors are swallowed:
        from here on only the receiver's answer, or its silence, tells what happened."""
        try:
            self.chan.sendall(json_frame(T_COMMIT, {"migration": migration}))
        except Exception:
            pass

    def abort(self, reason: str) -> None:
        """Tell a verified receiver not to restore (the source keeps the service)."""
        try:
            self.chan.sendall(json_frame(T_ABORT, {"reason": reason[:500]}))
        except Exception:
            pass

    def outcome(self, limit: float, silence: float) -> dict:
        """The receiver's final answer after COMMIT: its ``ok`` summary, or raise.

        TransferError with ``fenced=True``: the target failed and took itself
        down (the source may roll back). OutcomeUnknown: no answer within
        ``limit`` s, ``silence`` s without any line (heartbeats come every
        2 s while it restores), or the channel closed without one.
        """
        acks, deadline = self.acks, time.monotonic() + limit
        while not acks.final.wait(0.2):
            now = time.monotonic()
            if now > deadline:
                raise OutcomeUnknown(f"no answer from the receiver on {self.host} within {limit:g} s of COMMIT")
            if silence and now - acks.heard > silence:
                raise OutcomeUnknown(f"receiver on {self.host} silent for {silence:g} s after COMMIT "
                                     "(link or session lost)")
        msg = acks.final_msg
        if msg.get("ok"):
            return msg
        if "error" in msg:
            err = TransferError(f"receiver on {self.host} failed: {msg['error']}")
            err.fenced = bool(msg.get("fenced"))
            raise err
        raise OutcomeUnknown(f"receiver on {self.host} closed the channel after COMMIT without an answer")


def send_over_ssh(src_roots: list[tuple[str, str]], ticket: str, *, host: str,
                  port: int = 22, user: str = "root", key_file: str, known_hosts: str,
                  receiver_dir: str = RECEIVER_DIR, policy: str = "model", workers: int = 0,
                  chunk_size: int = 1 << 20, dedup: bool = True, pipelined: bool = True,
                  timeout: float = 3600.0, stall_timeout: float = 30.0, link_probe: bool = True) -> dict:
    """Connect, stream ``src_roots`` into what the target's ``ticket`` names, hang up."""
    with SshStream(ticket, host=host, port=port, user=user, key_file=key_file,
                   known_hosts=known_hosts, receiver_dir=receiver_dir, stall_timeout=stall_timeout,
                   link_probe=link_probe) as conn:
        return conn.stream(src_roots, policy=policy, workers=workers, chunk_size=chunk_size,
                           dedup=dedup, pipelined=pipelined, timeout=timeout)
