# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What CRIU will refuse to dump, found in /proc before anything is frozen (issue 29).

A service CRIU cannot checkpoint used to fail at the dump, after the move had
started, with runc's "criu failed: type DUMP" and the reason buried in a log.
:func:`scan` reads the container's processes' fds, fdinfo and mountinfo (no
ptrace, no freeze) and names each thing CRIU 4.2 cannot dump, or can only with
an option, with the process, the fd and what the user can do. Each rule below
names where CRIU decides it (checkpoint-restore/criu, tag v4.2):

* ``criu/files.c`` ``dump_one_file``: anonymous inodes CRIU has a dumper for are
  eventfd, eventpoll, inotify, fanotify, signalfd, timerfd, pidfd and (built with
  libbpf) bpf maps; any other (io_uring, perf_event, userfaultfd, bpf-prog,
  bpf_link, ...) goes to ``dump_unsupp_fd`` and the dump fails. Block devices
  fail the same way; of character devices only memory devices, ttys, tun and
  autofs are dumped (``dump_chrdev``).
* ``criu/pidfd.c``: a pidfd is dumped only when its process is in the dumped
  tree (or dead); ``PIDFD_THREAD`` pidfds not at all.
* ``criu/bpfmap.c``: only ``BPF_MAP_TYPE_HASH`` and ``BPF_MAP_TYPE_ARRAY`` maps.
* ``criu/fsnotify.c`` ``check_open_handle``: a watched inode is found again
  through ``open_by_handle_at``, which overlayfs does not decode (without
  ``nfs_export``): "Can't dump that handle" (upstream fixed it after 4.2, PR 3043).
