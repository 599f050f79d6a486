# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""process_memory: maps parsing, CRIU's page selection, reading a live child.

Reading a child's memory needs ptrace access to it: root, or the same uid
with Yama ptrace_scope <= 1 (we are its parent).  Tests that cannot read it
are skipped.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.sender import process_memory as pm
from ansible_collections.edgemig.migration.plugins.module_utils.wire import criu_images

P = pm.PAGE_SIZE

MAPS = """\
55d0c0a00000-55d0c0a02000 r--p 00000000 fe:00 1234                       /usr/bin/python3.11
55d0c0a02000-55d0c0a03000 rw-p 00002000 fe:00 1234                       /usr/bin/python3.11
55d0c1000000-55d0c1100000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000100000 rw-p 00000000 00:00 0{blank}
7f0000100000-7f0000101000 ---p 00000000 00:00 0{blank}
7f0000200000-7f0000300000 rw-s 00000000 00:01 77                         /dev/zero (deleted)
7f0000300000-7f0000301000 rw-s 00000000 00:01 78                         /memfd:buf (deleted)
7f0000400000-7f0000401000 rw-p 00000000 fe:00 99                         /data/my file (deleted)
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
7ffc00100000-7ffc00104000 r--p 00000000 00:00 0                          [vvar]
7ffc00104000-7ffc00106000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
""".format(blank=" ")  # anonymous mappings' lines end in a blank, as the kernel writes them


def test_parse_maps():
    ms = pm.parse_maps(MAPS)
    assert len(ms) == 12
    assert ms[0] == pm.Mapping(0x55D0C0A00000, 0x55D0C0A02000, "r--p", 0, "fe:00", 1234, "/usr/bin/python3.11")
    assert ms[3].path == "" and ms[3].anonymous and ms[3].npages == 256
    assert ms[7].path == "/data/my file (deleted)" and not ms[7].anonymous
    assert ms[2].anonymous and ms[10].anonymous  # [heap], [vdso]
    with pytest.raises(ValueError):
        pm.parse_maps("not a maps line\n")


def test_criu_selection():
    dumped = [m.path or "anon" for m in pm.parse_maps(MAPS) if pm.criu_dumps_as_pages(m)]
    # Shared mappings (dumped per object by CRIU), [vvar], [vsyscall] are out;
    # PROT_NONE private and [vdso] are in.
    assert dumped == ["/usr/bin/python3.11", "/usr/bin/python3.11", "[heap]", "anon", "anon",
                      "/data/my file (deleted)", "[stack]", "[vdso]"]


def test_wanted_pages():
    anon = pm.Mapping(0x1000, 0x7000, "rw-p", 0, "00:00", 0, "")
    fil = pm.Mapping(0x1000, 0x7000, "rw-p", 0, "fe:00", 5, "/lib/x.so")
    vdso = pm.Mapping(0x1000, 0x3000, "r-xp", 0, "00:00", 0, "[vdso]")
    zpfn = 0x3B34
    pme = np.array([
        0,                                   # not present
        pm.PM_PRESENT | 0x1234,              # present
        pm.PM_SWAP | 0x55,                   # swapped out: CRIU dumps it
        pm.PM_PRESENT | zpfn,                # the zero page
        pm.PM_PRESENT | pm.PM_FILE | 0x99,   # page cache (not COW-ed)
        pm.PM_PRESENT | pm.PM_GUARD,         # guard region
    ], dtype=np.uint64)
    assert pm.wanted_pages(pme, anon, zpfn).tolist() == [False, True, True, False, True, False]
    assert pm.wanted_pages(pme, fil, zpfn).tolist() == [False, True, True, False, False, False]
    # PFNs hidden (no CAP_SYS_ADMIN): the zero page cannot be told apart.
    assert pm.wanted_pages(pme, anon, 0).tolist()[3] is True
    assert pm.wanted_pages(pme[:2], vdso, zpfn).tolist() == [True, True]


