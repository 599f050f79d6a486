# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read the CRIU images that pre-copy needs (pstree, pagemap, pages, inventory) and CRIU's stats.

Pre-copy sends a running process's memory ahead of the freeze.  At the freeze
CRIU dumps as usual, and for each page of ``pages-<id>.img`` the stream must
know *which* (pid, virtual address) it belongs to, to find the page the
target already holds.  That mapping lives in CRIU's ``pagemap-<id>.img``;
this module decodes it without pulling in ``protobuf`` or ``crit`` (neither
is on the edge hosts, and we need only four small messages).

Image layout (CRIU ``criu/image.c``, ``criu/protobuf.c``, ``magic.h``):

* a protobuf image starts with u32 ``IMG_COMMON_MAGIC`` (or
  ``IMG_SERVICE_MAGIC`` for stats/irmap-cache), then the u32 magic of the
  image type; ``inventory.img`` has only its own magic (no common magic);
* then entries, each a u32 little-endian byte count and that many bytes of
  a protobuf message, until end of file;
* ``pages-<id>.img`` is raw (``PAGES_MAGIC`` is ``RAW_IMAGE_MAGIC``): no
  header, just 4 KiB pages.

``pagemap-<vpid>.img`` (``<vpid>`` is the pid inside the container's pid
namespace, as in ``pstree.img``): one ``pagemap_head {pages_id}`` naming its
``pages-<pages_id>.img``, then ``pagemap_entry {vaddr, nr_pages, in_parent,
flags}`` in ascending vaddr.  Only entries with ``PE_PRESENT`` have their
pages in the pages file, stored back to back in pagemap order
(``page_xfer_dump_pages`` writes the entry and its pages together).
Entries with only ``PE_PARENT`` (incremental dump) or only ``PE_LAZY``
(``--lazy-pages``) have no bytes in this dump.  A normal dump marks private
anonymous pages ``PE_PRESENT | PE_LAZY`` and other pages ``PE_PRESENT``.

``pagemap-shmem-<shmid>.img`` (shared anonymous memory, SysV shm, memfd)
has the same format but its ``vaddr`` is an offset in the shared object,
not an address in a process; :func:`page_index` reports those with
``pid = -1`` and the shmid in ``shmem_ids``.

Standard library and NumPy only.
"""
from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.edgemig.migration.plugins.module_utils.wire.page_arrays import PAGE_SIZE, np

# criu/include/magic.h
IMG_COMMON_MAGIC = 0x54564319
IMG_SERVICE_MAGIC = 0x55105940
INVENTORY_MAGIC = 0x58313116
PSTREE_MAGIC = 0x50273030
PAGEMAP_MAGIC = 0x56084025
CORE_MAGIC = 0x55053847
STATS_MAGIC = 0x57093306  # stats-dump / stats-restore, after IMG_SERVICE_MAGIC

# criu/include/pagemap.h
PE_PARENT = 1 << 0
PE_LAZY = 1 << 1
PE_PRESENT = 1 << 2

# A pagemap entry older than the ``flags`` field (CRIU < 3.x) carries
# ``in_parent`` instead; absent both, the pages are in the pages file.
_DEFAULT_FLAGS = PE_PRESENT

# Protobuf wire types.
WT_VARINT = 0
WT_FIXED64 = 1
WT_LEN = 2
WT_FIXED32 = 5

# Entries are small (pagemap entries ~20 bytes, pstree a few hundred).  A
# size beyond this is a corrupt or foreign file; refuse it instead of
# allocating gigabytes.
MAX_ENTRY_SIZE = 64 << 20


class ImageError(ValueError):
    """A CRIU image is truncated, corrupt, or not the type expected."""


# ---------------------------------------------------------------------------
# Minimal protobuf wire-format decoder
# ---------------------------------------------------------------------------

def decode_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``buf[pos:]``; return (value, next pos).

    At most 10 bytes (64 bits); a longer run or a buffer ending mid-varint is
    an :class:`ImageError`.  Negative int32/int64 are encoded as 10-byte
    two's complement; we return the unsigned 64-bit value, callers that need
    signed use :func:`to_signed64`.
    """
    result = 0
    shift = 0
    end = len(buf)
    for i in range(10):
        if pos >= end:
            raise ImageError("truncated varint")
        b = buf[pos]
        pos += 1
        if i == 9 and b > 1:
            # The 10th byte may only contribute bit 63.
            raise ImageError("varint overflows 64 bits")
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    raise ImageError("varint longer than 10 bytes")