* ``criu/sk-unix.c`` ``__dump_external_socket``: a unix socket whose peer is
  outside the dumped tree needs ``--ext-unix-sk``, and even then only a
  datagram socket with a named peer is dumped ("Can't dump half of stream unix
  connection").
* ``criu/files-reg.c`` ``dump_ghost_remap``: a deleted, still open file is
  carried in the images only up to ``--ghost-limit`` (allocated bytes,
  ``st_blocks * 512``; default 1 MiB, ``DEFAULT_GHOST_LIMIT``).
* ``criu/file-lock.c``: held file locks need ``--file-locks``.
* ``criu/mount.c``: a bind mount with no mount of its file system's root in the
  container "doesn't have a proper root mount" unless it is declared external;
  runc declares every bind mount of the container's config (and nothing else).

Neither path we dump through takes per-checkpoint CRIU options: Docker's
checkpoint call passes none, and ``ctr tasks checkpoint`` (containerd 1.6) has
only ``--exit``, ``--image-path`` and ``--work-path``; runc hands CRIU its
configuration file ``/etc/criu/runc.conf`` on every dump and restore. So an
option a finding needs is either already in that file (the finding is handled)
or the migration is refused, naming the line to add on both edges.

Standard library only. The /proc root is a parameter: the tests build a fake one.
"""
from __future__ import annotations

import ctypes
import os
import socket
import stat
import struct
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.host_readiness import parse_runc_conf, read_text

REFUSE = "refuse"
WITH_OPTION = "with_option"
DEFAULT_GHOST_LIMIT = 1 << 20  # criu/include/cr_options.h
RUNC_CONF = "/etc/criu/runc.conf"
PIDFD_THREAD = 0o200  # O_EXCL, as the kernel defines PIDFD_THREAD
BPF_MAP_HASH_OR_ARRAY = {1, 2}

# Anonymous inodes criu/files.c dumps (readlink after "anon_inode:").
DUMPABLE_ANON = {"[eventfd]", "[eventpoll]", "inotify", "[fanotify]", "[signalfd]", "[timerfd]", "[pidfd]",
                 "bpf-map"}
# The ones services are known to hold, with what the user can do; any other goes to dump_unsupp_fd too.
UNDUMPABLE_ANON = {
    "[io_uring]": ("holds an io_uring instance", "CRIU cannot checkpoint io_uring",
                   "disable io_uring in the service (e.g. MariaDB --innodb-use-native-aio=0, "
                   "libuv/Node.js UV_USE_IO_URING=0)"),
    "[perf_event]": ("holds a perf event", "CRIU cannot checkpoint perf events",
                     "stop the profiler or tracer in the container before migrating"),
    "[userfaultfd]": ("holds a userfaultfd", "CRIU cannot checkpoint a process's own userfaultfd",
                      "migrate the service when it does not use userfaultfd"),
    "bpf-prog": ("holds a BPF program", "CRIU cannot checkpoint BPF programs",
                 "load the BPF program outside the container (on the host)"),
    "bpf_link": ("holds a BPF link", "CRIU cannot checkpoint BPF links",
                 "attach the BPF program outside the container (on the host)"),
}
# The device nodes every container has (Docker's default set); CRIU dumps these.
STANDARD_DEVICES = {(1, 3): "/dev/null", (1, 5): "/dev/zero", (1, 7): "/dev/full", (1, 8): "/dev/random",
                    (1, 9): "/dev/urandom", (5, 0): "/dev/tty", (5, 1): "/dev/console", (5, 2): "/dev/ptmx"}
PTS_MAJORS = range(136, 144)
# Files Docker bind-mounts into every container and makes again on the target.
DOCKER_FILES = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/sbin/docker-init"}
SOCK_TYPES = {1: "stream", 2: "datagram", 5: "seqpacket"}


@dataclass
class Finding:
    """One thing CRIU cannot dump (``refuse``) or dumps only with ``option`` (``with_option``)."""

    pid: int
    comm: str
    fd: int | None
    kind: str
    verdict: str
    what: str      # "holds an io_uring instance"
    why: str       # CRIU's side of it
    action: str    # what the user can do
    option: str | None = None    # the runc.conf line that handles it (with_option)
    handled: bool = False        # runc hands CRIU that option already
    done: str = ""               # what the migration did about it

    def message(self) -> str:
        fd = f" (fd {self.fd})" if self.fd is not None else ""
        return f"process {self.pid} ({self.comm}) {self.what}{fd}: {self.why}; {self.action}"

    def as_dict(self) -> dict:
        out = asdict(self)
        out["message"] = self.message()
        return out


@dataclass
class Mount:
    dev: tuple[int, int]
    root: str
    point: str
    fstype: str
    source: str


@dataclass
class UnixSock:
    ino: int
    type: int
    peer: int
    name: str


# ---------------------------------------------------------------- /proc readers
def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def parse_mountinfo(text: str) -> list[Mount]:
    """``/proc/<pid>/mountinfo`` -> mounts (device, root within its file system, mount point, type, source)."""
    out = []
    for line in (text or "").splitlines():
        left, sep, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if not sep or len(fields) < 5 or len(rest) < 2:
            continue
        major, _c, minor = fields[2].partition(":")
        out.append(Mount((int(major), int(minor)), _unescape(fields[3]), _unescape(fields[4]), rest[0],
                         _unescape(rest[1])))
    return out


def fdinfo_fields(text: str) -> dict[str, str]:
    """``key:\\tvalue`` lines of an fdinfo (the first of each key)."""
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key and " " not in key:
            out.setdefault(key, value.strip())
    return out


def watched_devices(fdinfo: str) -> list[tuple[int, int]]:
    """(major, minor) of each inode an inotify / fanotify fd watches (its ``sdev:`` fields,
    the kernel's dev_t: major above bit 20)."""
    out = []
    for line in (fdinfo or "").splitlines():
        if line.startswith(("inotify wd:", "fanotify ino:")):
            for part in line.split():
                if part.startswith("sdev:"):
                    dev = int(part[5:], 16)
                    out.append((dev >> 20, dev & 0xFFFFF))
    return out


def locks_held(fdinfo: str) -> int:
    """How many file locks an fd holds (its fdinfo ``lock:`` lines)."""
    return sum(1 for line in (fdinfo or "").splitlines() if line.startswith("lock:"))


# ---------------------------------------------------------------- unix sockets (sock_diag netlink)
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20
UDIAG_SHOW_NAME, UDIAG_SHOW_PEER = 0x1, 0x4
UNIX_DIAG_NAME, UNIX_DIAG_PEER = 0, 2
NLMSG_ERROR, NLMSG_DONE = 2, 3


def parse_unix_diag(data: bytes) -> tuple[list[UnixSock], bool]:
    """The unix_diag_msg records of one netlink read, with their name and peer attributes, and
    whether the dump ended in it (NLMSG_DONE, or an error)."""
    out, off = [], 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16 or kind in (NLMSG_ERROR, NLMSG_DONE):
            return out, True
        _fam, stype, _state, _pad, ino = struct.unpack_from("=BBBBI", data, off + 16)
        out.append(UnixSock(ino, stype, *_unix_attrs(data[off + 32:off + length])))
        off += (length + 3) & ~3
    return out, False


def _unix_attrs(attrs: bytes) -> tuple[int, str]:
    """(peer inode, name) from a unix_diag_msg's attributes; an abstract name is shown with a leading @."""
    peer, name, off = 0, "", 0
    while off + 4 <= len(attrs):
        alen, atype = struct.unpack_from("=HH", attrs, off)
        if alen < 4:
            break
        body = attrs[off + 4:off + alen]
        if atype == UNIX_DIAG_PEER and len(body) >= 4:
            peer = struct.unpack_from("=I", body)[0]
        elif atype == UNIX_DIAG_NAME and body:
            # A path may come with its terminating NUL (the kernel counts it in the address length).
            name = ("@" + body[1:].decode(errors="replace")) if body[:1] == b"\0" \
                else body.split(b"\0", 1)[0].decode(errors="replace")
        off += (alen + 3) & ~3
    return peer, name


def _dump_unix(sock: socket.socket) -> list[UnixSock]:
    req = struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, UDIAG_SHOW_NAME | UDIAG_SHOW_PEER, 0, 0)
    sock.send(struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY, 0x301, 1, 0) + req)  # REQUEST | DUMP
    out: list[UnixSock] = []
    done = False
    while not done:
        data = sock.recv(1 << 16)
        if not data:
            break
        socks, done = parse_unix_diag(data)
        out += socks
    return out


