# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read a running process's memory without stopping it (pre-copy warm phase).

The kernel here has no soft-dirty tracking, so pre-copy cannot ask "what
changed since the last round"; instead the warm phase reads every page CRIU
would dump, while the service runs, and ships it with a strong digest.  At
the freeze, a page of CRIU's dump whose (pid, vaddr) was warm-read with the
same digest is sent as a reference instead of 4 KiB.

Which pages: the ones CRIU puts in ``pagemap-<pid>.img`` (``criu/mem.c``
``generate_vma_iovs`` / ``should_dump_page``, ``criu/proc_parse.c``):

* private mappings only (anonymous or file, ``p`` in the maps permissions).
  Shared anonymous memory (``/dev/zero``, ``/SYSV*``, ``/memfd:``, shared
  ``MAP_ANONYMOUS``) is dumped once per object into ``pagemap-shmem-*``,
  keyed by offset, and ``MAP_SHARED`` files are not dumped at all;
* not ``[vsyscall]``/``[vectors]`` (kernel fixed page), not ``[vvar]`` /
  ``[vvar_vclock]`` (CRIU never dumps it: the restore uses the new kernel's),
  not ``[uprobes]``; ``[vdso]`` *is* dumped (entirely);
* not ``VM_IO``/``VM_PFNMAP`` mappings (CRIU refuses them; /proc/pid/mem
  cannot read them either, we skip on EIO);
* inside a mapping, only pages that are present or swapped
  (``/proc/<pid>/pagemap`` bits 63/62), not mapped to the shared zero page,
  and, in private *file* mappings, only pages already copied-on-write (the
  ``PME_FILE`` bit clear): CRIU leaves the others to the file.

CRIU also dumps pages of mappings without ``PROT_READ`` (through its
parasite); /proc/pid/mem reads them too (``FOLL_FORCE``), so we keep them.

Finding them: ``/proc/<pid>/pagemap`` in reads of :data:`PAGEMAP_CHUNK` words,
skipping mappings that ``/proc/<pid>/smaps`` shows with nothing resident or
swapped (address-space reservations: walking MariaDB's 8 TiB one took seconds
and gigabytes per pass, and a single read stopped after its first TiB).

Reading: ``/proc/<pid>/mem`` with ``os.preadv`` into a reused buffer, in
runs of consecutive wanted pages of up to :data:`CHUNK` bytes.  The process
keeps running: a page may change while being read; that is fine, the digest
at the freeze decides.  Needs ``PTRACE_MODE_ATTACH`` on the target (root).

Which process: pids are collected once (:func:`container_processes`) and warm
rounds run for minutes, so a pid may meanwhile belong to another process,
whose memory we would read as root and ship. The collection records each
process's :class:`ProcIdentity` (start time, cgroup); :class:`ProcessMemory`
opens ``/proc/<pid>`` once and reads mem, pagemap, maps and the identity
through that one directory, so an identity that matches is the identity of
the very process whose memory is read (a pid reused after the open is
another ``/proc`` directory, and this one's reads fail).

Standard library and NumPy only.
"""
from __future__ import annotations

import errno
import hashlib
import mmap
import os
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ansible_collections.edgemig.migration.plugins.module_utils.common.proc_stat import parse_start_time
from ansible_collections.edgemig.migration.plugins.module_utils.wire.page_arrays import PAGE_SIZE, np

CHUNK = 4 << 20  # bytes per pread: large enough to amortise the syscall and GUP set-up
# pagemap words per read (2 MiB, 1 GiB of address space). A mapping's pagemap is
# never read whole: MariaDB reserves 8 TiB of PROT_NONE address space, 16 GiB of
# pagemap, and one read of it would stop at the kernel's 2 GiB read limit.
PAGEMAP_CHUNK = 1 << 18

# /proc/<pid>/pagemap bits (Documentation/admin-guide/mm/pagemap.rst)
PM_PFN_MASK = (1 << 55) - 1
# (bit 55 soft-dirty and 56 exclusive are not read: this kernel has no soft-dirty, see precopy.py)
PM_GUARD = 1 << 58  # guard region (MADV_GUARD_INSTALL, 6.13+); CRIU skips these
PM_FILE = 1 << 61  # file page or shared anonymous
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63

# Special mappings CRIU does not dump as pages.
_SKIP_NAMES = frozenset({"[vsyscall]", "[vectors]", "[vvar]", "[vvar_vclock]", "[uprobes]"})

DIGEST_SIZE = 32


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/<pid>/maps."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str

    @property
    def private(self) -> bool:
        return self.perms[3:4] == "p"

    @property
    def anonymous(self) -> bool:
        # "[heap]", "[stack]", "[anon:name]" and no path are anonymous;
        # "[vdso]" too (CRIU classes it VMA_ANON_PRIVATE).
        return self.inode == 0 and (not self.path or self.path.startswith("["))

    @property
    def npages(self) -> int:
        return (self.end - self.start) // PAGE_SIZE


_MAPS_RE = re.compile(
    r"^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+([0-9a-f]+)\s+(\S+)\s+(\d+)(?:\s+(.*))?$")


def parse_maps(text: str) -> list[Mapping]:
    """Parse a /proc/<pid>/maps text.  Paths may contain spaces (and end in
    `` (deleted)``); they are kept whole."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _MAPS_RE.match(line)
        if not m:
            raise ValueError(f"unparsable maps line: {line!r}")
        out.append(Mapping(int(m.group(1), 16), int(m.group(2), 16), m.group(3), int(m.group(4), 16),
                           m.group(5), int(m.group(6)), m.group(7) or ""))
    return out


def _opener(dir_fd: int | None):
    """An ``open(opener=)`` that resolves names in the ``/proc/<pid>`` directory ``dir_fd``."""
    if dir_fd is None:
        return None
    return lambda name, flags: os.open(name, flags | os.O_CLOEXEC, dir_fd=dir_fd)


def _proc_file(pid: int, name: str, dir_fd: int | None) -> str:
    return name if dir_fd is not None else f"/proc/{pid}/{name}"


def read_maps(pid: int, dir_fd: int | None = None) -> list[Mapping]:
    """:func:`parse_maps` of ``pid`` (through its open ``/proc/<pid>`` directory ``dir_fd`` if given)."""
    with open(_proc_file(pid, "maps", dir_fd), opener=_opener(dir_fd)) as f:
        return parse_maps(f.read())


def parse_smaps_held(text: str) -> dict[int, int]:
    """Mapping start -> resident + swapped kB, from a /proc/<pid>/smaps text."""
    out: dict[int, int] = {}
    start = None
    for line in text.splitlines():
        head = line.split(None, 1)[0] if line.strip() else ""
        if not head:
            continue
        if not head.endswith(":"):          # "start-end perms ...": a new mapping
            start = int(head.split("-", 1)[0], 16)
            out[start] = 0
        elif start is not None and head in ("Rss:", "Swap:"):
            out[start] += int(line.split()[1])
    return out


def read_smaps_held(pid: int, dir_fd: int | None = None) -> dict[int, int] | None:
    """:func:`parse_smaps_held` of ``pid``; None when smaps cannot be read (then nothing is skipped)."""
    try:
        with open(_proc_file(pid, "smaps", dir_fd), opener=_opener(dir_fd)) as f:
            return parse_smaps_held(f.read())
    except (OSError, ValueError):
        return None


def criu_dumps_as_pages(m: Mapping) -> bool:
    """Would CRIU put this mapping's pages in the task's pagemap?"""
    if m.path in _SKIP_NAMES:
        return False
    if not m.private:
        return False
    # User space ends at 47 or 56 bits; anything above is a kernel mapping
    # (CRIU: ``entry->end <= task_size``).
    if m.end > (1 << 56):
        return False
    return True


_zero_pfn: int | None = None


def zero_page_pfn() -> int:
    """PFN of the kernel's shared zero page, as CRIU's kerndat finds it: map
    an anonymous page, read it (the fault maps the zero page) and look up
    its PFN.  0 when PFNs are hidden (no CAP_SYS_ADMIN): then no page is
    classed as the zero page, which only costs some reading."""
    global _zero_pfn
    if _zero_pfn is None:
        import ctypes

        # Writable so ctypes can take its address; we only read it, and a
        # read fault on untouched private anonymous memory maps the zero page.
        buf = mmap.mmap(-1, PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            cbuf = ctypes.c_char.from_buffer(buf)
            addr = ctypes.addressof(cbuf)
            _touch = cbuf.value
            del cbuf
            with open("/proc/self/pagemap", "rb") as f:
                (pme,) = struct.unpack("<Q", os.pread(f.fileno(), 8, addr // PAGE_SIZE * 8))
            _zero_pfn = pme & PM_PFN_MASK if pme & PM_PRESENT else 0
        finally:
            buf.close()
    return _zero_pfn


def wanted_pages(pme: np.ndarray, m: Mapping, zero_pfn: int) -> np.ndarray:
    """Boolean mask over a mapping's pagemap words: the pages CRIU dumps."""
    present = (pme & np.uint64(PM_PRESENT | PM_SWAP)) != 0
    want = present & ((pme & np.uint64(PM_GUARD)) == 0)
    if zero_pfn:
        # Swapped entries have no PFN (the field holds the swap offset).
        is_zero = ((pme & np.uint64(PM_PRESENT)) != 0) & ((pme & np.uint64(PM_PFN_MASK)) == np.uint64(zero_pfn))
        want &= ~is_zero
    if m.path == "[vdso]":
        return np.ones(len(pme), bool)
    if not m.anonymous:
        # Private file mapping: a page still backed by the page cache (not
        # COW-ed) is restored from the file; CRIU skips it.
        want &= (pme & np.uint64(PM_FILE)) == 0
    return want


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index runs where ``mask`` is true."""
    if not len(mask):
        return []
    d = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), ends.tolist()))


# ---------------------------------------------------------------------------
# Telling a process from a later one with the same pid
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcIdentity:
    """What tells a process from another one given the same pid later.

    ``start_time``: field 22 of /proc/<pid>/stat (clock ticks after boot; a new
    process with a recycled pid starts later); ``cgroup``: /proc/<pid>/cgroup as
    text (a pid taken by a process outside the container shows another cgroup; a
    container process that moved to another cgroup is treated as changed too,
    which only sends its memory at the freeze).
    """

    start_time: int
    cgroup: str


def _read_small(pid: int, name: str, dir_fd: int | None) -> str:
    fd = os.open(_proc_file(pid, name, dir_fd), os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        parts = []
        while True:
            part = os.read(fd, 4096)
            if not part:
                return b"".join(parts).decode("utf-8", "replace")
            parts.append(part)
    finally:
        os.close(fd)


def read_identity(pid: int, dir_fd: int | None = None) -> ProcIdentity:
    """``pid``'s :class:`ProcIdentity` (through its open ``/proc/<pid>`` directory ``dir_fd`` if given).

    Raises FileNotFoundError or ProcessLookupError when the process is gone."""
    return ProcIdentity(parse_start_time(_read_small(pid, "stat", dir_fd)), _read_small(pid, "cgroup", dir_fd))


def _cgroup_paths(text: str) -> dict[tuple[str, str], str]:
    out = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[(parts[0], parts[1])] = parts[2]
    return out


def cgroup_within(cgroup: str, top: str) -> bool:
    """Whether the /proc/<pid>/cgroup text ``cgroup`` lies at or below ``top``'s in every hierarchy of ``top``."""
    mine = _cgroup_paths(cgroup)
    for key, path in _cgroup_paths(top).items():
        here = mine.get(key)
        if here is None:
            return False
        if path not in ("", "/") and here != path and not here.startswith(path.rstrip("/") + "/"):
            return False
    return True


class ProcessMemory:
    """Open handles on one process's maps, pagemap and mem.

    Everything is opened through one ``/proc/<pid>`` directory descriptor, so
    :meth:`identity` describes the process whose memory :meth:`read_runs` reads,
    whatever happened to the pid since."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._dir = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._mem = self._pagemap = -1
        try:
            self._mem = os.open("mem", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dir)
            self._pagemap = os.open("pagemap", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dir)
        except OSError:
            self.close()
            raise
        self._buf = bytearray(CHUNK)
        self._pmbuf = bytearray(PAGEMAP_CHUNK * 8)
        self.unreadable_pages = 0

    def close(self) -> None:
        for fd in (self._mem, self._pagemap, self._dir):
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
        self._mem = self._pagemap = self._dir = -1

    def identity(self) -> ProcIdentity:
        """The :class:`ProcIdentity` of the process open here (FileNotFoundError or
        ProcessLookupError once it exited)."""
        return read_identity(self.pid, self._dir)

    def is_process(self, expected: ProcIdentity) -> bool:
        """Whether the process open here is still the one recorded as ``expected``:
        two small reads (stat, cgroup); False once it exited or cannot be read."""
        try:
            return self.identity() == expected
        except (OSError, ValueError):
            return False

    def __enter__(self) -> ProcessMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pagemap_chunks(self, m: Mapping) -> Iterator[tuple[int, np.ndarray]]:
        """(first page index, pagemap words) of ``m``, :data:`PAGEMAP_CHUNK` words per read.

        The words are a view into a reused buffer: valid until the next item. A
        mapping that shrank since maps was read ends early (take what came)."""
        n = m.npages
        view = memoryview(self._pmbuf)
        for first in range(0, n, PAGEMAP_CHUNK):
            want = min(PAGEMAP_CHUNK, n - first) * 8
            try:
                got = os.preadv(self._pagemap, [view[:want]], (m.start // PAGE_SIZE + first) * 8)
            except OSError:
                return
            if got >= 8:
                yield first, np.frombuffer(self._pmbuf, dtype="<u8", count=got // 8)
            if got < want:
                return

    def page_runs(self, mappings: list[Mapping] | None = None) -> Iterator[tuple[int, int]]:
        """(vaddr, npages) runs of the pages CRIU would dump, now."""
        held = read_smaps_held(self.pid, self._dir)
        if mappings is None:
            mappings = read_maps(self.pid, self._dir)
        zpfn = zero_page_pfn()
        step = CHUNK // PAGE_SIZE  # split long runs so one read fits the buffer
        for m in mappings:
            if not criu_dumps_as_pages(m):
                continue
            # Nothing resident or swapped: no page CRIU dumps, and no reason to walk
            # a reservation's pagemap (the [vdso] is dumped whole whatever smaps says).
            if held is not None and held.get(m.start, 1) == 0 and m.path != "[vdso]":
                continue
            for first, pme in self.pagemap_chunks(m):
                for a, b in _runs(wanted_pages(pme, m, zpfn)):
                    for s in range(first + a, first + b, step):
                        yield m.start + s * PAGE_SIZE, min(step, first + b - s)

    def _read_into(self, vaddr: int, npages: int) -> Iterator[tuple[int, memoryview]]:
        """Read a run; yield readable sub-runs.  A short read or EIO means a
        page in the run is unreadable now (unmapped meanwhile, VM_IO, a
        guard page): read up to it, skip one page, go on."""
        view = memoryview(self._buf)
        done = 0
        while done < npages:
            want = (npages - done) * PAGE_SIZE
            try:
                got = os.preadv(self._mem, [view[:want]], vaddr + done * PAGE_SIZE)
            except OSError as e:
                if e.errno not in (errno.EIO, errno.EFAULT, errno.ENOMEM):
                    raise
                got = 0
            full = got // PAGE_SIZE
            if full:
                yield vaddr + done * PAGE_SIZE, view[: full * PAGE_SIZE]
                done += full
            if full * PAGE_SIZE < want:
                done += 1
                self.unreadable_pages += 1

    def read_runs(self, mappings: list[Mapping] | None = None) -> Iterator[tuple[int, memoryview]]:
        """Yield (vaddr, bytes) per readable run of wanted pages.

        The memoryview is into a reused buffer: valid until the next item."""
        for vaddr, npages in self.page_runs(mappings):
            yield from self._read_into(vaddr, npages)


def read_memory(pid: int) -> Iterator[tuple[int, memoryview]]:
    """(vaddr, bytes) for each run of pages CRIU would dump of ``pid``.

    The buffer is reused: copy the bytes before asking for the next run."""
    with ProcessMemory(pid) as pm:
        yield from pm.read_runs()


def _hasher(name: str) -> Callable[[bytes | memoryview], bytes]:
    if name == "sha256":
        return lambda b: hashlib.sha256(b).digest()
    if name == "blake2b":
        return lambda b: hashlib.blake2b(b, digest_size=DIGEST_SIZE).digest()
    raise ValueError(f"unknown digest {name!r}")


# sha256 is the default: with the CPU's SHA extensions (sha_ni, used by
# OpenSSL behind hashlib) it measured ~1.35 GB/s per 4 KiB page against
# ~0.8 GB/s for blake2b-256 here (bench/precopy_probe.py).  hashlib drops
# the GIL for inputs over 2 KiB, so a thread pool can hash pages in parallel.
DEFAULT_DIGEST = "sha256"


def digest_pages(buf: bytes | memoryview, algo: str = DEFAULT_DIGEST) -> list[bytes]:
    """32-byte digest of each 4 KiB page of ``buf``."""
    h = _hasher(algo)
    mv = memoryview(buf)
    return [h(mv[i:i + PAGE_SIZE]) for i in range(0, len(mv) - PAGE_SIZE + 1, PAGE_SIZE)]


def page_digests(pid: int, algo: str = DEFAULT_DIGEST) -> dict[int, bytes]:
    """vaddr -> 32-byte digest for every page of ``pid`` CRIU would dump.

    Read while the process runs; a page written during the read has the
    digest of whatever was read, which the freeze-time comparison catches."""
    h = _hasher(algo)
    out: dict[int, bytes] = {}
    for vaddr, data in read_memory(pid):
        for i in range(0, len(data), PAGE_SIZE):
            out[vaddr + i] = h(data[i:i + PAGE_SIZE])
    return out


# ---------------------------------------------------------------------------
# A container's processes
# ---------------------------------------------------------------------------

def _mountinfo() -> list[tuple[str, str, str]]:
    """(mount point, fs type, super options) of each mount."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _sep, post = line.partition(" - ")
            fields = pre.split()
            p = post.split()
            if len(fields) >= 5 and len(p) >= 3:
                out.append((fields[4].replace("\\040", " "), p[0], p[2]))
    return out


def cgroup_dir(pid: int) -> str:
    """The directory of ``pid``'s cgroup in the mounted cgroup tree.

    cgroup v2 (the ``0::`` line) when it is mounted and puts the process
    below the root; otherwise a v1 hierarchy that does (``pids``, then
    ``freezer``, ``memory``, ``name=systemd``).  This machine is hybrid: v1
    controllers plus v2 on ``/sys/fs/cgroup/unified``, and Docker with the
    cgroupfs driver places containers in the v1 trees (and in v2 only if
    systemd delegates), hence the fallback."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [ln.rstrip("\n").split(":", 2) for ln in f if ln.strip()]
    mounts = _mountinfo()
    v2 = [mp for mp, fs, _opts in mounts if fs == "cgroup2"]
    by_ctrl: dict[str, str] = {}
    for mp, fs, opts in mounts:
        if fs == "cgroup":
            for o in opts.split(","):
                by_ctrl.setdefault(o, mp)
    cands: list[str] = []
    for hid, ctrls, path in lines:
        if hid == "0" and ctrls == "" and v2 and path not in ("", "/"):
            cands.insert(0, os.path.join(v2[0], path.lstrip("/")))
    for want in ("pids", "freezer", "memory", "name=systemd"):
        for _hid, ctrls, path in lines:
            if want in ctrls.split(",") and want in by_ctrl and path not in ("", "/"):
                cands.append(os.path.join(by_ctrl[want], path.lstrip("/")))
    for c in cands:
        if os.path.exists(os.path.join(c, "cgroup.procs")):
            return c
    raise LookupError(f"pid {pid} is in no non-root cgroup we can read")


def cgroup_pids(cgdir: str) -> list[int]:
    """Every process in ``cgdir`` and its descendant cgroups (a container may
    create sub-cgroups; cgroup.procs lists only direct members)."""
    pids: set[int] = set()
    for root, _dirs, files in os.walk(cgdir):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(root, "cgroup.procs")) as f:
                    pids.update(int(x) for x in f.read().split())
            except OSError:
                continue  # removed while walking
    return sorted(pids)


def ns_pids(pid: int, dir_fd: int | None = None) -> list[int]:
    """The NSpid line of /proc/<pid>/status: pid in each pid namespace,
    outermost (host) first."""
    with open(_proc_file(pid, "status", dir_fd), opener=_opener(dir_fd)) as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    return [pid]  # kernel < 4.1 has no NSpid: no pid namespaces to speak of


class ContainerProcesses(dict):
    """host pid -> namespace pid (a dict, as before), and ``identity``: host pid ->
    :class:`ProcIdentity` recorded at the collection, which a warm round checks a
    pid against before it reads that process's memory."""

    def __init__(self, pids=(), identity: dict[int, ProcIdentity] | None = None):
        super().__init__(pids)
        self.identity: dict[int, ProcIdentity] = dict(identity or {})


def _member(pid: int, level: int, top_cgroup: str) -> tuple[int, ProcIdentity] | None:
    """(namespace pid at ``level``, identity) of ``pid``, read through one ``/proc/<pid>``
    directory (so both describe one process); None when it exited or is no member."""
    try:
        dir_fd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        ident = read_identity(pid, dir_fd)
        nsp = ns_pids(pid, dir_fd)
    except (FileNotFoundError, ProcessLookupError):
        return None
    finally:
        os.close(dir_fd)
    # A pid listed in the container's cgroup and recycled before we read it is elsewhere now.
    if len(nsp) <= level or not cgroup_within(ident.cgroup, top_cgroup):
        return None
    return nsp[level], ident


def container_processes(main_pid: int) -> ContainerProcesses:
    """host pid -> namespace pid for every process of the container whose
    init is ``main_pid`` on the host, with each one's :class:`ProcIdentity`
    (``.identity``).

    The namespace pid is the one at the *container's* level (the depth of
    ``main_pid``'s innermost namespace), which is the pid CRIU writes in
    pstree.img and in ``pagemap-<pid>.img`` names.  Processes that exit
    while we look are left out."""
    level = len(ns_pids(main_pid)) - 1
    top = read_identity(main_pid).cgroup
    out = ContainerProcesses()
    for p in cgroup_pids(cgroup_dir(main_pid)):
        found = _member(p, level, top)
        if found is not None:
            out[p], out.identity[p] = found
    return out