def to_signed64(v: int) -> int:
    """Two's complement view of an unsigned 64-bit varint value."""
    return v - (1 << 64) if v & (1 << 63) else v


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, value) for each field of a message.

    Value: int for varint/fixed32/fixed64, memoryview for length-delimited
    (a submessage, string, bytes or packed repeated field: the caller knows
    which).  Groups (wire types 3/4, deprecated) are rejected.
    """
    mv = memoryview(buf)
    pos = 0
    end = len(mv)
    while pos < end:
        key, pos = decode_varint(mv, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise ImageError("field number 0")
        if wt == WT_VARINT:
            val, pos = decode_varint(mv, pos)
        elif wt == WT_FIXED64:
            if pos + 8 > end:
                raise ImageError("truncated fixed64")
            val = int.from_bytes(mv[pos:pos + 8], "little")
            pos += 8
        elif wt == WT_FIXED32:
            if pos + 4 > end:
                raise ImageError("truncated fixed32")
            val = int.from_bytes(mv[pos:pos + 4], "little")
            pos += 4
        elif wt == WT_LEN:
            n, pos = decode_varint(mv, pos)
            if pos + n > end:
                raise ImageError("truncated length-delimited field")
            val = mv[pos:pos + n]
            pos += n
        else:
            raise ImageError(f"unsupported wire type {wt} (field {num})")
        yield num, wt, val


def _packed_varints(mv: memoryview) -> list[int]:
    out = []
    pos = 0
    while pos < len(mv):
        v, pos = decode_varint(mv, pos)
        out.append(v)
    return out


def _repeated_uint(wt: int, val: Any) -> list[int]:
    # proto2 ``repeated uint32`` is unpacked by default (one varint field per
    # element) but a reader must accept the packed form too.
    if wt == WT_LEN:
        return _packed_varints(val)
    if wt == WT_VARINT:
        return [val]
    raise ImageError(f"repeated integer field with wire type {wt}")


def _uint(wt: int, val: Any, name: str) -> int:
    if wt not in (WT_VARINT, WT_FIXED32, WT_FIXED64):
        raise ImageError(f"{name}: wire type {wt} where an integer was expected")
    return val


# ---------------------------------------------------------------------------
# Image files
# ---------------------------------------------------------------------------

def read_header(data: bytes | memoryview, expect: int | None = None) -> tuple[int, int]:
    """Parse an image's magic header; return (type magic, header length).

    ``IMG_COMMON_MAGIC``/``IMG_SERVICE_MAGIC`` then the type magic (8 bytes),
    or the type magic alone (inventory, and images from CRIU < 1.1).
    """
    if len(data) < 4:
        raise ImageError("image shorter than its magic")
    (m0,) = struct.unpack_from("<I", data, 0)
    if m0 in (IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC):
        if len(data) < 8:
            raise ImageError("image truncated after the common magic")
        (magic,) = struct.unpack_from("<I", data, 4)
        hlen = 8
    else:
        magic, hlen = m0, 4
    if expect is not None and magic != expect:
        raise ImageError(f"magic {magic:#010x}, expected {expect:#010x}")
    return magic, hlen


def iter_entries(data: bytes | memoryview, expect: int | None = None) -> Iterator[memoryview]:
    """Yield each entry's protobuf bytes of an image held in ``data``."""
    mv = memoryview(data)
    _magic, pos = read_header(mv, expect)
    end = len(mv)
    while pos < end:
        if pos + 4 > end:
            raise ImageError(f"truncated entry size at offset {pos}")
        (n,) = struct.unpack_from("<I", mv, pos)
        pos += 4
        if n > MAX_ENTRY_SIZE:
            raise ImageError(f"entry of {n} bytes at offset {pos - 4}: corrupt image")
        if pos + n > end:
            raise ImageError(f"entry at offset {pos - 4} truncated ({end - pos} of {n} bytes)")
        yield mv[pos:pos + n]
        pos += n