def _netlink_in(netns: str | None) -> socket.socket:
    """A sock_diag socket of the network namespace ``netns`` (a /proc/<pid>/ns/net path; None: ours).

    A socket belongs to the namespace it is made in; setns(2) changes only the calling
    thread's, so a short-lived thread enters it, makes the socket and ends."""
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    made: list = []

    def enter() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(netns, "rb") as fh:
                if libc.setns(fh.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
                    raise OSError(ctypes.get_errno(), f"setns({netns})")
            made.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG))
        except OSError as exc:
            made.append(exc)

    worker = threading.Thread(target=enter, daemon=True)
    worker.start()
    worker.join()
    if isinstance(made[0], OSError):
        raise made[0]
    return made[0]


def unix_table(netns_paths: Iterable[str | None]) -> dict[int, UnixSock]:
    """Every unix socket of the given network namespaces (None: this process's), by inode."""
    out: dict[int, UnixSock] = {}
    for netns in netns_paths:
        with _netlink_in(netns) as sock:
            sock.settimeout(5)
            out.update({s.ino: s for s in _dump_unix(sock)})
    return out


# ---------------------------------------------------------------- the rules, one fd at a time
@dataclass
class Context:
    proc: str
    pids: set[int]
    ghost_limit: int
    unix: dict[int, UnixSock]
    own_sockets: set[int]


def _finding(pid: int, comm: str, fd: int | None, kind: str, verdict: str, what: str, why: str, action: str,
             option: str | None = None) -> Finding:
    return Finding(pid, comm, fd, kind, verdict, what, why, action, option)


def check_anon(ctx: Context, pid: int, comm: str, fd: int, name: str, fdinfo: str,
               mounts: list[Mount]) -> list[Finding]:
    """An ``anon_inode:`` fd: the ones CRIU has no dumper for, and the limits of those it has."""
    if name in UNDUMPABLE_ANON:
        what, why, action = UNDUMPABLE_ANON[name]
        return [_finding(pid, comm, fd, name.strip("[]"), REFUSE, what, why, action)]
    if name not in DUMPABLE_ANON:
        return [_finding(pid, comm, fd, "anon_inode", REFUSE, f"holds an anonymous inode {name}",
                         "CRIU has no dumper for it", "stop the service from using it before migrating")]
    if name in ("inotify", "[fanotify]"):
        return check_watches(pid, comm, fd, name.strip("[]"), fdinfo, mounts)
    fields = fdinfo_fields(fdinfo)
    if name == "[pidfd]":
        return check_pidfd(ctx, pid, comm, fd, fields)
    if name == "bpf-map" and fields.get("map_type", "").isdigit() \
            and int(fields["map_type"]) not in BPF_MAP_HASH_OR_ARRAY:
        return [_finding(pid, comm, fd, "bpf", REFUSE, f"holds a BPF map of type {fields['map_type']}",
                         "CRIU dumps only hash and array BPF maps",
                         "keep the BPF map outside the container (on the host)")]
    return []