def test_runs():
    assert pm._runs(np.array([], bool)) == []
    assert pm._runs(np.array([1, 1, 0, 1, 0, 0, 1, 1, 1], bool)) == [(0, 2), (3, 4), (6, 9)]
    assert pm._runs(np.ones(4, bool)) == [(0, 4)]


def test_digest_pages():
    buf = bytes(range(256)) * 32
    assert pm.digest_pages(buf) == [hashlib.sha256(buf[:P]).digest(), hashlib.sha256(buf[P:]).digest()]
    assert pm.digest_pages(buf, "blake2b")[0] == hashlib.blake2b(buf[:P], digest_size=32).digest()
    assert all(len(d) == 32 for d in pm.digest_pages(buf, "blake2b"))
    with pytest.raises(ValueError):
        pm.digest_pages(buf, "crc32")


def test_cgroup_pids_walks_subtree(tmp_path):
    (tmp_path / "cgroup.procs").write_text("10\n11\n")
    sub = tmp_path / "sub" / "deeper"
    sub.mkdir(parents=True)
    (tmp_path / "sub" / "cgroup.procs").write_text("")
    (sub / "cgroup.procs").write_text("12\n10\n")
    assert pm.cgroup_pids(str(tmp_path)) == [10, 11, 12]


def test_ns_pids_self():
    nsp = pm.ns_pids(os.getpid())
    assert nsp[0] == os.getpid()


def test_container_processes_self():
    try:
        procs = pm.container_processes(os.getpid())
    except LookupError:
        pytest.skip("this process is in no non-root cgroup")
    assert procs[os.getpid()] == pm.ns_pids(os.getpid())[-1]


# --- a live child ------------------------------------------------------------------