def read_image(path: str, expect: int | None = None) -> list[memoryview]:
    """All entries of the image file at ``path``."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return list(iter_entries(data, expect))
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------

@dataclass
class PstreeEntry:
    """images/pstree.proto ``pstree_entry``; pids are namespace pids."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    threads: list[int] = field(default_factory=list)


def decode_pstree_entry(buf: bytes | memoryview) -> PstreeEntry:
    vals: dict[int, int] = {}
    threads: list[int] = []
    for num, wt, val in iter_fields(buf):
        if num == 5:
            threads.extend(_repeated_uint(wt, val))
        elif num in (1, 2, 3, 4):
            vals[num] = _uint(wt, val, "pstree_entry")
    missing = [n for n in (1, 2, 3, 4) if n not in vals]
    if missing:
        raise ImageError(f"pstree_entry lacks required field(s) {missing}")
    return PstreeEntry(vals[1], vals[2], vals[3], vals[4], threads)


def decode_pagemap_head(buf: bytes | memoryview) -> int:
    """``pagemap_head`` -> pages_id."""
    for num, wt, val in iter_fields(buf):
        if num == 1:
            return _uint(wt, val, "pagemap_head")
    raise ImageError("pagemap_head lacks pages_id")


@dataclass
class PagemapEntry:
    """images/pagemap.proto ``pagemap_entry``."""

    vaddr: int
    nr_pages: int
    flags: int

    @property
    def present(self) -> bool:
        return bool(self.flags & PE_PRESENT)


def decode_pagemap_entry(buf: bytes | memoryview) -> PagemapEntry:
    vaddr = compat_nr = nr = flags = None
    in_parent = False
    for num, wt, val in iter_fields(buf):
        if num == 1:
            vaddr = _uint(wt, val, "pagemap_entry.vaddr")
        elif num == 2:
            compat_nr = _uint(wt, val, "pagemap_entry.compat_nr_pages")
        elif num == 3:
            in_parent = bool(_uint(wt, val, "pagemap_entry.in_parent"))
        elif num == 4:
            flags = _uint(wt, val, "pagemap_entry.flags")
        elif num == 5:
            nr = _uint(wt, val, "pagemap_entry.nr_pages")
    if vaddr is None:
        raise ImageError("pagemap_entry lacks vaddr")
    # CRIU >= 3.16 writes the u64 nr_pages (field 5); the u32 compat field
    # stays "required" in the .proto but pagemap.c reads it only when 5 is
    # absent.  Do the same.
    if nr is None:
        nr = compat_nr
    if nr is None:
        raise ImageError("pagemap_entry lacks nr_pages")
    if flags is None:
        # Pre-flags images: in_parent said "not in this dump".
        flags = PE_PARENT if in_parent else _DEFAULT_FLAGS
    if vaddr % PAGE_SIZE:
        raise ImageError(f"pagemap_entry vaddr {vaddr:#x} not page aligned")
    return PagemapEntry(vaddr, nr, flags)


@dataclass
class Inventory:
    """The bits of ``inventory_entry`` we may care about."""

    img_version: int
    dump_uptime: int | None = None
    pre_dump_mode: int | None = None
    tcp_close: bool | None = None