def check_watches(pid: int, comm: str, fd: int, kind: str, fdinfo: str, mounts: list[Mount]) -> list[Finding]:
    """inotify / fanotify marks on an inode of an overlay (the container's root file system)."""
    fs_of = {m.dev: m.fstype for m in mounts}
    on_overlay = [dev for dev in watched_devices(fdinfo) if fs_of.get(dev) == "overlay"]
    if not on_overlay:
        return []
    return [_finding(pid, comm, fd, kind, REFUSE,
                     f"holds {len(on_overlay)} {kind} watch(es) on the container's overlay file system",
                     f"CRIU 4.2 cannot find an overlayfs inode again from its file handle ({kind} on overlayfs)",
                     "watch files on a volume instead of the image's file system, or turn file watching off "
                     "(e.g. a reload-on-change option)")]


def check_pidfd(ctx: Context, pid: int, comm: str, fd: int, fields: dict[str, str]) -> list[Finding]:
    try:
        target = int(fields.get("Pid", "-1"))
        flags = int(fields.get("flags", "0"), 8)
    except ValueError:
        return []
    if flags & PIDFD_THREAD:
        return [_finding(pid, comm, fd, "pidfd", REFUSE, "holds a thread pidfd (PIDFD_THREAD)",
                         "CRIU cannot checkpoint PIDFD_THREAD pidfds", "use a process pidfd instead")]
    if target > 0 and target not in ctx.pids:
        return [_finding(pid, comm, fd, "pidfd", REFUSE, f"holds a pidfd of process {target}, outside the container",
                         "CRIU dumps a pidfd only when its process is dumped too",
                         "close the pidfd, or keep both processes in one container")]
    return []


def check_unix(ctx: Context, pid: int, comm: str, fd: int, ino: int) -> list[Finding]:
    """A unix socket whose peer no process of the container holds."""
    sk = ctx.unix.get(ino)
    if sk is None or not sk.peer or sk.peer in ctx.own_sockets:
        return []
    peer = ctx.unix.get(sk.peer)
    peer_name = peer.name if peer is not None else ""
    kind = SOCK_TYPES.get(sk.type, f"type {sk.type}")
    to = f" ({peer_name})" if peer_name else ""
    if sk.type == socket.SOCK_DGRAM and peer_name:
        return [_finding(pid, comm, fd, "unix_socket", WITH_OPTION,
                         f"holds a unix datagram socket connected to {peer_name} outside the container",
                         "CRIU reconnects an external named datagram socket with ext-unix-sk",
                         f"the same socket must exist at {peer_name} on the target", option="ext-unix-sk")]
    return [_finding(pid, comm, fd, "unix_socket", REFUSE,
                     f"holds a unix {kind} socket connected to a peer outside the container{to}",
                     "CRIU cannot dump one end of a unix stream connection, nor a nameless external socket",
                     "close that connection before migrating (e.g. a host socket bind-mounted into the container, "
                     "such as /var/run/docker.sock, is used over a connection that cannot move)")]


