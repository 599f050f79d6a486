# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""criu_images: protobuf wire decoding, image framing, page index.

Synthetic images are built with a tiny encoder here (independent of the
decoder under test).  One test dumps a real process with CRIU; it is skipped
without root or criu.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import pytest
from hypothesis import given, strategies as st

from ansible_collections.edgemig.migration.plugins.module_utils.wire import criu_images as ci

P = ci.PAGE_SIZE


# --- a minimal encoder --------------------------------------------------------

def varint(v: int) -> bytes:
    assert 0 <= v < 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(num: int, v: int) -> bytes:
    return varint(num << 3 | 0) + varint(v)


def f_len(num: int, data: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(data)) + data


def f_fixed32(num: int, v: int) -> bytes:
    return varint(num << 3 | 5) + struct.pack("<I", v)


def f_fixed64(num: int, v: int) -> bytes:
    return varint(num << 3 | 1) + struct.pack("<Q", v)


def image(magic: int, entries: list[bytes], common: bool = True) -> bytes:
    head = struct.pack("<I", ci.IMG_COMMON_MAGIC) if common else b""
    head += struct.pack("<I", magic)
    return head + b"".join(struct.pack("<I", len(e)) + e for e in entries)


def pstree_entry(pid: int, ppid: int, threads: list[int], packed: bool = False) -> bytes:
    b = f_varint(1, pid) + f_varint(2, ppid) + f_varint(3, pid) + f_varint(4, pid)
    if packed:
        b += f_len(5, b"".join(varint(t) for t in threads))
    else:
        b += b"".join(f_varint(5, t) for t in threads)
    return b


def pagemap_entry(vaddr: int, nr: int, flags: int | None, compat_only: bool = False) -> bytes:
    b = f_varint(1, vaddr)
    b += f_varint(2, nr & 0xFFFFFFFF)
    if flags is not None:
        b += f_varint(4, flags)
    if not compat_only:
        b += f_varint(5, nr)
    return b


PRESENT, LAZY, PARENT = ci.PE_PRESENT, ci.PE_LAZY, ci.PE_PARENT