def decode_inventory(buf: bytes | memoryview) -> Inventory:
    inv = Inventory(img_version=-1)
    for num, wt, val in iter_fields(buf):
        if num == 1:
            inv.img_version = _uint(wt, val, "inventory.img_version")
        elif num == 8:
            inv.dump_uptime = _uint(wt, val, "inventory.dump_uptime")
        elif num == 9:
            inv.pre_dump_mode = _uint(wt, val, "inventory.pre_dump_mode")
        elif num == 10:
            inv.tcp_close = bool(_uint(wt, val, "inventory.tcp_close"))
    if inv.img_version < 0:
        raise ImageError("inventory_entry lacks img_version")
    return inv


# images/stats.proto: stats_entry {dump = 1, restore = 2}; CRIU writes times in
# microseconds. Field number -> (our name, divisor to seconds or None for a count).
_DUMP_STATS = {1: ("freezing_s", 1e6), 2: ("frozen_s", 1e6), 3: ("memdump_s", 1e6), 4: ("memwrite_s", 1e6),
               5: ("pages_scanned", None), 6: ("pages_skipped_parent", None), 7: ("pages_written", None),
               8: ("irmap_resolve_s", 1e6), 9: ("pages_lazy", None)}
_RESTORE_STATS = {1: ("pages_compared", None), 2: ("pages_skipped_cow", None), 3: ("forking_s", 1e6),
                  4: ("restore_s", 1e6), 5: ("pages_restored", None)}


def decode_stats(buf: bytes | memoryview) -> dict:
    """``stats_entry`` -> ``{"dump": {...}, "restore": {...}}`` (whichever is present), times in seconds.

    CRIU's own account of a dump (freezing, frozen, memdump, memwrite) or a
    restore (forking, restore): what the migration report sets against the
    Docker calls around them. Unknown fields are skipped (newer CRIU).
    """
    out: dict = {}
    for num, wt, val in iter_fields(buf):
        table = {1: ("dump", _DUMP_STATS), 2: ("restore", _RESTORE_STATS)}.get(num)
        if table is None:
            continue
        if wt != WT_LEN:
            raise ImageError(f"stats_entry field {num}: wire type {wt} where a message was expected")
        part = out.setdefault(table[0], {})
        for sub, swt, sval in iter_fields(val):
            if sub in table[1]:
                name, div = table[1][sub]
                v = _uint(swt, sval, f"stats_entry.{table[0]}.{name}")
                part[name] = round(v / div, 6) if div else v
    return out


def read_stats(path: str) -> dict:
    """Decode a ``stats-dump`` or ``stats-restore`` file (see :func:`decode_stats`)."""
    entries = read_image(path, STATS_MAGIC)
    if not entries:
        raise ImageError(f"{path} has no entry")
    return decode_stats(entries[0])


# ---------------------------------------------------------------------------
# Dump-directory level
# ---------------------------------------------------------------------------

def read_pstree(dump_dir: str) -> list[PstreeEntry]:
    return [decode_pstree_entry(e) for e in read_image(os.path.join(dump_dir, "pstree.img"), PSTREE_MAGIC)]


def read_inventory(dump_dir: str) -> Inventory:
    entries = read_image(os.path.join(dump_dir, "inventory.img"), INVENTORY_MAGIC)
    if not entries:
        raise ImageError("inventory.img has no entry")
    return decode_inventory(entries[0])


def read_pagemap(path: str) -> tuple[int, list[PagemapEntry]]:
    """(pages_id, entries) of one ``pagemap-*.img``."""
    entries = read_image(path, PAGEMAP_MAGIC)
    if not entries:
        raise ImageError(f"{path}: no pagemap_head")
    try:
        pages_id = decode_pagemap_head(entries[0])
        pes = [decode_pagemap_entry(e) for e in entries[1:]]
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from None
    return pages_id, pes


_PAGEMAP_RE = re.compile(r"^pagemap-(shmem-)?(\d+)\.img$")