# Three private anonymous pages with known content; then the middle one is
# unmapped (a hole: reading across it must skip it, not fail).  The child
# prints the address and keeps running.
CHILD = r"""
import ctypes, mmap, sys, time
libc = ctypes.CDLL(None, use_errno=True)
buf = mmap.mmap(-1, 4 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
for i in range(4):
    ctypes.memmove(addr + i * 4096, bytes([0x61 + i]) * 4096, 4096)
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
assert libc.munmap(addr + 2 * 4096, 4096) == 0
print(hex(addr), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def child():
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        addr = int(p.stdout.readline(), 16)
        try:
            os.close(os.open(f"/proc/{p.pid}/mem", os.O_RDONLY))
        except PermissionError:
            pytest.skip("cannot read another process's memory here (ptrace restrictions)")
        yield p.pid, addr
    finally:
        p.kill()
        p.wait()


def test_child_page_digests(child):
    pid, addr = child
    d = pm.page_digests(pid)
    assert d[addr] == hashlib.sha256(b"a" * P).digest()
    assert d[addr + P] == hashlib.sha256(b"b" * P).digest()
    assert addr + 2 * P not in d  # unmapped
    assert d[addr + 3 * P] == hashlib.sha256(b"d" * P).digest()
    assert pm.page_digests(pid, "blake2b")[addr] == hashlib.blake2b(b"a" * P, digest_size=32).digest()


def test_child_runs_and_unreadable_hole(child):
    pid, addr = child
    with pm.ProcessMemory(pid) as mem:
        # Runs may start before ``addr``: the kernel merges adjacent
        # anonymous mappings.  Compare page by page.
        pages = {va + i: bytes(b[i:i + P]) for va, b in mem.read_runs() for i in range(0, len(b), P)}
        assert pages[addr] == b"a" * P and pages[addr + P] == b"b" * P
        assert addr + 2 * P not in pages
        assert mem.unreadable_pages == 0
        # Ask for the hole explicitly, as if maps had been read before munmap:
        # the pages around it come back, the hole is counted and skipped.
        parts = [(va, bytes(b)) for va, b in mem._read_into(addr, 4)]
        assert parts == [(addr, b"a" * P + b"b" * P), (addr + 3 * P, b"d" * P)]
        assert mem.unreadable_pages == 1


def test_child_selection_matches_maps(child):
    pid, _addr = child
    maps = pm.read_maps(pid)
    assert not any(m.path in ("[vvar]", "[vsyscall]") for m in maps if pm.criu_dumps_as_pages(m))
    with pm.ProcessMemory(pid) as mem:
        runs = list(mem.page_runs(maps))
    assert runs and all(n > 0 and va % P == 0 for va, n in runs)


def test_parse_smaps_held_sums_resident_and_swapped_per_mapping():
    text = ("55d0c0000000-55d0c0001000 r--p 00000000 08:01 42  /usr/bin/x\n"
            "Size:                  4 kB\nRss:                   4 kB\nSwap:                  0 kB\nVmFlags: rd mr\n"
            "7709a4000000-7f09a0000000 ---p 00000000 00:00 0 \n"
            "Size:         8589869056 kB\nRss:                   0 kB\nSwap:                  0 kB\n"
            "7f09a45c2000-7f09ac000000 rw-p 00000000 00:00 0\nRss:                 100 kB\nSwap:                 28 kB\n")
    assert pm.parse_smaps_held(text) == {0x55d0c0000000: 4, 0x7709a4000000: 0, 0x7f09a45c2000: 128}


# A reservation (PROT_NONE, nothing resident, as MariaDB's 8 TiB) beside a large
# mapping with one page written past the first TiB: the kernel serves at most
# 2 GiB (1 TiB of address space) of pagemap per read.
BIG_CHILD = r"""
import mmap, sys
NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)
flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | NORESERVE
reserve = mmap.mmap(-1, 64 << 30, flags=flags, prot=0)  # PROT_NONE
big = mmap.mmap(-1, (1 << 40) + (1 << 30), flags=flags)
far = (1 << 40) + (256 << 20)
big[far:far + 4096] = b"f" * 4096
import ctypes
print(hex(ctypes.addressof(ctypes.c_char.from_buffer(big)) + far), flush=True)
sys.stdin.read()
"""


def test_a_reservation_is_skipped_and_a_page_past_the_first_tib_is_read(monkeypatch):
    p = subprocess.Popen([sys.executable, "-c", BIG_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = p.stdout.readline()
        if not line:
            pytest.skip("cannot map 1 TiB of address space here")
        far = int(line, 16)
        walked = []
        chunks = pm.ProcessMemory.pagemap_chunks
        monkeypatch.setattr(pm.ProcessMemory, "pagemap_chunks",
                            lambda self, m: (walked.append(m), chunks(self, m))[1])
        d = pm.page_digests(p.pid)
        assert d[far] == hashlib.sha256(b"f" * P).digest()
        assert not any(m.perms.startswith("---") and m.end - m.start >= 64 << 30 for m in walked)
        assert any(m.start <= far < m.end for m in walked)
    finally:
        p.kill()
        p.wait()


# --- the selection agrees with CRIU ---------------------------------------------------

# A child with each kind of memory the selection rules treat differently:
# anonymous pages only read (mapped to the zero page: CRIU skips them),
# anonymous pages written with zeros (allocated: CRIU dumps them), a private
# file mapping with pages read (page cache: skipped) and written (COW-ed:
# dumped), and shared anonymous memory (dumped per object, in
# pagemap-shmem-*, not in the task's pagemap).
SELECTION_CHILD = r"""
import mmap, os, sys
P = 4096
anon = mmap.mmap(-1, 64 * P, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, 32):
    anon[i * P]            # read: zero page
for i in range(32, 40):
    anon[i * P] = 0        # write: allocated
path = sys.argv[1]
with open(path, "wb") as f:
    f.write(os.urandom(8 * P))