def check_path_fd(ctx: Context, pid: int, comm: str, fd: int, link: str) -> list[Finding]:
    """Device nodes outside the standard set, and deleted open files over the ghost limit."""
    try:
        st = os.stat(os.path.join(ctx.proc, str(pid), "fd", str(fd)))
    except OSError:
        return []
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        if stat.S_ISCHR(st.st_mode) and (dev in STANDARD_DEVICES or dev[0] in PTS_MAJORS):
            return []
        kind = "block" if stat.S_ISBLK(st.st_mode) else "character"
        return [_finding(pid, comm, fd, "device", REFUSE, f"has the {kind} device {link} ({dev[0]}:{dev[1]}) open",
                         "CRIU dumps only memory devices, terminals and tun; a device passed into the container "
                         "(a GPU, a serial port, a disk) cannot move with it",
                         "run the service without the device, or do not migrate it")]
    if stat.S_ISREG(st.st_mode) and st.st_nlink == 0 and not link.startswith("/memfd:"):
        size = st.st_blocks * 512  # CRIU compares allocated bytes, not st_size
        # Over CRIU's own default the file needs the option even when runc.conf already raises the
        # limit: then it is a finding that settle() marks handled, so the report says what carried it.
        if size > min(ctx.ghost_limit, DEFAULT_GHOST_LIMIT):
            need = -(-size // (1 << 20))
            return [_finding(pid, comm, fd, "ghost_file", WITH_OPTION,
                             f"holds the deleted file {link} open ({size} bytes)",
                             f"CRIU copies deleted open files into the checkpoint only up to its ghost limit "
                             f"({ctx.ghost_limit} bytes)",
                             "close or truncate the file before migrating, or raise the limit",
                             option=f"ghost-limit {need}M")]
    return []


def check_fd(ctx: Context, pid: int, comm: str, fd: int, link: str, mounts: list[Mount]) -> list[Finding]:
    fdinfo = read_text(os.path.join(ctx.proc, str(pid), "fdinfo", str(fd))) or ""
    out = []
    if locks_held(fdinfo):
        out.append(_finding(pid, comm, fd, "file_lock", WITH_OPTION, "holds a file lock",
                            "CRIU dumps file locks only with file-locks",
                            "nothing, once file-locks is in runc.conf", option="file-locks"))
    if link.startswith("anon_inode:"):
        out += check_anon(ctx, pid, comm, fd, link[len("anon_inode:"):], fdinfo, mounts)
    elif link.startswith("socket:["):
        out += check_unix(ctx, pid, comm, fd, int(link[len("socket:["):-1]))
    elif link.startswith("/"):
        out += check_path_fd(ctx, pid, comm, fd, link)
    return out


def check_mounts(pid: int, comm: str, mounts: list[Mount], binds: dict[str, str],
                 volumes: set[str]) -> list[Finding]:
    """Bind mounts of host paths: declared in the container's config (runc marks them external
    to CRIU) or not (CRIU finds no root mount for them)."""
    roots = {m.dev for m in mounts if m.root == "/"}
    out = []
    for m in mounts:
        if m.root == "/" or m.dev in roots or m.fstype in ("cgroup", "cgroup2", "nsfs") \
                or m.point in DOCKER_FILES or m.point in volumes:
            continue
        if m.point in binds:
            found = _finding(pid, comm, None, "bind_mount", WITH_OPTION,
                             f"has {binds[m.point]} of the host bind-mounted at {m.point}",
                             "runc declares the container's bind mounts external to CRIU",
                             f"{binds[m.point]} must exist on the target too; its contents do not move "
                             "with the service (a named volume would)", option="external mount (runc)")
            found.handled = True
            out.append(found)
            continue
        out.append(_finding(pid, comm, None, "bind_mount", REFUSE,
                            f"has a bind mount at {m.point} ({m.root} of a {m.fstype} file system) "
                            "that is not in the container's config",
                            "CRIU finds no root mount for it and runc declares only the config's mounts external",
                            "unmount it, or declare it as a volume or bind mount of the container"))
    return out


# ---------------------------------------------------------------- the whole container
def _comm(proc: str, pid: int) -> str:
    return (read_text(os.path.join(proc, str(pid), "comm")) or "?").strip()


def _fds(proc: str, pid: int) -> list[tuple[int, str]]:
    base = os.path.join(proc, str(pid), "fd")
    out = []
    try:
        names = os.listdir(base)
    except OSError:
        return []
    for name in sorted(names, key=lambda n: int(n) if n.isdigit() else -1):
        try:
            out.append((int(name), os.readlink(os.path.join(base, name))))
        except (OSError, ValueError):
            continue  # closed while we looked
    return out


def socket_inodes(proc: str, pids: Iterable[int]) -> set[int]:
    """The unix (and other) socket inodes the container's processes hold."""
    out = set()
    for pid in pids:
        for _fd, link in _fds(proc, pid):
            if link.startswith("socket:["):
                out.add(int(link[len("socket:["):-1]))
    return out


def scan(pids: Iterable[int], proc: str = "/proc", *, ghost_limit: int = DEFAULT_GHOST_LIMIT,
         unix: dict[int, UnixSock] | None = None, binds: dict[str, str] | None = None,
         volumes: Iterable[str] = ()) -> list[Finding]:
    """Everything CRIU would refuse, or needs an option for, in the processes ``pids`` (host pids
    of one container). ``unix``: the unix sockets of the namespaces involved (:func:`unix_table`);
    ``binds``: the container's bind mounts, destination -> host source; ``volumes``: mount points
    that are no finding (:func:`mounts_of`: named volumes, which move with it, masked paths). Mounts are judged once per distinct mountinfo."""
    pids = sorted(set(pids))
    ctx = Context(proc, set(pids), ghost_limit, unix or {}, socket_inodes(proc, pids))
    found: list[Finding] = []
    seen_mounts: set[str] = set()
    for pid in pids:
        comm = _comm(proc, pid)
        text = read_text(os.path.join(proc, str(pid), "mountinfo")) or ""
        mounts = parse_mountinfo(text)
        if text and text not in seen_mounts:
            seen_mounts.add(text)
            found += check_mounts(pid, comm, mounts, binds or {}, set(volumes))
        for fd, link in _fds(proc, pid):
            found += check_fd(ctx, pid, comm, fd, link, mounts)
    return found


# ---------------------------------------------------------------- what runc passes on
def runc_options(text: str | None) -> dict[str, str]:
    """runc.conf (CRIU's config file) -> {option: value ('' for a flag)}."""
    out = {}
    for line in parse_runc_conf(text or ""):
        key, _sep, value = line.partition(" ")
        out[key] = value.strip()
    return out


def size_of(value: str) -> int:
    """A CRIU size (criu/config.c parse_size: K, M or G anywhere; else bytes); 0 when unreadable."""
    digits = "".join(c for c in value if c.isdigit()) or "0"
    for unit, mult in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)):
        if unit in value:
            return int(digits) * mult
    return int(digits)