def page(tag: int) -> bytes:
    return struct.pack("<Q", tag) * (P // 8)


def write_dump(d: str) -> dict[tuple[int, int], bytes]:
    """pid 1 (pages-1.img) and pid 7 (pages-2.img); returns the expected
    (pid, vaddr) -> page content."""
    expect: dict[tuple[int, int], bytes] = {}
    with open(os.path.join(d, "pstree.img"), "wb") as f:
        f.write(image(ci.PSTREE_MAGIC, [pstree_entry(1, 0, [1, 2]), pstree_entry(7, 1, [7], packed=True)]))
    with open(os.path.join(d, "inventory.img"), "wb") as f:
        f.write(image(ci.INVENTORY_MAGIC, [f_varint(1, 2) + f_varint(8, 123456) + f_varint(10, 1)],
                      common=False))
    # pid 1: present 2 pages, a parent hole, a lazy-only (not in file), present 3 pages.
    pes1 = [(0x400000, 2, PRESENT | LAZY), (0x500000, 4, PARENT), (0x600000, 1, LAZY),
            (0x7F0000000000, 3, PRESENT)]
    pes7 = [(0x1000, 1, PRESENT)]
    for pid, pid_pes, pages_id in ((1, pes1, 1), (7, pes7, 2)):
        entries = [f_varint(1, pages_id)] + [pagemap_entry(v, n, fl) for v, n, fl in pid_pes]
        data = bytearray()
        for v, n, fl in pid_pes:
            if fl & PRESENT:
                for i in range(n):
                    pg = page(pid << 48 | (v + i * P))
                    expect[(pid, v + i * P)] = pg
                    data += pg
        with open(os.path.join(d, f"pagemap-{pid}.img"), "wb") as f:
            f.write(image(ci.PAGEMAP_MAGIC, entries))
        with open(os.path.join(d, f"pages-{pages_id}.img"), "wb") as f:
            f.write(data)
    return expect


# --- varints --------------------------------------------------------------------

@pytest.mark.parametrize("v", [0, 1, 127, 128, 300, 16383, 16384, 2**31 - 1, 2**32 - 1, 2**32,
                               2**63 - 1, 2**63, 2**64 - 1])
def test_varint_edges(v):
    b = varint(v)
    assert ci.decode_varint(b, 0) == (v, len(b))
    assert ci.decode_varint(b"\xff" + b, 1) == (v, len(b) + 1)


def test_varint_max_is_ten_bytes():
    assert varint(2**64 - 1) == b"\xff" * 9 + b"\x01"
    assert ci.to_signed64(2**64 - 1) == -1


def test_varint_non_minimal_accepted():
    # 1 encoded in two bytes is legal protobuf.
    assert ci.decode_varint(b"\x81\x00", 0) == (1, 2)


@pytest.mark.parametrize("bad", [b"", b"\x80", b"\xff\xff", b"\xff" * 10, b"\xff" * 9 + b"\x02", b"\xff" * 11])
def test_varint_bad(bad):
    with pytest.raises(ci.ImageError):
        ci.decode_varint(bad, 0)


@given(st.integers(0, 2**64 - 1))
def test_varint_roundtrip(v):
    assert ci.decode_varint(varint(v), 0)[0] == v


def test_fields_all_wire_types():
    msg = f_varint(1, 5) + f_fixed64(2, 2**60 + 3) + f_len(3, b"abc") + f_fixed32(4, 0xDEADBEEF)
    got = [(n, wt, bytes(v) if isinstance(v, memoryview) else v) for n, wt, v in ci.iter_fields(msg)]
    assert got == [(1, 0, 5), (2, 1, 2**60 + 3), (3, 2, b"abc"), (4, 5, 0xDEADBEEF)]


@pytest.mark.parametrize("bad", [
    f_len(3, b"abcdef")[:-1],          # length beyond the end
    f_fixed64(2, 1)[:-1],
    f_fixed32(2, 1)[:-2],
    varint(1 << 3 | 3) + b"\x00",      # start group: unsupported
    varint(0 << 3 | 0) + b"\x00",      # field 0
    b"\x08",                           # key without value
])
def test_fields_bad(bad):
    with pytest.raises(ci.ImageError):
        list(ci.iter_fields(bad))


def test_unknown_fields_skipped():
    # A newer CRIU may add fields; the decoder must skip them, whatever wire type.
    msg = pagemap_entry(0x1000, 2, PRESENT) + f_len(99, b"future") + f_fixed32(98, 1) + f_varint(97, 7)
    pe = ci.decode_pagemap_entry(msg)
    assert (pe.vaddr, pe.nr_pages, pe.flags) == (0x1000, 2, PRESENT)


# --- messages -------------------------------------------------------------------------

def test_pstree_packed_and_unpacked_threads():
    assert ci.decode_pstree_entry(pstree_entry(5, 1, [5, 6, 9])).threads == [5, 6, 9]
    e = ci.decode_pstree_entry(pstree_entry(5, 1, [5, 300], packed=True))
    assert (e.pid, e.ppid, e.pgid, e.sid, e.threads) == (5, 1, 5, 5, [5, 300])


def test_pstree_missing_required():
    with pytest.raises(ci.ImageError, match="required"):
        ci.decode_pstree_entry(f_varint(1, 5))


def test_pagemap_entry_compat_and_old_forms():
    # Only the u32 compat_nr_pages (CRIU before the u64 field).
    pe = ci.decode_pagemap_entry(pagemap_entry(0x2000, 3, PRESENT, compat_only=True))
    assert pe.nr_pages == 3
    # u64 nr_pages wins over the truncated compat value.
    pe = ci.decode_pagemap_entry(pagemap_entry(0x2000, 2**33 + 1, PRESENT))
    assert pe.nr_pages == 2**33 + 1
    # No flags: in_parent decides (images before flags existed).
    assert ci.decode_pagemap_entry(f_varint(1, 0x3000) + f_varint(2, 1)).flags == PRESENT
    assert ci.decode_pagemap_entry(f_varint(1, 0x3000) + f_varint(2, 1) + f_varint(3, 1)).flags == PARENT


def test_pagemap_entry_bad():
    with pytest.raises(ci.ImageError):
        ci.decode_pagemap_entry(f_varint(2, 1))  # no vaddr
    with pytest.raises(ci.ImageError):
        ci.decode_pagemap_entry(f_varint(1, 0x1000))  # no nr_pages
    with pytest.raises(ci.ImageError, match="aligned"):
        ci.decode_pagemap_entry(pagemap_entry(0x1001, 1, PRESENT))
    with pytest.raises(ci.ImageError):
        ci.decode_pagemap_entry(f_len(1, b"x") + f_varint(2, 1))  # vaddr with wrong wire type


# --- files -------------------------------------------------------------------------

def test_dump_dir_roundtrip(tmp_path):
    d = str(tmp_path)
    expect = write_dump(d)
    tree = ci.read_pstree(d)
    assert [(e.pid, e.ppid, e.threads) for e in tree] == [(1, 0, [1, 2]), (7, 1, [7])]
    inv = ci.read_inventory(d)
    assert (inv.img_version, inv.dump_uptime, inv.tcp_close) == (2, 123456, True)

    locs = list(ci.iter_page_locations(d))
    assert len(locs) == len(expect) == 6
    for pid, va, path, off in locs:
        with open(path, "rb") as f:
            f.seek(off)
            assert f.read(P) == expect[(pid, va)]

    idx = ci.page_index(d)
    assert [(pf.pid, pf.pages_id, len(pf.vaddr)) for pf in idx] == [(1, 1, 5), (7, 2, 1)]
    assert idx[0].vaddr.tolist() == [0x400000, 0x401000, 0x7F0000000000, 0x7F0000001000, 0x7F0000002000]
    assert idx[0].lazy.tolist() == [True, True, False, False, False]
    # Both views agree.
    flat = [(pf.pid, int(v), pf.path, i * P) for pf in idx for i, v in enumerate(pf.vaddr)]
    assert flat == locs


def test_shmem_pagemap(tmp_path):
    d = str(tmp_path)
    with open(os.path.join(d, "pagemap-shmem-4242.img"), "wb") as f:
        f.write(image(ci.PAGEMAP_MAGIC, [f_varint(1, 3), pagemap_entry(0, 2, PRESENT)]))
    with open(os.path.join(d, "pages-3.img"), "wb") as f:
        f.write(page(1) + page(2))
    (pf,) = ci.page_index(d)
    assert (pf.pid, pf.shmid, pf.vaddr.tolist()) == (-1, 4242, [0, P])


def test_pages_size_mismatch(tmp_path):
    d = str(tmp_path)
    write_dump(d)
    with open(os.path.join(d, "pages-1.img"), "ab") as f:
        f.write(page(0))
    with pytest.raises(ci.ImageError, match="pages-1.img"):
        ci.page_index(d)
    assert len(ci.page_index(d, check_sizes=False)) == 2


@pytest.mark.parametrize("cut", [2, 6, 9, 11, -1])
def test_truncated_pagemap(tmp_path, cut):
    d = str(tmp_path)
    write_dump(d)
    path = os.path.join(d, "pagemap-1.img")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:cut])
    with pytest.raises(ci.ImageError):
        ci.page_index(d)


