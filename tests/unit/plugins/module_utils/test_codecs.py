# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st
from page_strategies import page_like as memory_like

from ansible_collections.edgemig.migration.plugins.module_utils.wire import codecs

# Strategies: random, zero-heavy and page-like data (test_wkdm.py has the same).

random_bytes = st.binary(max_size=20000)

# Runs of zeros interleaved with random runs, like sparse heaps.
zero_heavy = st.lists(
    st.one_of(st.integers(0, 9000).map(bytes), st.binary(max_size=300)),
    max_size=12,
).map(b"".join)

# Words typical of memory: 0, small integers, pointers sharing high bits,
# repeated values; sometimes a 1-3 byte tail.
page_like = memory_like(max_words=3000, max_zero_pages=3)

any_data = st.one_of(random_bytes, zero_heavy, page_like)

ALL = [("none", 0), ("wkdm", 0)] + [("lz4", lv) for lv in range(1, 10)] + [("zstd", lv) for lv in range(-5, 20)]
QUICK = [("none", 0), ("wkdm", 0), ("lz4", 1), ("lz4", 2), ("lz4", 4), ("lz4", 9), ("zstd", -5), ("zstd", 1), ("zstd", 3), ("zstd", 9)]


def test_codec_ids():
    assert codecs.CODECS == {"none": 0, "lz4": 1, "zstd": 2, "wkdm": 3}
    assert all(v is None for v in codecs.available().values())


@pytest.mark.parametrize("codec,level", ALL)
def test_every_level_round_trips(codec, level):
    data = os.urandom(3000) + bytes(9000) + b"abc" * 2000 + b"\x01"
    comp = codecs.compress(codec, level, data)
    assert codecs.decompress(codec, level, comp, len(data)) == data


@pytest.mark.parametrize("codec,level", QUICK)
@settings(max_examples=60, deadline=None)
@given(data=any_data)
def test_round_trip(codec, level, data):
    comp = codecs.compress(codec, level, data)
    assert isinstance(comp, bytes)
    assert codecs.decompress(codec, level, comp, len(data)) == data


@pytest.mark.parametrize("codec,level", QUICK)
def test_memoryview_and_bytearray_input(codec, level):
    data = bytearray(b"xyz" * 5000)
    assert codecs.decompress(codec, level, codecs.compress(codec, level, memoryview(data)), len(data)) == data
    assert codecs.decompress(codec, level, codecs.compress(codec, level, data), len(data)) == data


def test_compression_actually_compresses():
    data = bytes(8192) + b"hello world " * 1000
    for codec, level in QUICK[1:]:
        assert len(codecs.compress(codec, level, data)) < len(data) // 4, (codec, level)


@pytest.mark.parametrize("codec,level", [
    ("lz4", 0), ("lz4", 10), ("lz4", -1), ("zstd", -6), ("zstd", 20), ("zstd", 22),
    ("none", 1), ("wkdm", 4), ("gzip", 1), ("lz4", "3"), ("lz4", 3.0), ("lz4", True),
])
def test_bad_levels_rejected(codec, level):
    with pytest.raises(codecs.CodecError):
        codecs.compress(codec, level, b"data")
    with pytest.raises(codecs.CodecError):
        codecs.decompress(codec, level, b"data", 4)


def test_level_error_messages_are_clear():
    with pytest.raises(codecs.CodecError, match=r"1\.\.9"):
        codecs.validate("lz4", 12)
    with pytest.raises(codecs.CodecError, match=r"-5\.\.19"):
        codecs.validate("zstd", 25)
    with pytest.raises(codecs.CodecError, match="unknown codec"):
        codecs.validate("brotli", 1)
    with pytest.raises(codecs.CodecError, match="level 0 only"):
        codecs.validate("wkdm", 1)


@pytest.mark.parametrize("codec,level", QUICK)
def test_empty(codec, level):
    assert codecs.compress(codec, level, b"") == b""
    assert codecs.decompress(codec, level, b"", 0) == b""
    with pytest.raises(codecs.CodecError):
        codecs.decompress(codec, level, b"x", 0)


@pytest.mark.parametrize("codec,level", QUICK)
def test_wrong_raw_len_raises(codec, level):
    data = b"some data that compresses, some data that compresses " * 50 + os.urandom(100)
    comp = codecs.compress(codec, level, data)
    for raw_len in (len(data) - 1, len(data) + 1, len(data) * 2):
        with pytest.raises(codecs.CodecError):
            codecs.decompress(codec, level, comp, raw_len)
    with pytest.raises(codecs.CodecError):
        codecs.decompress(codec, level, comp, -1)


@pytest.mark.parametrize("codec,level", [c for c in QUICK if c[0] != "none"])
def test_truncated_raises(codec, level):
    data = os.urandom(2000) + bytes(6000) + b"pattern!" * 500
    comp = codecs.compress(codec, level, data)
    for cut in (0, 1, len(comp) // 2, len(comp) - 1):
        with pytest.raises(codecs.CodecError):
            codecs.decompress(codec, level, comp[:cut], len(data))


@pytest.mark.parametrize("codec,level", [c for c in QUICK if c[0] != "none"])
@settings(max_examples=80, deadline=None)
@given(data=st.one_of(random_bytes, zero_heavy, page_like), noise=st.binary(min_size=1, max_size=64), pos=st.integers(0, 1 << 30))
def test_corrupted_input_never_crashes(codec, level, data, noise, pos):
    """Garbage must give CodecError or *some* output of the right length, never another exception.

    (LZ4/zstd/WKdm carry no checksum: a flipped literal decodes to wrong
    bytes, which the stream's CRC32 catches.)"""
    if not data:
        return
    comp = bytearray(codecs.compress(codec, level, data))
    p = pos % len(comp)
    comp[p:p + len(noise)] = noise
    try:
        out = codecs.decompress(codec, level, bytes(comp), len(data))
    except codecs.CodecError:
        return
    assert len(out) == len(data)


def test_thread_pool_round_trip():
    from concurrent.futures import ThreadPoolExecutor
    chunks = [os.urandom(1000) + bytes(50000) + bytes([i]) * 3000 for i in range(24)]
    with ThreadPoolExecutor(4) as pool:
        for codec, level in QUICK:
            comps = list(pool.map(lambda c, codec=codec, level=level: codecs.compress(codec, level, c), chunks))
            outs = list(pool.map(lambda a, codec=codec, level=level: codecs.decompress(codec, level, a[0], len(a[1])),
                                 zip(comps, chunks)))
            assert outs == chunks
