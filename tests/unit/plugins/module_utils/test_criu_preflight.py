# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 29: what CRIU cannot dump, found in /proc before the freeze.

A fake /proc tree (tmp_path) for every finding class and the clean case, then
real processes holding the real thing (io_uring, pidfd, a deleted open file,
an inotify watch, unix sockets to a peer outside, a device, a file lock).
"""
from __future__ import annotations

import ctypes
import os
import socket
import struct
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.docker import criu_preflight as cp

PID = 42
# The container's mounts: its overlay root, proc, its /dev tmpfs, a bind of /dev/null from that tmpfs
# over /proc/kcore (runc's masked path), Docker's /etc/hosts, a named volume, a user's bind mount.
MOUNTINFO = """\
600 500 0:61 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
601 600 0:64 / /proc rw,nosuid - proc proc rw
602 600 0:65 / /dev rw,nosuid - tmpfs tmpfs rw,mode=755
603 601 0:65 /null /proc/kcore rw,nosuid - tmpfs tmpfs rw,mode=755
604 600 254:0 /var/lib/docker/containers/abc/hosts /etc/hosts rw - ext4 /dev/vda rw
605 600 254:0 /var/lib/docker/volumes/data/_data /data rw - ext4 /dev/vda rw
606 600 254:0 /srv/config /config ro - ext4 /dev/vda rw
607 600 0:70 / /sys/fs/cgroup ro - cgroup2 cgroup rw
"""
OVERLAY_DEV = (0 << 20) | 61   # sdev of an inode on the overlay, as inotify's fdinfo prints it
EXT4_DEV = (254 << 20) | 0
INSPECT = {"Mounts": [{"Type": "volume", "Destination": "/data", "Source": "/var/lib/docker/volumes/data/_data"},
                      {"Type": "bind", "Destination": "/config", "Source": "/srv/config"}],
           "HostConfig": {"MaskedPaths": ["/proc/kcore", "/proc/keys"], "ReadonlyPaths": ["/proc/sys"]}}


def fdinfo(flags: str = "02", extra: str = "") -> str:
    return f"pos:\t0\nflags:\t{flags}\nmnt_id:\t15\nino:\t1234\n{extra}"


def fake_proc(tmp_path, fds: dict[int, tuple[str, str]], *, pid: int = PID, comm: str = "node",
              mountinfo: str = MOUNTINFO) -> str:
    """/proc/<pid>/{comm,mountinfo,fd/N,fdinfo/N}: ``fds`` maps fd -> (link target, fdinfo)."""
    base = tmp_path / "proc" / str(pid)
    (base / "fd").mkdir(parents=True)
    (base / "fdinfo").mkdir()
    (base / "comm").write_text(comm + "\n")
    (base / "mountinfo").write_text(mountinfo)
    for fd, (link, info) in fds.items():
        os.symlink(link, base / "fd" / str(fd))
        (base / "fdinfo" / str(fd)).write_text(info)
    return str(tmp_path / "proc")


def scan(proc: str, pids=(PID,), **kw) -> list[cp.Finding]:
    kw.setdefault("binds", {"/config": "/srv/config"})
    kw.setdefault("volumes", {"/data"})
    return cp.scan(pids, proc, **kw)


def only(findings: list[cp.Finding], kind: str) -> cp.Finding:
    mine = [f for f in findings if f.kind == kind]
    assert len(mine) == 1, findings
    return mine[0]


# ---------------------------------------------------------------- fake /proc: each class
def test_a_clean_container_has_nothing_but_its_declared_bind_mount(tmp_path):
    proc = fake_proc(tmp_path, {0: ("/dev/null", fdinfo()), 1: ("pipe:[77]", fdinfo()),
                                3: ("anon_inode:[eventpoll]", fdinfo()), 4: ("anon_inode:[eventfd]", fdinfo()),
                                5: ("anon_inode:inotify", fdinfo(extra=f"inotify wd:1 ino:10 sdev:{EXT4_DEV:x} "
                                                                       "mask:100 ignored_mask:0\n")),
                                6: ("socket:[900]", fdinfo()), 7: ("/etc/hosts", fdinfo())})
    found = scan(proc, unix={900: cp.UnixSock(900, 1, 0, "")})
    bind = only(found, "bind_mount")
    assert len(found) == 1 and bind.verdict == cp.WITH_OPTION and bind.handled
    assert "/srv/config must exist on the target" in bind.message()
    assert cp.settle(found, {}) == []


@pytest.mark.parametrize("name, kind, words", [
    ("[io_uring]", "io_uring", "holds an io_uring instance (fd 7): CRIU cannot checkpoint io_uring; "
                               "disable io_uring in the service (e.g. MariaDB --innodb-use-native-aio=0"),
    ("[perf_event]", "perf_event", "holds a perf event (fd 7)"),
    ("[userfaultfd]", "userfaultfd", "holds a userfaultfd (fd 7)"),
    ("bpf-prog", "bpf-prog", "holds a BPF program (fd 7)"),
    ("[secretmem]", "anon_inode", "holds an anonymous inode [secretmem] (fd 7): CRIU has no dumper for it"),
])
def test_anonymous_inodes_criu_has_no_dumper_for_are_refused(tmp_path, name, kind, words):
    proc = fake_proc(tmp_path, {7: (f"anon_inode:{name}", fdinfo())})
    f = only(scan(proc), kind)
    assert f.verdict == cp.REFUSE and f.message().startswith(f"process 42 (node) {words}")


def test_bpf_maps_only_of_other_types_than_hash_and_array(tmp_path):
    proc = fake_proc(tmp_path, {3: ("anon_inode:bpf-map", fdinfo(extra="map_type:\t1\n")),
                                4: ("anon_inode:bpf-map", fdinfo(extra="map_type:\t27\n"))})
    f = only(scan(proc), "bpf")
    assert (f.fd, f.verdict) == (4, cp.REFUSE) and "type 27" in f.message()


def test_pidfds_of_processes_outside_the_container_and_thread_pidfds(tmp_path):
    proc = fake_proc(tmp_path, {3: ("anon_inode:[pidfd]", fdinfo(extra="Pid:\t43\nNSpid:\t2\n")),      # inside
                                4: ("anon_inode:[pidfd]", fdinfo(extra="Pid:\t-1\n")),                  # dead
                                5: ("anon_inode:[pidfd]", fdinfo(extra="Pid:\t1\nNSpid:\t1\n")),        # the host's
                                6: ("anon_inode:[pidfd]", fdinfo("02000200", "Pid:\t43\n"))})           # PIDFD_THREAD
    (tmp_path / "proc" / "43").mkdir()
    found = scan(proc, pids=(PID, 43))
    assert sorted((f.fd, f.verdict) for f in found if f.kind == "pidfd") == [(5, cp.REFUSE), (6, cp.REFUSE)]
    assert "pidfd of process 1, outside the container" in found[-2].message() + found[-1].message()


def test_inotify_and_fanotify_watches_on_the_overlay(tmp_path):
    watch = f"inotify wd:2 ino:3f7e8 sdev:{OVERLAY_DEV:x} mask:100 ignored_mask:0 fhandle-bytes:8\n"
    fan = f"fanotify ino:10 sdev:{OVERLAY_DEV:x} mflags:0 mask:1 ignored_mask:0\n"
    on_volume = f"inotify wd:1 ino:10 sdev:{EXT4_DEV:x} mask:100 ignored_mask:0\n"
    proc = fake_proc(tmp_path, {3: ("anon_inode:inotify", fdinfo(extra=on_volume + watch)),
                                4: ("anon_inode:[fanotify]", fdinfo(extra=fan)),
                                5: ("anon_inode:inotify", fdinfo(extra=on_volume))})
    found = scan(proc)
    ino, fan_f = only(found, "inotify"), only(found, "fanotify")
    assert (ino.fd, ino.verdict, fan_f.fd) == (3, cp.REFUSE, 4)
    assert "holds 1 inotify watch(es) on the container's overlay file system (fd 3)" in ino.message()


def test_file_locks_need_the_option_runc_conf_has(tmp_path):
    lock = "lock:\t1: POSIX  ADVISORY  WRITE 42 00:3d:12 0 EOF\n"
    proc = fake_proc(tmp_path, {9: ("/var/lib/mysql/ibdata1", fdinfo(extra=lock))})
    f = only(scan(proc), "file_lock")
    assert (f.verdict, f.option) == (cp.WITH_OPTION, "file-locks")
    assert cp.settle([f], cp.runc_options("tcp-close\nfile-locks\n")) == [] and f.handled
    assert "has 'file-locks', which runc passes to CRIU" in f.done
    f.handled = False
    assert cp.settle([f], {}) == [f] and "add that line to /etc/criu/runc.conf on both edges" in f.done


def test_devices_outside_the_standard_set(tmp_path):
    std = {i: (p, fdinfo()) for i, p in enumerate(("/dev/null", "/dev/zero", "/dev/urandom", "/dev/tty"))}
    proc = fake_proc(tmp_path, {**std, 9: ("/dev/kmsg", fdinfo())})
    f = only(scan(proc), "device")
    assert (f.fd, f.verdict) == (9, cp.REFUSE) and "character device /dev/kmsg (1:11)" in f.message()


def test_deleted_open_files_over_the_ghost_limit(tmp_path):
    big, small = tmp_path / "big", tmp_path / "small"
    big.write_bytes(os.urandom(3 << 20))
    small.write_bytes(b"x" * 4096)
    with open(big, "rb") as fb, open(small, "rb") as fs:
        os.unlink(big)
        os.unlink(small)
        # fd links to our own fds on the deleted files: stat follows them to inodes with no name left
        proc = fake_proc(tmp_path, {5: (f"/proc/self/fd/{fb.fileno()}", fdinfo()),
                                    6: (f"/proc/self/fd/{fs.fileno()}", fdinfo())})
        found = scan(proc)
        raised = scan(proc, ghost_limit=cp.size_of("16M"))
        lowered = scan(proc, ghost_limit=2048)
    ghost = only(found, "ghost_file")
    assert (ghost.fd, ghost.verdict, ghost.option) == (5, cp.WITH_OPTION, "ghost-limit 3M")
    # under a raised limit the file is still found (the report says the limit carried it), and settled
    assert only(raised, "ghost_file").option == "ghost-limit 3M"
    assert cp.settle([ghost], cp.runc_options("ghost-limit 2M\n")) == [ghost]       # too small still
    assert cp.settle([ghost], cp.runc_options("--ghost-limit 4M\n")) == []
    assert ghost.handled and "'ghost-limit 4M'" in ghost.done
    # a limit lowered below CRIU's default (2K): the 4 KiB file is over it, and 1M is what it needs
    found_lowered = sorted((f.fd, f.option) for f in lowered if f.kind == "ghost_file")
    assert found_lowered == [(5, "ghost-limit 3M"), (6, "ghost-limit 1M")]


def test_memfds_are_not_ghost_files(tmp_path):
    fd = os.memfd_create("buf")
    try:
        os.write(fd, os.urandom(2 << 20))
        link = os.readlink(f"/proc/self/fd/{fd}")
        assert link.startswith("/memfd:")
        proc = fake_proc(tmp_path, {5: (f"/proc/self/fd/{fd}", fdinfo())})
        # the fake fd's readlink is the /proc path; the real one is /memfd:...: check with the real process too
        assert [f.kind for f in scan(proc)] == ["bind_mount", "ghost_file"]
        assert not [f for f in cp.scan([os.getpid()]) if f.kind == "ghost_file" and f.fd == fd]
    finally:
        os.close(fd)


def test_unix_sockets_with_a_peer_outside_the_container(tmp_path):
    proc = fake_proc(tmp_path, {3: ("socket:[100]", fdinfo()), 4: ("socket:[101]", fdinfo()),
                                5: ("socket:[200]", fdinfo()), 6: ("socket:[300]", fdinfo()),
                                7: ("socket:[400]", fdinfo())})
    unix = {100: cp.UnixSock(100, 1, 101, ""), 101: cp.UnixSock(101, 1, 100, ""),        # a pair inside
            200: cp.UnixSock(200, 1, 201, ""), 201: cp.UnixSock(201, 1, 200, "/var/run/docker.sock"),
            300: cp.UnixSock(300, 2, 301, ""), 301: cp.UnixSock(301, 2, 0, "/dev/log"),  # named dgram outside
            400: cp.UnixSock(400, 2, 401, "")}                                             # nameless, unseen
    found = [f for f in scan(proc, unix=unix) if f.kind == "unix_socket"]
    by_fd = {f.fd: f for f in found}
    assert sorted(by_fd) == [5, 6, 7]
    assert by_fd[5].verdict == cp.REFUSE and "(/var/run/docker.sock)" in by_fd[5].message()
    assert (by_fd[6].verdict, by_fd[6].option) == (cp.WITH_OPTION, "ext-unix-sk")
    assert by_fd[7].verdict == cp.REFUSE


def test_a_bind_mount_not_in_the_config_is_refused(tmp_path):
    proc = fake_proc(tmp_path, {}, mountinfo=MOUNTINFO + "608 600 254:0 /home/x /mnt/x rw - ext4 /dev/vda rw\n")
    found = [f for f in scan(proc) if f.kind == "bind_mount"]
    assert [(f.verdict, f.fd) for f in found] == [(cp.WITH_OPTION, None), (cp.REFUSE, None)]
    assert "bind mount at /mnt/x (/home/x of a ext4 file system) that is not in the container's config" \
        in found[1].message()


def test_the_inspect_says_which_mounts_are_declared():
    binds, quiet = cp.mounts_of(INSPECT)
    assert binds == {"/config": "/srv/config"} and quiet == {"/data", "/proc/kcore", "/proc/keys", "/proc/sys"}


def test_masked_paths_runc_binds_from_the_host_are_no_finding(tmp_path):
    # runc in a user namespace binds the host's /dev/null over masked files: no root mount of that devtmpfs
    proc = fake_proc(tmp_path, {}, mountinfo=MOUNTINFO + "609 601 0:5 /null /proc/keys rw - devtmpfs udev rw\n")
    _binds, quiet = cp.mounts_of(INSPECT)
    assert [f.verdict for f in scan(proc, volumes=quiet)] == [cp.WITH_OPTION]


def test_mounts_are_judged_once_per_mount_namespace(tmp_path):
    fake_proc(tmp_path, {}, pid=42)
    proc = fake_proc(tmp_path, {}, pid=43)
    assert [f.pid for f in scan(proc, pids=(42, 43))] == [42]


def test_the_report_and_the_refusal_name_every_finding(tmp_path):
    conf = tmp_path / "runc.conf"
    conf.write_text("tcp-close\nskip-in-flight\nfile-locks\n")
    proc = fake_proc(tmp_path, {7: ("anon_inode:[io_uring]", fdinfo()),
                                8: ("/x", fdinfo(extra="lock:\t1: FLOCK  ADVISORY  WRITE 42 00:3d:12 0 EOF\n"))})
    report, refusing = cp.preflight(INSPECT, [PID], proc, str(conf), unix={})
    assert report["runc_options"] == ["file-locks", "skip-in-flight", "tcp-close"]
    assert report["ghost_limit"] == 1 << 20 and report["refused"] and report["processes"] == 1
    assert [(f["kind"], f["handled"]) for f in report["findings"]] == [
        ("bind_mount", True), ("io_uring", False), ("file_lock", True)]
    msg = cp.refusal(refusing)
    assert msg.startswith("CRIU could not checkpoint this service: process 42 (node) holds an io_uring instance (fd 7)")
    assert msg.endswith("Nothing was frozen") and "file lock" not in msg


@pytest.mark.parametrize("value, size", [("16M", 16 << 20), ("512K", 512 << 10), ("1G", 1 << 30), ("4096", 4096)])
def test_sizes_as_criu_parses_them(value, size):
    assert cp.size_of(value) == size


def test_unix_diag_answers_are_parsed():
    name = b"\0abstract"
    attrs = struct.pack("=HH", 4 + len(name), cp.UNIX_DIAG_NAME) + name + b"\0" * (-len(name) % 4)
    attrs += struct.pack("=HHI", 8, cp.UNIX_DIAG_PEER, 77)
    body = struct.pack("=BBBBIII", socket.AF_UNIX, 1, 1, 0, 55, 0, 0) + attrs
    msg = struct.pack("=IHHII", 16 + len(body), cp.SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body
    done = struct.pack("=IHHIIi", 20, cp.NLMSG_DONE, 2, 1, 0, 0)
    socks, ended = cp.parse_unix_diag(msg + done)
    assert ended and socks == [cp.UnixSock(55, 1, 77, "@abstract")]


# ---------------------------------------------------------------- real processes
def holder(code: str) -> subprocess.Popen:
    """A child that does ``code``, prints ready and waits to be killed."""
    prog = "import ctypes, os, socket, sys, fcntl\n" + textwrap.dedent(code) + "\nprint('ready', flush=True)\n" \
           "sys.stdin.read()\n"
    child = subprocess.Popen([sys.executable, "-c", prog], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    if line.strip() != "ready":
        child.kill()
        pytest.skip(f"the kernel would not let the child do it: {line!r}")
    return child


@pytest.fixture
def child():
    made = []

    def start(code: str) -> int:
        made.append(holder(code))
        return made[-1].pid
    yield start
    for c in made:
        c.kill()
        c.wait()


def real_scan(pid: int, **kw) -> list[cp.Finding]:
    kw.setdefault("unix", cp.unix_table([None]))
    return [f for f in cp.scan([pid], **kw) if f.kind != "bind_mount"]


def test_real_io_uring(child):
    pid = child("""
        params = ctypes.create_string_buffer(120)
        ring = ctypes.CDLL(None, use_errno=True).syscall(425, 4, params)   # io_uring_setup, x86_64
        if ring < 0:
            print('io_uring_setup failed', ctypes.get_errno(), flush=True)
    """)
    f = only(real_scan(pid), "io_uring")
    assert f.verdict == cp.REFUSE and f.comm.startswith("python")


def test_real_pidfd_of_a_process_outside(child):
    pid = child("fd = os.pidfd_open(os.getppid())")
    f = only(real_scan(pid), "pidfd")
    assert f"pidfd of process {os.getpid()}, outside the container" in f.message()


def test_real_deleted_file_over_the_limit(child, tmp_path):
    pid = child(f"""
        fh = open({str(tmp_path / 'big')!r}, 'w+b')
        fh.write(os.urandom(2 << 20)); fh.flush()
        os.unlink(fh.name)
    """)
    f = only(real_scan(pid), "ghost_file")
    assert f.option == "ghost-limit 3M" or f.option == "ghost-limit 2M"
    assert f"{tmp_path / 'big'} (deleted)" in f.message()


def test_real_inotify_watch_on_an_overlay(child, tmp_path):
    for d in ("lower", "upper", "work", "merged"):
        (tmp_path / d).mkdir()
    (tmp_path / "lower" / "conf").write_text("x")
    opts = f"lowerdir={tmp_path / 'lower'},upperdir={tmp_path / 'upper'},workdir={tmp_path / 'work'}"
    if subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(tmp_path / "merged")],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount an overlay here")
    try:
        pid = child(f"""
            libc = ctypes.CDLL(None, use_errno=True)
            ino = libc.syscall(294, 0)                                   # inotify_init1
            libc.syscall(254, ino, {str(tmp_path / 'merged' / 'conf').encode()!r}, 0x2)   # inotify_add_watch
            libc.syscall(254, ino, {str(tmp_path).encode()!r}, 0x2)     # and one not on the overlay
        """)
        f = only(real_scan(pid), "inotify")
        assert f.verdict == cp.REFUSE and "holds 1 inotify watch(es) on the container's overlay" in f.message()
    finally:
        subprocess.run(["umount", "-l", str(tmp_path / "merged")], check=False)


def test_real_unix_stream_connected_outside_and_a_named_datagram(child, tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "host.sock"))
    listener.listen(1)
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(str(tmp_path / "log.sock"))
    with listener, dgram:
        pid = child(f"""
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect({str(tmp_path / 'host.sock')!r})
            d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d.connect({str(tmp_path / 'log.sock')!r})
            a, b = socket.socketpair()                                   # both ends inside: fine
        """)
        conn, _addr = listener.accept()
        with conn:
            found = [f for f in real_scan(pid) if f.kind == "unix_socket"]
    assert sorted(f.verdict for f in found) == [cp.REFUSE, cp.WITH_OPTION], found
    stream = next(f for f in found if f.verdict == cp.REFUSE)
    assert f"({tmp_path / 'host.sock'})" in stream.message(), stream.message()
    assert next(f for f in found if f.verdict == cp.WITH_OPTION).option == "ext-unix-sk"


def test_real_device_and_file_lock(child, tmp_path):
    if not os.path.exists("/dev/kmsg"):
        pytest.skip("no /dev/kmsg")
    pid = child(f"""
        dev = os.open('/dev/kmsg', os.O_RDONLY)
        null = os.open('/dev/null', os.O_RDONLY)
        lk = open({str(tmp_path / 'lock')!r}, 'w'); fcntl.flock(lk, fcntl.LOCK_EX)
    """)
    found = real_scan(pid)
    assert only(found, "device").verdict == cp.REFUSE
    assert only(found, "file_lock").option == "file-locks"


def test_this_test_process_scans_without_error():
    assert isinstance(cp.scan([os.getpid()], unix=cp.unix_table(cp.net_namespaces("/proc", [os.getpid()]))), list)


def test_a_netns_that_cannot_be_entered_is_an_oserror(tmp_path):
    (tmp_path / "notns").write_text("")
    with pytest.raises(OSError):
        cp.unix_table([str(tmp_path / "notns")])


def test_libc_is_loadable_for_setns():
    assert ctypes.CDLL(None).setns


def test_a_raised_ghost_limit_handles_it_and_the_report_names_the_line_passed(tmp_path):
    f = cp.Finding(7, "hold", 3, "ghost_file", cp.WITH_OPTION, "holds the deleted file /tmp/big (deleted) open",
                   "over the ghost limit", "raise the limit", option="ghost-limit 2M")
    assert cp.settle([f], cp.runc_options("file-locks\nghost-limit 4M\n")) == [] and f.handled
    assert "has 'ghost-limit 4M', which runc passes to CRIU" in f.done
    f.handled = False
    assert cp.settle([f], cp.runc_options("ghost-limit 1M\n")) == [f] and "CRIU needs 'ghost-limit 2M'" in f.done


def test_check_container_lists_the_processes_or_falls_back_to_init():
    got = {}

    def check(_inspect, pids):
        got["pids"] = pids
        return {"processes": len(pids)}, []

    running = {"State": {"Running": True, "Pid": 42}}
    assert cp.check_container(running, lambda init: [init, 43], check) == ({"checked": True, "processes": 2}, [])
    assert got["pids"] == [42, 43]

    def broken(_init):
        raise OSError("no cgroup")

    report, refusing = cp.check_container(running, broken, check)
    assert got["pids"] == [42] and refusing == [] and "no cgroup" in report["notes"][0]
    assert cp.check_container({"State": {}}, broken, check)[0]["checked"] is False
