# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hypothesis strategies for data shaped like process memory (the codec and WKdm tests share them)."""
from __future__ import annotations

import struct

from hypothesis import strategies as st

# 32-bit words as memory holds them: zeros, small integers, anything, pointers into a few
# regions, and near-pointers sharing their upper bits (what WKdm's dictionary catches).
word = st.one_of(
    st.just(0),
    st.integers(0, 1023),
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from([0x55D0_1000, 0x55D0_13F8, 0x7FFF_0010, 0x7FFF_03A0, 0xDEADBEEF]),
    st.integers(0, 0x3FF).map(lambda lo: 0x7F3A_0000 | lo),
)


def page_like(max_words: int, max_zero_pages: int) -> st.SearchStrategy[bytes]:
    """Up to ``max_zero_pages`` zero pages, then up to ``max_words`` memory-like words, then 0-3 stray bytes."""
    return st.tuples(
        st.lists(word, max_size=max_words),
        st.binary(max_size=3),
        st.integers(0, max_zero_pages),
    ).map(lambda t: bytes(4096 * t[2]) + struct.pack("<%dI" % len(t[0]), *t[0]) + t[1])