def test_wrong_magic_and_huge_entry(tmp_path):
    d = str(tmp_path)
    write_dump(d)
    path = os.path.join(d, "pagemap-1.img")
    data = bytearray(open(path, "rb").read())
    bad = bytes(data[:4]) + struct.pack("<I", ci.CORE_MAGIC) + bytes(data[8:])
    with pytest.raises(ci.ImageError, match="magic"):
        list(ci.iter_entries(bad, ci.PAGEMAP_MAGIC))
    huge = bytes(data[:8]) + struct.pack("<I", 0xFFFFFFF0) + b"\0" * 16
    with pytest.raises(ci.ImageError, match="corrupt"):
        list(ci.iter_entries(huge))


def test_header_forms():
    assert ci.read_header(struct.pack("<I", ci.INVENTORY_MAGIC)) == (ci.INVENTORY_MAGIC, 4)
    assert ci.read_header(struct.pack("<II", ci.IMG_SERVICE_MAGIC, 0x57093306)) == (0x57093306, 8)
    with pytest.raises(ci.ImageError):
        ci.read_header(struct.pack("<I", ci.IMG_COMMON_MAGIC))
    with pytest.raises(ci.ImageError):
        ci.read_header(b"\x19\x43")


# --- a real CRIU dump --------------------------------------------------------------

