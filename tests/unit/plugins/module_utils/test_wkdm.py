# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from page_strategies import page_like as memory_like

from ansible_collections.edgemig.migration.plugins.module_utils.wire import wkdm

page_like = memory_like(max_words=2500, max_zero_pages=2)


def reference_compress(data: bytes) -> bytes:
    """Plain sequential WKdm (one dictionary per 4 KiB page), same stream layout."""
    n_words = len(data) // 4
    words = list(struct.unpack("<%dI" % n_words, data[: n_words * 4]))
    n_pages = -(-n_words // 1024)
    zero_page = [False] * n_pages
    for p in range(n_words // 1024):
        zero_page[p] = not any(words[p * 1024:(p + 1) * 1024])
    tags, indices, lows, full = [], [], [], []
    for p in range(n_pages):
        if zero_page[p]:
            continue
        dictionary = [0] * 16
        for w in words[p * 1024:(p + 1) * 1024]:
            if w == 0:
                tags.append(wkdm.TAG_ZERO)
                continue
            slot = (((w >> 10) * wkdm._HASH_MULT) & 0xFFFFFFFF) >> 28
            d = dictionary[slot]
            if d == w:
                tags.append(wkdm.TAG_EXACT)
                indices.append(slot)
            elif d >> 10 == w >> 10:
                tags.append(wkdm.TAG_PARTIAL)
                indices.append(slot)
                lows.append(w & 0x3FF)
            else:
                tags.append(wkdm.TAG_MISS)
                full.append(w)
            dictionary[slot] = w
    return b"".join((
        bytes((wkdm.VERSION,)),
        np.packbits(np.array(zero_page, dtype=bool), bitorder="little").tobytes(),
        wkdm._pack_bits(np.array(tags, dtype=np.uint8), 2),
        wkdm._pack_bits(np.array(indices, dtype=np.uint8), 4),
        wkdm._pack_lows(np.array(lows, dtype=np.uint32)),
        struct.pack("<%dI" % len(full), *full),
        data[n_words * 4:],
    ))


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(page_like, st.binary(max_size=9000)))
def test_vectorised_encoder_equals_sequential_wkdm(data):
    assert wkdm.compress(data) == reference_compress(data)


@settings(max_examples=200, deadline=None)
@given(data=st.one_of(page_like, st.binary(max_size=9000)))
def test_round_trip(data):
    assert wkdm.decompress(wkdm.compress(data), len(data)) == data


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 4092, 4095, 4096, 4097, 4099, 8192, 12291, 65536 + 3])
def test_lengths(n):
    for data in (os.urandom(n), bytes(n), (b"\x01\x00\x00\x00" * (n // 4 + 1))[:n]):
        comp = wkdm.compress(data)
        assert wkdm.decompress(comp, n) == data


def test_more_pages_than_one_sort_block():
    # > 4096 pages takes the blocked-sort path; make groups straddle a block edge.
    rng = np.random.default_rng(1)
    words = rng.choice(np.array([0, 5, 0x7F3A_0001, 0x7F3A_0002, 0x1234_5678], dtype=np.uint32), size=(4100 * 1024 + 5))
    data = words.astype("<u4").tobytes() + b"\x09"
    assert wkdm.decompress(wkdm.compress(data), len(data)) == data


def test_compresses_zero_pages_and_pointer_heavy_pages():
    assert len(wkdm.compress(bytes(4096 * 64))) < 16
    ptrs = np.array([0x7F3A_0000 | (i * 8 & 0x3FF) for i in range(1024)], dtype="<u4").tobytes()
    # all partial matches but the first: 2 + 4 + 10 bits per word
    assert len(wkdm.compress(ptrs)) < 4096 * 0.53


def test_tags_cover_all_kinds():
    words = [0, 0x7F3A_0010, 0x7F3A_0010, 0x7F3A_0020, 0x1234_5678, 5]
    comp = wkdm.compress(struct.pack("<6I", *words))
    tags = wkdm._unpack_bits(comp[2:4], 6, 2).tolist()  # after version and 1-byte page bitmap
    assert tags == [wkdm.TAG_ZERO, wkdm.TAG_MISS, wkdm.TAG_EXACT, wkdm.TAG_PARTIAL, wkdm.TAG_MISS, wkdm.TAG_PARTIAL]


def test_errors():
    data = os.urandom(5000) + bytes(5000)
    comp = wkdm.compress(data)
    with pytest.raises(wkdm.WKdmError):
        wkdm.decompress(b"", len(data))
    with pytest.raises(wkdm.WKdmError):
        wkdm.decompress(b"\x02" + comp[1:], len(data))
    with pytest.raises(wkdm.WKdmError):
        wkdm.decompress(comp[:-1], len(data))
    with pytest.raises(wkdm.WKdmError):
        wkdm.decompress(comp + b"x", len(data))
    with pytest.raises(wkdm.WKdmError):
        wkdm.decompress(comp, len(data) + 4)
    with pytest.raises(wkdm.WKdmError):
        wkdm.decompress(comp, -1)


@settings(max_examples=150, deadline=None)
@given(data=page_like, noise=st.binary(min_size=1, max_size=16), pos=st.integers(0, 1 << 20), raw_delta=st.integers(-8, 8))
def test_garbage_never_crashes(data, noise, pos, raw_delta):
    comp = bytearray(wkdm.compress(data))
    if comp:
        p = pos % len(comp)
        comp[p:p + len(noise)] = noise
    raw_len = max(0, len(data) + raw_delta)
    try:
        out = wkdm.decompress(bytes(comp), raw_len)
    except wkdm.WKdmError:
        return
    assert len(out) == raw_len
