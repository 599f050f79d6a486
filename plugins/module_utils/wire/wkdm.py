# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Vectorised (NumPy) WKdm word compressor for 4 KiB memory pages.

WKdm (Wilson & Kaplan, "The case for compressed caching in virtual memory
systems", 1999) reads a page as 32-bit words and keeps a 16-entry
direct-mapped dictionary of recently seen words, indexed by a hash of the
word's high 22 bits.  Every word gets a 2-bit tag:

* ``ZERO``    (0): the word is 0; nothing else is stored, the dictionary is
  not touched;
* ``EXACT``   (3): the dictionary slot holds exactly this word; the 4-bit slot
  index is stored;
* ``PARTIAL`` (1): the slot holds a word with the same high 22 bits; the
  4-bit index and the 10 low bits are stored; the slot is updated;
* ``MISS``    (2): anything else; the full 32-bit word is stored, the slot is
  updated.

(Tag values are the ones of the reference implementation.)  The dictionary
starts all-zero at every 4 KiB page boundary, so pages stay independent as in
the original, and small integers (< 1024) can partially match the initial
zero entry.

Why it vectorises exactly: the slot of a word depends only on its own high
bits, and every non-zero word writes itself into its slot (an exact match
rewrites the same value).  So the dictionary entry a word is compared with is
simply "the previous non-zero word of the same page that hashed to the same
slot" (or 0 if there is none).  A *stable* sort by ``(page, slot)`` puts those
words next to each other, and the comparison becomes ``words[order][i]`` vs
``words[order][i - 1]`` inside each group.  This is the real WKdm semantics,
not an approximation.  The keys are at most 16 bits wide, so NumPy uses its
O(n) radix sort.

Decoding: misses carry their full word (hence their slot); exact and partial
words carry their slot index.  So the decoder knows every word's slot, can
rebuild the same stable order, and then inside each group:

* a partial word's high bits are those of the latest earlier MISS in the
  group (partials and exacts never change the high bits of a slot), found in
  one pass with ``np.maximum.accumulate`` over "index of last miss";
* an exact word equals the latest earlier MISS-or-PARTIAL word in the group,
  found the same way once partials are decoded.

So decoding takes a constant number of vectorised passes, independent of the
length of match chains.

Extensions over the original (both are cheap and invertible):

* all-zero pages are elided through a page bitmap (the original would spend
  256 bytes of ZERO tags on them; zram/zswap/macOS also special-case
  same-filled pages);
* arbitrary lengths: the last page may be short, and 1-3 trailing bytes that
  do not form a word are stored raw.

Stream layout (all little-endian), for ``raw_len`` bytes of input::

    u8   version (1)
    bitmap   ceil(n_pages / 8) bytes, bit set = page is all zero (LSB first)
    tags     2 bits per word of the non-zero pages, 4 per byte, LSB first
    indices  4 bits per EXACT/PARTIAL word, 2 per byte, low nibble first
    lows     10 bits per PARTIAL word, 3 per u32 (bits 0-9, 10-19, 20-29)
    words    u32 per MISS word
    tail     raw_len % 4 raw bytes

``raw_len`` is not in the stream: it travels in the chunk header.  Every
section's length is implied by ``raw_len`` and the tags; the decoder checks
that the stream has exactly that length and raises :class:`WKdmError`
otherwise.

Words are read little-endian regardless of the host, so a stream decodes the
same on any machine.
"""
from __future__ import annotations

from ansible_collections.edgemig.migration.plugins.module_utils.wire.page_arrays import (
    NUMPY_IMPORT_ERROR,
    PAGE_SIZE,
    np,
)

VERSION = 1
WORDS_PER_PAGE = PAGE_SIZE // 4
# Keys are (page << 4 | slot) in uint16 so that the stable sort is a radix
# sort; 4096 pages (16 MiB) per block keeps them below 2**16.
_PAGES_PER_BLOCK = 4096

TAG_ZERO = 0
TAG_PARTIAL = 1
TAG_MISS = 2
TAG_EXACT = 3

_LOW_BITS = 10
_LOW_MASK = (1 << _LOW_BITS) - 1
_HIGH_MASK = 0xFFFFFFFF ^ _LOW_MASK
# Fibonacci hashing of the high 22 bits; the top 4 bits of the product are
# well mixed, unlike the plain low bits of the high part.
_HASH_MULT = 0x9E3779B1


class WKdmError(ValueError):
    """Raised on malformed or truncated WKdm streams (and missing NumPy)."""


def _need_numpy() -> None:
    if np is None:
        raise WKdmError("the wkdm codec needs numpy, which failed to import: %s" % NUMPY_IMPORT_ERROR)


def _slots(words):
    """Dictionary slot (0..15) of each word, from its high 22 bits only."""
    hi = words >> np.uint32(_LOW_BITS)
    return ((hi * np.uint32(_HASH_MULT)) >> np.uint32(28)).astype(np.uint16)


def _group_order(page_of_word, slots):
    """Stable order of the non-zero words by (page, slot) plus group starts.

    Returns ``(order, first)``: ``first[i]`` is true when sorted element ``i``
    starts a new (page, slot) group.  ``page_of_word`` is non-decreasing, so
    blocks of ``_PAGES_PER_BLOCK`` pages are contiguous and are sorted
    separately with 16-bit keys (radix sort).
    """
    n = slots.shape[0]
    first = np.ones(n, dtype=bool)
    if n == 0:
        return np.zeros(0, dtype=np.intp), first
    last_page = int(page_of_word[-1])
    if last_page < _PAGES_PER_BLOCK:
        keys = (page_of_word.astype(np.uint16) << np.uint16(4)) | slots
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        np.not_equal(sk[1:], sk[:-1], out=first[1:])
        return order, first
    parts = []
    edges = np.arange(last_page // _PAGES_PER_BLOCK + 2, dtype=np.int64) * _PAGES_PER_BLOCK
    bounds = np.searchsorted(page_of_word, edges)
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if hi <= lo:
            continue
        local = (page_of_word[lo:hi] % _PAGES_PER_BLOCK).astype(np.uint16)
        keys = (local << np.uint16(4)) | slots[lo:hi]
        o = np.argsort(keys, kind="stable")
        sk = keys[o]
        np.not_equal(sk[1:], sk[:-1], out=first[lo + 1:hi])  # first[lo] stays True
        parts.append(o + lo)
    return np.concatenate(parts), first


def _latest(flag):
    """For each i, the largest j <= i with flag[j] (flag[0] must be true).

    ``cumsum`` + gather is several times faster than
    ``np.maximum.accumulate`` over an index array.
    """
    return np.flatnonzero(flag)[np.cumsum(flag, dtype=np.intp) - 1]


def _pack_bits(values, bits: int) -> bytes:
    """Pack small unsigned ints (2 or 4 bits) LSB-first into bytes."""
    per = 8 // bits
    n = values.shape[0]
    pad = (-n) % per
    v = values.astype(np.uint8)
    if pad:
        v = np.concatenate([v, np.zeros(pad, dtype=np.uint8)])
    v = v.reshape(-1, per)
    out = v[:, 0].copy()
    for k in range(1, per):
        out |= v[:, k] << np.uint8(bits * k)
    return out.tobytes()


def _unpack_bits(buf, n: int, bits: int):
    per = 8 // bits
    b = np.frombuffer(buf, dtype=np.uint8)
    mask = np.uint8((1 << bits) - 1)
    out = np.empty((b.shape[0], per), dtype=np.uint8)
    for k in range(per):
        out[:, k] = (b >> np.uint8(bits * k)) & mask
    return out.reshape(-1)[:n]


def _pack_lows(lows) -> bytes:
    n = lows.shape[0]
    pad = (-n) % 3
    v = lows.astype(np.uint32)
    if pad:
        v = np.concatenate([v, np.zeros(pad, dtype=np.uint32)])
    v = v.reshape(-1, 3)
    packed = v[:, 0] | (v[:, 1] << np.uint32(10)) | (v[:, 2] << np.uint32(20))
    return packed.astype("<u4").tobytes()


def _unpack_lows(buf, n: int):
    p = np.frombuffer(buf, dtype="<u4").astype(np.uint32)
    m = np.uint32(_LOW_MASK)
    out = np.empty((p.shape[0], 3), dtype=np.uint32)
    out[:, 0] = p & m
    out[:, 1] = (p >> np.uint32(10)) & m
    out[:, 2] = (p >> np.uint32(20)) & m
    return out.reshape(-1)[:n]


def compress(data) -> bytes:
    """Compress any bytes-like object (any length) into a WKdm stream."""
    _need_numpy()
    mv = memoryview(data).cast("B")
    raw_len = mv.nbytes
    n_words = raw_len // 4
    tail = bytes(mv[n_words * 4:])
    words = np.frombuffer(mv, dtype="<u4", count=n_words).astype(np.uint32, copy=False)

    n_pages = -(-n_words // WORDS_PER_PAGE)
    full_pages = n_words // WORDS_PER_PAGE
    zero_page = np.zeros(n_pages, dtype=bool)
    if full_pages:
        # Only whole pages are elided; a short last page goes through tags.
        zero_page[:full_pages] = ~words[: full_pages * WORDS_PER_PAGE].reshape(full_pages, WORDS_PER_PAGE).any(axis=1)
    bitmap = np.packbits(zero_page, bitorder="little").tobytes()

    if zero_page.any():
        keep = np.repeat(~zero_page, WORDS_PER_PAGE)[:n_words]
        words = words[keep]
    n = words.shape[0]

    tags = np.zeros(n, dtype=np.uint8)
    nz_pos = np.flatnonzero(words)
    wn = words[nz_pos]
    slots = _slots(wn)
    page = (nz_pos >> 10).astype(np.int64)
    order, first = _group_order(page, slots)

    sw = wn[order]
    prev = np.empty_like(sw)
    if sw.shape[0]:
        prev[1:] = sw[:-1]
    prev[first] = 0  # the dictionary starts all-zero on every page
    exact = sw == prev
    partial = ~exact & (((sw ^ prev) >> np.uint32(_LOW_BITS)) == 0)
    stag = np.where(exact, np.uint8(TAG_EXACT), np.where(partial, np.uint8(TAG_PARTIAL), np.uint8(TAG_MISS)))
    tag_n = np.empty_like(stag)
    tag_n[order] = stag
    tags[nz_pos] = tag_n

    has_index = (tag_n == TAG_EXACT) | (tag_n == TAG_PARTIAL)
    indices = slots[has_index]
    lows = wn[tag_n == TAG_PARTIAL] & np.uint32(_LOW_MASK)
    full = wn[tag_n == TAG_MISS]

    return b"".join((
        bytes((VERSION,)),
        bitmap,
        _pack_bits(tags, 2),
        _pack_bits(indices, 4),
        _pack_lows(lows),
        full.astype("<u4").tobytes(),
        tail,
    ))


def decompress(data, raw_len: int) -> bytes:
    """Invert :func:`compress`; ``raw_len`` is the original length."""
    _need_numpy()
    if raw_len < 0:
        raise WKdmError("negative raw length %d" % raw_len)
    mv = memoryview(data).cast("B")
    total = mv.nbytes
    try:
        return _decompress(mv, total, raw_len)
    except WKdmError:
        raise
    except (ValueError, IndexError, TypeError) as exc:
        # Any inconsistency NumPy trips over is a corrupt stream, never a crash.
        raise WKdmError("corrupt wkdm stream: %s" % exc) from exc


def _take(mv, pos: int, size: int, total: int, what: str):
    end = pos + size
    if end > total:
        raise WKdmError("truncated wkdm stream: %s needs %d bytes at offset %d, stream has %d" % (what, size, pos, total))
    return mv[pos:end], end


def _decompress(mv, total: int, raw_len: int) -> bytes:
    if total < 1 or mv[0] != VERSION:
        raise WKdmError("not a wkdm v%d stream" % VERSION)
    pos = 1
    n_words = raw_len // 4
    n_tail = raw_len - n_words * 4
    n_pages = -(-n_words // WORDS_PER_PAGE)

    buf, pos = _take(mv, pos, (n_pages + 7) // 8, total, "page bitmap")
    zero_page = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), count=n_pages, bitorder="little").astype(bool)
    if n_pages and n_words % WORDS_PER_PAGE and zero_page[-1]:
        raise WKdmError("corrupt wkdm stream: short last page marked all-zero")
    n = n_words - int(zero_page.sum()) * WORDS_PER_PAGE

    buf, pos = _take(mv, pos, (n + 3) // 4, total, "tags")
    tags = _unpack_bits(buf, n, 2)
    n_partial = int(np.count_nonzero(tags == TAG_PARTIAL))
    n_exact = int(np.count_nonzero(tags == TAG_EXACT))
    n_miss = int(np.count_nonzero(tags == TAG_MISS))
    n_idx = n_partial + n_exact

    buf, pos = _take(mv, pos, (n_idx + 1) // 2, total, "indices")
    indices = _unpack_bits(buf, n_idx, 4).astype(np.uint16)
    buf, pos = _take(mv, pos, -(-n_partial // 3) * 4, total, "low bits")
    lows = _unpack_lows(buf, n_partial)
    buf, pos = _take(mv, pos, n_miss * 4, total, "full words")
    full = np.frombuffer(buf, dtype="<u4").astype(np.uint32)
    tail, pos = _take(mv, pos, n_tail, total, "tail")
    if pos != total:
        raise WKdmError("corrupt wkdm stream: %d trailing bytes" % (total - pos))

    nz_pos = np.flatnonzero(tags)
    tag_n = tags[nz_pos]
    is_miss = tag_n == TAG_MISS
    has_index = ~is_miss
    vals = np.zeros(nz_pos.shape[0], dtype=np.uint32)
    vals[is_miss] = full
    slots = np.empty(nz_pos.shape[0], dtype=np.uint16)
    slots[is_miss] = _slots(full)
    slots[has_index] = indices
    lows_n = np.zeros(nz_pos.shape[0], dtype=np.uint32)
    lows_n[tag_n == TAG_PARTIAL] = lows

    page = (nz_pos >> 10).astype(np.int64)
    order, first = _group_order(page, slots)
    st = tag_n[order]
    sv = vals[order]
    sl = lows_n[order]
    if st.shape[0]:
        # Group starts act as a virtual MISS holding the initial dictionary
        # value 0: a non-miss word's own entry in ``sv`` is still 0 here.
        # High bits of a slot only change on a MISS, so a partial word takes
        # them from the latest miss of its group.
        is_miss_s = st == TAG_MISS
        hi = sv[_latest(is_miss_s | first)] & np.uint32(_HIGH_MASK)
        # Whole-array np.where beats boolean-mask assignment here.
        sv = np.where(st == TAG_PARTIAL, hi | sl, sv)
        # An exact match repeats the latest miss-or-partial word of its group.
        is_exact = st == TAG_EXACT
        sv = np.where(is_exact, sv[_latest(~is_exact | first)], sv)

    words = np.zeros(n, dtype=np.uint32)
    val_n = np.empty_like(sv)
    val_n[order] = sv
    words[nz_pos] = val_n

    if n != n_words:
        outw = np.zeros(n_words, dtype=np.uint32)
        keep = np.repeat(~zero_page, WORDS_PER_PAGE)[:n_words]
        outw[keep] = words
        words = outw
    return words.astype("<u4", copy=False).tobytes() + bytes(tail)