def pagemap_files(dump_dir: str) -> list[tuple[bool, int, str]]:
    """(is_shmem, id, path) for each pagemap image, task pagemaps first.

    For task pagemaps ``id`` is the namespace pid; for shmem ones the shmid
    (the inode of the shared memory object)."""
    out = []
    for name in os.listdir(dump_dir):
        m = _PAGEMAP_RE.match(name)
        if m:
            out.append((bool(m.group(1)), int(m.group(2)), os.path.join(dump_dir, name)))
    out.sort()
    return out


def iter_page_locations(dump_dir: str) -> Iterator[tuple[int, int, str, int]]:
    """Yield (pid, vaddr, pages_file, offset) for every page stored in the dump.

    ``pid`` is the namespace pid (-1 for shmem pagemaps, whose vaddr is an
    offset in the shared object).  One tuple per 4 KiB page: fine for tests
    and tools; the stream should use :func:`page_index`, which is vectorised.
    """
    for is_shmem, ident, path in pagemap_files(dump_dir):
        pages_id, pes = read_pagemap(path)
        pages_file = os.path.join(dump_dir, f"pages-{pages_id}.img")
        off = 0
        pid = -1 if is_shmem else ident
        for pe in pes:
            if not pe.present:
                continue
            for i in range(pe.nr_pages):
                yield pid, pe.vaddr + i * PAGE_SIZE, pages_file, off
                off += PAGE_SIZE


@dataclass
class PagesFile:
    """Where each page of one ``pages-<id>.img`` comes from.

    Page ``i`` of the file (bytes ``i*4096 .. (i+1)*4096``) is the page at
    ``vaddr[i]`` of namespace pid ``pid`` (or, if ``shmid`` is set, at
    offset ``vaddr[i]`` of that shared memory object)."""

    pages_id: int
    path: str
    pid: int
    shmid: int | None
    vaddr: np.ndarray  # uint64, one per page, file order
    lazy: np.ndarray  # bool, the entry had PE_LAZY (private anonymous memory)


def _expand(pes: list[PagemapEntry]) -> tuple[np.ndarray, np.ndarray]:
    present = [pe for pe in pes if pe.present]
    if not present:
        return np.zeros(0, np.uint64), np.zeros(0, bool)
    starts = np.fromiter((pe.vaddr for pe in present), np.uint64, len(present))
    counts = np.fromiter((pe.nr_pages for pe in present), np.int64, len(present))
    lazy_e = np.fromiter((bool(pe.flags & PE_LAZY) for pe in present), bool, len(present))
    total = int(counts.sum())
    # Per page: its entry's start + PAGE_SIZE * (index within the entry).
    first = np.repeat(np.cumsum(counts) - counts, counts)
    within = np.arange(total, dtype=np.int64) - first
    vaddr = np.repeat(starts, counts) + (within.astype(np.uint64) * np.uint64(PAGE_SIZE))
    return vaddr, np.repeat(lazy_e, counts)


def page_index(dump_dir: str, check_sizes: bool = True) -> list[PagesFile]:
    """Map every page of every ``pages-*.img`` of a dump to (pid, vaddr).

    With ``check_sizes`` (default) each pages file must hold exactly the
    pages its pagemap lists: a mismatch means the dump is incomplete or we
    misread it, and sending pages under wrong addresses would corrupt the
    restored process, so it is an :class:`ImageError`.
    """
    out = []
    for is_shmem, ident, path in pagemap_files(dump_dir):
        pages_id, pes = read_pagemap(path)
        pages_path = os.path.join(dump_dir, f"pages-{pages_id}.img")
        vaddr, lazy = _expand(pes)
        if check_sizes:
            try:
                size = os.path.getsize(pages_path)
            except FileNotFoundError:
                size = 0
            if size != len(vaddr) * PAGE_SIZE:
                raise ImageError(
                    f"{pages_path}: {size} bytes, pagemap {os.path.basename(path)} lists "
                    f"{len(vaddr)} present pages ({len(vaddr) * PAGE_SIZE} bytes)")
        out.append(PagesFile(pages_id, pages_path, -1 if is_shmem else ident,
                             ident if is_shmem else None, vaddr, lazy))
    return out