def ghost_limit_of(options: dict[str, str]) -> int:
    return size_of(options["ghost-limit"]) if options.get("ghost-limit") else DEFAULT_GHOST_LIMIT


def settle(findings: list[Finding], options: dict[str, str], conf: str = RUNC_CONF) -> list[Finding]:
    """Say for each finding what the migration does about it; returns the ones that refuse it.

    ``with_option`` findings whose option runc already hands CRIU (``options``, from
    ``conf``) are handled; the others cannot be passed per migration (neither Docker's
    checkpoint call nor ``ctr tasks checkpoint`` takes CRIU options), so they refuse
    the migration, naming the line to add."""
    refusing = []
    for f in findings:
        name = (f.option or "").split()[0] if f.option else ""
        if f.verdict == WITH_OPTION and not f.handled:
            f.handled = name in options and (name != "ghost-limit" or size_of(options[name]) >= size_of(f.option))
        if f.verdict == REFUSE:
            f.done = "refused before the freeze"
        elif f.handled:
            # What the file has, which runc passes: a ghost limit may be higher than the finding needs.
            passed = f"{name} {options.get(name, '')}".strip() if f.kind != "bind_mount" else ""
            f.done = (f"handled: {conf} has '{passed}', which runc passes to CRIU"
                      if f.kind != "bind_mount" else "handled: runc declares it external to CRIU")
        else:
            f.done = (f"refused before the freeze: CRIU needs '{f.option}', and CRIU options reach it only "
                      f"through {conf} (neither Docker's checkpoint nor ctr tasks checkpoint passes them): add "
                      f"that line to {conf} on both edges (the criu role's criu_runc_options)")
        if f.verdict == REFUSE or not f.handled:
            refusing.append(f)
    return refusing


def refusal(findings: list[Finding]) -> str:
    """The failure message naming each finding that refuses the migration."""
    lines = [f.message() + ("" if f.verdict == REFUSE else f" ({f.done})") for f in findings]
    return "CRIU could not checkpoint this service: " + "; ".join(lines) + ". Nothing was frozen"


def mounts_of(inspect: dict) -> tuple[dict[str, str], set[str]]:
    """(bind mounts: destination -> host source, mount points that are no finding) of a container's
    inspect. No finding: named volumes (they move with the service) and the masked and read-only
    paths Docker asks of runc (runc declares a masked file external to CRIU itself)."""
    binds, quiet = {}, set()
    for m in inspect.get("Mounts") or []:
        if m.get("Type") == "volume":
            quiet.add(m.get("Destination", ""))
        elif m.get("Type") == "bind":
            binds[m.get("Destination", "")] = m.get("Source", "")
    host = inspect.get("HostConfig") or {}
    quiet.update(host.get("MaskedPaths") or [])
    quiet.update(host.get("ReadonlyPaths") or [])
    return binds, quiet


