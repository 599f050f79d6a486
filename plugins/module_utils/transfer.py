# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Edge-to-edge transfer of a migration stream over one paramiko SSH channel.

The source opens an SSH session to the target (host key verified against a
known_hosts file, never auto-accepted) and asks for the pinned receiver: the
edgemig-receiver launcher that provisioning installed on every edge
(install_receiver, run by the migration_trust role) with the receiver's
sources next to it. The edges' migration keys are authorised with that
launcher as their forced command, so the requested command only chooses
receiver options: no code travels from the sender. The sender names the
receiver version it was built with (a digest of the receiver's sources); a
target whose receiver differs refuses before anything is frozen.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import json
import os
import shlex
import threading
import time
from functools import lru_cache

from ansible_collections.edgemig.migration.plugins.module_utils import wkdm as _wkdm  # noqa: F401
from ansible_collections.edgemig.migration.plugins.module_utils.controller import make_controller
from ansible_collections.edgemig.migration.plugins.module_utils.netmon import NetMonitor
from ansible_collections.edgemig.migration.plugins.module_utils.precopy import WarmState
from ansible_collections.edgemig.migration.plugins.module_utils.protocol import (
    T_ABORT,
    T_COMMIT,
    ProtocolError,
    json_frame,
)

# Ansible packs a module's module_utils by following its imports: these two
# make it pack the receiver (and, through codecs' ``import wkdm``, wkdm) with
# every module that streams, so receiver_bundle finds their sources.
from ansible_collections.edgemig.migration.plugins.module_utils.receiver import main as _receiver_main  # noqa: F401
from ansible_collections.edgemig.migration.plugins.module_utils.stream_receiver import receive_stream
from ansible_collections.edgemig.migration.plugins.module_utils.stream_sender import (
    AckState,
    StreamSender,
    keepalive,
    keepalive_interval,
    probe_link,
)

try:
    import paramiko
    HAS_PARAMIKO = True
    PARAMIKO_IMPORT_ERROR = None
except ImportError as _exc:  # reported by the module with missing_required_lib
    paramiko = None
    HAS_PARAMIKO = False
    PARAMIKO_IMPORT_ERROR = _exc

PKG = "ansible_collections.edgemig.migration.plugins.module_utils"
# The receiver bundle is this module and every module_utils module it imports,
# transitively (receiver_modules): what the target runs, and nothing more.
RECEIVER_ENTRY = f"{PKG}.receiver"

# The migration_trust role's places on every edge: this edge's migration key and
# the known_hosts the other edges are verified against (edgemig_migration_key,
# edgemig_known_hosts).
DEFAULT_KEY_FILE = "/etc/edgemig/migration_key"
DEFAULT_KNOWN_HOSTS = "/etc/edgemig/known_hosts"
# Where provisioning installs the receiver on an edge (edgemig_receiver_dir).
RECEIVER_DIR = "/usr/local/lib/edgemig/receiver"
LAUNCHER_NAME = "edgemig-receiver"
BUNDLE_NAME = "receiver-bundle.json"
CONFIG_NAME = "receiver.json"

# The pinned receiver's launcher, installed on every edge. It is the forced
# command of the other edges' migration keys: SSH_ORIGINAL_COMMAND (what the
# sender asked for) must be this launcher with receiver options, nothing else;
# every --root must lie under a directory the installer allowed (Docker's data
# root, the dump tmpfs); the sender's --expect-version must match. Then it
# imports the receiver from the sources installed beside it.
LAUNCHER = r'''#!{python}
# edgemig receiver launcher, installed by edgemig.migration (migration_trust role).
import importlib.abc, importlib.util, json, os, shlex, sys
here = os.path.dirname(os.path.realpath(__file__))
def refuse(msg, code=3):
    sys.stdout.write(json.dumps({{"error": msg}}) + "\n")
    sys.stdout.flush()
    sys.exit(code)
with open(os.path.join(here, {config!r})) as fh:
    config = json.load(fh)
if "SSH_ORIGINAL_COMMAND" in os.environ:
    argv = shlex.split(os.environ["SSH_ORIGINAL_COMMAND"])
    if not argv or os.path.basename(argv[0]) != {name!r}:
        refuse("this key only starts the edgemig receiver ({name}), not: " + " ".join(argv)[:200])
    argv = argv[1:]
else:
    argv = sys.argv[1:]
want = None
if "--expect-version" in argv:
    i = argv.index("--expect-version")
    want = argv[i + 1] if i + 1 < len(argv) else ""
    del argv[i:i + 2]
if want != config["version"]:
    refuse("receiver on this edge is version %s, the sender's is %s: run playbooks/provision.yml "
           "(migration_trust) so every edge has the receiver of the same collection" % (config["version"], want))
for i, arg in enumerate(argv):
    if arg == "--root" and i + 1 < len(argv):
        path = os.path.realpath(argv[i + 1].partition("=")[2])
        if not any(path == a or path.startswith(a.rstrip("/") + "/") for a in config["allowed_roots"]):
            refuse("root %s is outside the directories this receiver may write (%s)"
                   % (argv[i + 1], ", ".join(config["allowed_roots"])))
if "SSH_ORIGINAL_COMMAND" in os.environ:
    # Run again with the checked options in argv: a forced command has none, and
    # operators, the recovery and the fault suite find a receiver by its --tag.
    env = dict(os.environ)
    del env["SSH_ORIGINAL_COMMAND"]
    os.execve(sys.executable, [sys.executable, os.path.realpath(__file__), "--expect-version", want] + argv, env)
with open(os.path.join(here, {bundle!r})) as fh:
    bundle = json.load(fh)
class _Edgemig(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name in bundle:
            return importlib.util.spec_from_loader(name, self)
        if any(k.startswith(name + ".") for k in bundle):
            return importlib.util.spec_from_loader(name, self, is_package=True)
        return None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        src = bundle.get(module.__name__)
        if src is not None:
            exec(compile(src, "edgemig:" + module.__name__, "exec"), module.__dict__)
sys.meta_path.insert(0, _Edgemig())
from ansible_collections.edgemig.migration.plugins.module_utils.receiver import main
sys.exit(main(argv))
'''


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


def module_source(name: str) -> str:
    """Source text of a module_utils module, also when Ansible runs us from a zip."""
    mod = importlib.import_module(name)
    src = None
    loader = getattr(mod, "__loader__", None)
    if loader is not None and hasattr(loader, "get_source"):
        src = loader.get_source(name)
    if src is None:
        with open(mod.__file__, encoding="utf-8") as fh:
            src = fh.read()
    return src


def module_utils_imports(source: str, importer: str = RECEIVER_ENTRY) -> set[str]:
    """Full names of the module_utils modules that ``source`` imports.

    Every import statement counts, also one inside a function: a lazy import
    still runs on the target. Understood forms: ``from PKG.X import y``,
    ``from PKG import X``, ``import PKG.X`` and the relative ``from .X import
    y`` / ``from ..module_utils.X import y`` (resolved against ``importer``).
    """
    depth = PKG.count(".") + 1  # module_utils has no sub-packages
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = importer.rsplit(".", node.level)[0]
                base = f"{package}.{base}" if base else package
            # ``from PKG import X`` names a module; ``from PKG.X import y`` a member of one.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith(PKG + "."):
                found.add(".".join(name.split(".")[:depth + 1]))
    return found


@lru_cache(maxsize=1)
def receiver_modules() -> tuple[str, ...]:
    """The receiver entry point and everything it imports from module_utils, sorted."""
    todo, seen = [RECEIVER_ENTRY], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(module_utils_imports(module_source(name), name) - seen)
    return tuple(sorted(seen))


@lru_cache(maxsize=1)
def receiver_bundle() -> bytes:
    """JSON ``{module name: source}`` of receiver_modules(): what the launcher imports."""
    return json.dumps({name: module_source(name) for name in receiver_modules()}, sort_keys=True).encode()


def receiver_version() -> str:
    """The receiver's version: a digest of its sources (what sender and receiver must agree on)."""
    return hashlib.sha256(receiver_bundle()).hexdigest()[:16]


def install_receiver(directory: str, python: str, allowed_roots: list[str], check_mode: bool = False) -> bool:
    """Install the pinned receiver (launcher, sources, config) into ``directory``; True if anything changed."""
    files = {
        BUNDLE_NAME: (receiver_bundle(), 0o644),
        CONFIG_NAME: (json.dumps({"version": receiver_version(),
                                  "allowed_roots": sorted(os.path.realpath(a) for a in allowed_roots)},
                                 indent=1, sort_keys=True).encode(), 0o644),
        LAUNCHER_NAME: (LAUNCHER.format(python=python, config=CONFIG_NAME, bundle=BUNDLE_NAME,
                                        name=LAUNCHER_NAME).encode(), 0o755),
    }
    changed = False
    for name, (data, mode) in files.items():
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as fh:
                same = fh.read() == data and (os.stat(path).st_mode & 0o7777) == mode
        except OSError:
            same = False
        if same:
            continue
        changed = True
        if check_mode:
            continue
        os.makedirs(directory, mode=0o755, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    return changed


def receiver_command(launcher: str, roots: dict[str, str], clear: list[str] = (),
                     create: list[str] = (), workers: int = 0, fault_corrupt_every: int = 0,
                     then_restore: dict | None = None, tag: str = "", stall_timeout: float = 0,
                     commit_timeout: float = 0) -> str:
    """The command the sender asks for: the target's pinned launcher and receiver options."""
    args = [launcher, "--expect-version", receiver_version()]
    # A recognisable argv (``pgrep -f edgemig-receiver:<tag>``) for operators and fault tests.
    args += ["--tag", f"edgemig-receiver:{tag or 'stream'}"]
    if stall_timeout:
        args += ["--stall-timeout", f"{stall_timeout:g}"]
    for name, path in roots.items():
        args += ["--root", f"{name}={path}"]
    for name in clear:
        args += ["--clear", name]
    for name in create:
        args += ["--create", name]
    if workers:
        args += ["--workers", str(workers)]
    if fault_corrupt_every:
        args += ["--fault-corrupt-every", str(fault_corrupt_every)]
    if then_restore:
        args += ["--then-restore", json.dumps(then_restore)]
        if commit_timeout:
            args += ["--commit-timeout", f"{commit_timeout:g}"]
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

    def __init__(self, dest_roots: dict[str, str], *, host: str, port: int = 22, user: str = "root",
                 key_file: str, known_hosts: str, receiver_dir: str = RECEIVER_DIR, clear: list[str] = (),
                 create: list[str] = (), fault_corrupt_every: int = 0, then_restore: dict | None = None,
                 stall_timeout: float = 30.0, tag: str = "", link_probe: bool = True):
        if not HAS_PARAMIKO:
            raise TransferError(f"paramiko is required: {PARAMIKO_IMPORT_ERROR}")
        self.host, self.port, self.user = host, port, user
        self.key_file, self.known_hosts = key_file, known_hosts
        self.command = receiver_command(os.path.join(receiver_dir, LAUNCHER_NAME), dest_roots, clear, create, 0, fault_corrupt_every,
                                        then_restore, tag=tag or (then_restore or {}).get("name", ""),
                                        # the sender gives up first, with the better message
                                        stall_timeout=2 * stall_timeout,
                                        commit_timeout=2 * stall_timeout if stall_timeout else 60)
        self.stall_timeout = stall_timeout
        self.two_phase = bool(then_restore)
        self.client = self.transport = self.chan = self.pump = None
        self.acks = CommitAcks(self.two_phase)
        self.stderr_buf: list[bytes] = []
        self.connect_s = 0.0
        self.link_probe = link_probe
        self.probe: dict | None = None
        self.sender: StreamSender | None = None  # the running stream, for progress readers

    def open(self) -> SshStream:
        t0 = time.monotonic()
        self.client = connect(self.host, self.port, self.user, self.key_file, self.known_hosts)
        self.transport = self.client.get_transport()
        # Keepalives keep a long silent phase (checkpoint before the stream,
        # restore after COMMIT) from being dropped by middleboxes, and make
        # TCP notice a dead peer; the waits below are bounded on top of that.
        self.transport.set_keepalive(max(1, int(self.stall_timeout / 4) or 5))
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
                   state: WarmState | None = None, **kwargs) -> dict:
        """One pre-copy warm round while the service runs (see precopy.py); returns its stats.

        ``memory_pids``: host pid -> namespace pid (process_memory.container_processes).
        The state is ``state`` or this stream's own (``self.warm``); pass the
        same to ``stream(..., warm=...)`` for the final round.
        """
        if state is None:
            if getattr(self, "warm", None) is None:
                self.warm = WarmState()
            state = self.warm
        return self.stream(roots, warm=state, _warm_round=True, _memory_pids=memory_pids, **kwargs)

    def keepalive(self):
        """Context: keep the receiver's idle watchdog fed while this side works between rounds
        (stream_sender.keepalive); nothing to do before a pre-copy session's HELLO, when the
        receiver's watchdog is not armed yet."""
        if getattr(self, "warm", None) is None or not self.warm.started or not self.stall_timeout:
            return contextlib.nullcontext()
        return keepalive(self.chan.sendall, keepalive_interval(self.stall_timeout))

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
            ctl.seed_network(self.probe["rate_Bps"])
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


def send_over_ssh(src_roots: list[tuple[str, str]], dest_roots: dict[str, str], *, host: str,
                  port: int = 22, user: str = "root", key_file: str, known_hosts: str,
                  receiver_dir: str = RECEIVER_DIR, policy: str = "model", workers: int = 0,
                  chunk_size: int = 1 << 20, dedup: bool = True, pipelined: bool = True,
                  clear: list[str] = (), create: list[str] = (), fault_corrupt_every: int = 0,
                  then_restore: dict | None = None, timeout: float = 3600.0,
                  stall_timeout: float = 30.0, tag: str = "", link_probe: bool = True) -> dict:
    """Connect, stream ``src_roots`` to ``dest_roots`` on ``host``, hang up."""
    with SshStream(dest_roots, host=host, port=port, user=user, key_file=key_file,
                   known_hosts=known_hosts, receiver_dir=receiver_dir, clear=clear, create=create,
                   fault_corrupt_every=fault_corrupt_every, then_restore=then_restore,
                   stall_timeout=stall_timeout, tag=tag, link_probe=link_probe) as conn:
        return conn.stream(src_roots, policy=policy, workers=workers, chunk_size=chunk_size,
                           dedup=dedup, pipelined=pipelined, timeout=timeout)


def send_local(src_roots: list[tuple[str, str]], dest_roots: dict[str, str], policy: str = "model",
               workers: int = 0, **kwargs) -> dict:
    """The same pipeline through an in-process pipe (tests, benchmarks without SSH)."""
    corrupt_hook = kwargs.pop("corrupt_hook", None)
    rfd, wfd = os.pipe()
    reader = os.fdopen(rfd, "rb")
    writer = os.fdopen(wfd, "wb", buffering=0)
    acks = AckState()
    outcome: dict = {}

    def run_receiver() -> None:
        try:
            outcome["summary"] = receive_stream(reader.read, lambda m: acks.feed_line(json.dumps(m).encode()),
                                                dest_roots, workers=workers or None,
                                                corrupt_hook=corrupt_hook)
            outcome["summary"]["ok"] = True
            acks.feed_line(json.dumps(outcome["summary"]).encode())
        except Exception as exc:
            if not getattr(exc, "reported", False):
                acks.feed_line(json.dumps({"error": str(exc)}).encode())
            # Keep draining so the sender is never stuck on a full pipe.
            while reader.read(1 << 16):
                pass

    rt = threading.Thread(target=run_receiver, daemon=True)
    rt.start()
    ctl = make_controller(policy, workers or os.cpu_count() or 1)
    sender = StreamSender(src_roots, ctl, writer.write, acks, workers=workers or None,
                          monitor=NetMonitor(None), **kwargs)
    try:
        result = sender.run()
    finally:
        writer.close()
        rt.join()
        reader.close()
    result["timeline"] = sender.timeline
    return result


class LocalSession:
    """A pre-copy session through an in-process pipe: warm rounds, then the final round.

    What ``send_local`` is to ``SshStream.stream``, for ``warm_round`` +
    ``stream(warm=...)`` (tests and benchmarks). The receiver runs in a
    thread; ``stream`` returns once END was verified and the receiver ended.
    ``warm_on_disk`` lets the unit tests keep the warm root outside tmpfs.
    """

    def __init__(self, dest_roots: dict[str, str], workers: int = 0, warm_on_disk: bool = False):
        rfd, wfd = os.pipe()
        self._reader = os.fdopen(rfd, "rb")
        self._writer = os.fdopen(wfd, "wb", buffering=0)
        self.acks = AckState()
        self.workers = workers
        self.warm = WarmState()
        self.outcome: dict = {}

        def run_receiver() -> None:
            try:
                self.outcome["summary"] = receive_stream(
                    self._reader.read, lambda m: self.acks.feed_line(json.dumps(m).encode()), dest_roots,
                    workers=workers or None, warm_on_disk=warm_on_disk)
                self.outcome["summary"]["ok"] = True
                self.acks.feed_line(json.dumps(self.outcome["summary"]).encode())
            except Exception as exc:
                self.outcome["error"] = exc
                if not getattr(exc, "reported", False):
                    self.acks.feed_line(json.dumps({"error": str(exc)}).encode())
                while self._reader.read(1 << 16):
                    pass

        self._thread = threading.Thread(target=run_receiver, daemon=True)
        self._thread.start()

    def _run(self, roots: list[tuple[str, str]], policy: str, warm_round: bool,
             memory_pids: dict[int, int] | None, **kwargs) -> dict:
        ctl = make_controller(policy, self.workers or os.cpu_count() or 1)
        sender = StreamSender(roots, ctl, self._writer.write, self.acks, workers=self.workers or None,
                              monitor=NetMonitor(None), warm=self.warm, warm_round=warm_round,
                              memory_pids=memory_pids, **kwargs)
        result = sender.run()
        result["timeline"] = sender.timeline
        return result

    def warm_round(self, roots: list[tuple[str, str]], memory_pids: dict[int, int] | None = None,
                   policy: str = "fixed:lz4:1", **kwargs) -> dict:
        return self._run(roots, policy, True, memory_pids, **kwargs)

    def keepalive(self, interval: float = 0.05):
        """As SshStream.keepalive (the in-process receiver has no watchdog; the frames still cross)."""
        return keepalive(self._writer.write, interval) if self.warm.started else contextlib.nullcontext()

    def stream(self, roots: list[tuple[str, str]], policy: str = "fixed:lz4:1", **kwargs) -> dict:
        try:
            return self._run(roots, policy, False, None, **kwargs)
        finally:
            self.close()

    def close(self) -> None:
        if not self._writer.closed:
            self._writer.close()
        self._thread.join()
        self._reader.close()