fd = os.open(path, os.O_RDWR)
fm = mmap.mmap(fd, 8 * P, flags=mmap.MAP_PRIVATE)
for i in range(8):
    fm[i * P]
fm[0] = 1
fm[5 * P] = 1
shm = mmap.mmap(-1, 4 * P, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
shm[:] = b"s" * 4 * P
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("criu"), reason="needs root and criu")
def test_selection_matches_criu_dump():
    work = tempfile.mkdtemp(prefix="process-memory-test-", dir="/dev/shm")
    p = subprocess.Popen([sys.executable, "-c", SELECTION_CHILD, os.path.join(work, "file")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert p.stdout.readline() == b"ready\n"
        mine = set(pm.page_digests(p.pid))
        dump = os.path.join(work, "dump")
        os.mkdir(dump)
        r = subprocess.run(["criu", "dump", "-t", str(p.pid), "-D", dump, "--shell-job", "--leave-running",
                            "-o", "dump.log"], capture_output=True, text=True, check=False)
        if r.returncode:
            pytest.skip("criu dump failed here: " + open(os.path.join(dump, "dump.log")).read()[-500:])
        theirs: set[int] = set()
        shmem_pages = 0
        for pf in criu_images.page_index(dump):
            if pf.shmid is None:
                assert pf.pid == p.pid
                theirs.update(int(v) for v in pf.vaddr)
            else:
                shmem_pages += len(pf.vaddr)
        assert shmem_pages == 4
        # CRIU's syscall injection (compel) pokes an instruction into the
        # first executable mapping (the python binary's text), which
        # copies-on-write that page: CRIU then dumps it, we had seen a
        # page-cache page.  Besides that (and a page the interpreter may
        # touch), the sets are the same.
        assert len(mine - theirs) <= 1, sorted(mine - theirs)[:8]
        assert len(theirs - mine) <= 2, sorted(theirs - mine)[:8]
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(work, ignore_errors=True)


# --- telling a process from a later one with its pid ------------------------------------------

def test_parse_start_time_counts_fields_after_the_last_parenthesis():
    # comm may hold spaces and ") (": field 22 is counted from the last ")".
    rest = " ".join(str(n) for n in range(3, 53)).replace("3", "S", 1)
    assert pm.parse_start_time(f"1234 (a) (b c) {rest}") == 22
    with pytest.raises(ValueError, match="unparsable"):
        pm.parse_start_time("1234 (x) S 1 2")


def test_cgroup_within():
    top = "4:memory:/docker/abc\n0::/docker/abc\n"
    assert pm.cgroup_within(top, top)
    assert pm.cgroup_within("4:memory:/docker/abc/sub\n0::/docker/abc/sub\n", top)
    assert not pm.cgroup_within("4:memory:/docker/abcd\n0::/docker/abc\n", top)      # a sibling's prefix
    assert not pm.cgroup_within("4:memory:/user.slice\n0::/user.slice\n", top)
    assert not pm.cgroup_within("0::/docker/abc\n", top)                               # hierarchy missing
    assert pm.cgroup_within("4:memory:/anything\n0::/x\n", "4:memory:/\n0::/\n")     # top at the root


def test_container_processes_records_each_identity():
    try:
        procs = pm.container_processes(os.getpid())
    except LookupError:
        pytest.skip("this process is in no non-root cgroup")
    assert isinstance(procs, dict) and procs.identity[os.getpid()] == pm.read_identity(os.getpid())
    assert set(procs.identity) == set(procs)


def test_process_memory_identity_is_the_open_process(child):
    pid, _addr = child
    with pm.ProcessMemory(pid) as mem:
        ident = mem.identity()
        assert ident == pm.read_identity(pid) and mem.is_process(ident)
        assert not mem.is_process(pm.ProcIdentity(ident.start_time + 1, ident.cgroup))
        assert not mem.is_process(pm.ProcIdentity(ident.start_time, "0::/elsewhere\n"))