def net_namespaces(proc: str, pids: Iterable[int]) -> list[str | None]:
    """This process's network namespace (None) and each other one the pids are in (a path to enter it)."""
    ours = _readlink(os.path.join(proc, "self", "ns", "net"))
    out: list[str | None] = [None]
    seen = {ours}
    for pid in sorted(set(pids)):
        path = os.path.join(proc, str(pid), "ns", "net")
        ns = _readlink(path)
        if ns and ns not in seen:
            seen.add(ns)
            out.append(path)
    return out


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def check_container(inspect: dict, list_processes: Callable[[int], Iterable[int]],
                    check: Callable | None = None) -> tuple[dict, list[Finding]]:
    """The check of a running container, as migrate.yml's preflight and edge_migrate run it:
    ``(report, refusing findings)``. ``list_processes``: init pid -> the container's host pids
    (process_memory.container_processes); ``check``: :func:`preflight` (tests pass a fake)."""
    pid = int((inspect.get("State") or {}).get("Pid") or 0)
    if not pid:
        return {"checked": False, "notes": ["no process id in Docker's inspect: not checked"]}, []
    try:
        pids, note = list(list_processes(pid)), None
    except (OSError, LookupError, ValueError) as exc:
        # CRIU still judges every process at the dump; the init process is what we can see.
        pids, note = [pid], f"only the init process checked: the container's processes could not be listed ({exc})"
    report, refusing = (check or preflight)(inspect, pids)
    report = {"checked": True, **report}
    if note:
        report.setdefault("notes", []).append(note)
    return report, refusing


def check_service(api, name: str) -> dict:
    """The check of the container ``name`` if it runs on this host (migrate.yml asks the source before
    anything is made on the target): the report plus ``refusal``, the message naming what refuses the
    migration (None when nothing does); ``checked=False`` when it does not run here. Raises DockerAPIError."""
    inspect = api.inspect_container(name)
    if inspect is None or not (inspect.get("State") or {}).get("Running"):
        return {"checked": False, "refusal": None}
    report, refusing = check_container(inspect, lambda _init: docker_top_pids(api, name))
    return {**report, "refusal": refusal(refusing) if refusing else None}


def docker_top_pids(api, name: str) -> list[int]:
    """The container's host pids as Docker lists them (its cgroup's): edge_migrate lists them with
    process_memory, part of the stream engine the read-only modules do not ship."""
    try:
        top = api.get(f"/containers/{urllib.parse.quote(name, safe='')}/top", params={"ps_args": "-o pid"})
    except DockerAPIError as exc:
        raise OSError(str(exc)) from None
    return [int(row[0]) for row in (top or {}).get("Processes") or []]


def preflight(inspect: dict, pids: Iterable[int], proc: str = "/proc", conf: str = RUNC_CONF,
              unix: dict[int, UnixSock] | None = None) -> tuple[dict, list[Finding]]:
    """The container's check before the freeze: ``(report, refusing findings)``.

    ``report`` (edge_migrate's ``preflight``): processes checked, runc.conf's options,
    the ghost limit, and every finding with what was done about it. ``unix`` (tests):
    the unix socket table, else read through sock_diag in our and the container's
    network namespaces; a table that cannot be read leaves the sockets unchecked and
    says so (CRIU still checks them at the dump)."""
    pids = sorted(set(pids))
    options = runc_options(read_text(conf))
    notes = []
    if unix is None:
        try:
            unix = unix_table(net_namespaces(proc, pids))
        except OSError as exc:
            unix = {}
            notes.append(f"unix sockets not checked: {exc}")
    binds, quiet = mounts_of(inspect)
    findings = scan(pids, proc, ghost_limit=ghost_limit_of(options), unix=unix, binds=binds, volumes=quiet)
    refusing = settle(findings, options, conf)
    report = {"processes": len(pids), "runc_conf": conf, "runc_options": sorted(options),
              "ghost_limit": ghost_limit_of(options), "findings": [f.as_dict() for f in findings],
              "refused": bool(refusing)}
    if notes:
        report["notes"] = notes
    return report, refusing