CHILD = r"""
import ctypes, mmap, sys, time
buf = mmap.mmap(-1, 3 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(3):
    buf[i * 4096:(i + 1) * 4096] = bytes([0x41 + i]) * 4096
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
print(hex(addr), flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("criu"), reason="needs root and criu")
def test_real_criu_dump():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    work = tempfile.mkdtemp(prefix="criu-images-test-", dir="/dev/shm")
    try:
        addr = int(child.stdout.readline(), 16)
        time.sleep(0.2)
        r = subprocess.run(["criu", "dump", "-t", str(child.pid), "-D", work, "--shell-job",
                            "--leave-running", "-o", "dump.log"],
                           capture_output=True, text=True, check=False)
        if r.returncode:
            pytest.skip("criu dump failed here: " + open(os.path.join(work, "dump.log")).read()[-500:])
        tree = ci.read_pstree(work)
        assert [e.pid for e in tree] == [child.pid]  # no pid namespace: ns pid == host pid
        idx = {pf.pid: pf for pf in ci.page_index(work)}
        pf = idx[child.pid]
        data = open(pf.path, "rb").read()
        pos = {int(v): i for i, v in enumerate(pf.vaddr)}
        for i in range(3):
            j = pos[addr + i * P]
            assert data[j * P:(j + 1) * P] == bytes([0x41 + i]) * P
            assert pf.lazy[j]  # private anonymous: PE_LAZY
        assert ci.read_inventory(work).img_version >= 2
    finally:
        child.kill()
        child.wait()
        shutil.rmtree(work, ignore_errors=True)


# CRIU 4.2's own stats files on this machine: a `criu dump` of a sleep (stats-dump, with
# the page-pipe fields 10-14 that images/stats.proto does not list yet) and a MariaDB
# restored by `docker start --checkpoint` on the lab (stats-restore).
STATS_DUMP = bytes.fromhex("4059105506330957210000000a1f087a109036189d04208301283a3000381f4000480050065806600068007000")
STATS_RESTORE = bytes.fromhex("40591055063309570f000000120d08001000180320a1ef1228d36e")


def test_stats_dump_times_in_seconds_and_counts_as_written(tmp_path):
    path = tmp_path / "stats-dump"
    path.write_bytes(STATS_DUMP)
    assert ci.read_stats(str(path)) == {"dump": {
        "freezing_s": 0.000122, "frozen_s": 0.006928, "memdump_s": 0.000541, "memwrite_s": 0.000131,
        "pages_scanned": 58, "pages_skipped_parent": 0, "pages_written": 31, "irmap_resolve_s": 0.0, "pages_lazy": 0}}


def test_stats_restore():
    (entry,) = ci.iter_entries(STATS_RESTORE, ci.STATS_MAGIC)
    assert ci.decode_stats(entry) == {"restore": {"pages_compared": 0, "pages_skipped_cow": 0, "forking_s": 3e-06,
                                                  "restore_s": 0.309153, "pages_restored": 14163}}


def test_stats_refuses_another_image_and_a_scalar_where_a_message_belongs(tmp_path):
    path = tmp_path / "stats-dump"
    path.write_bytes(STATS_DUMP[:4] + struct.pack("<I", ci.PAGEMAP_MAGIC) + STATS_DUMP[8:])
    with pytest.raises(ci.ImageError, match="expected 0x57093306"):
        ci.read_stats(str(path))
    with pytest.raises(ci.ImageError, match="where a message was expected"):
        ci.decode_stats(bytes([0x08, 0x01]))  # dump = 1 as a varint
