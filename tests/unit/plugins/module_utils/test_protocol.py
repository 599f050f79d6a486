# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The wire format on its own: pinned bytes, encode/decode round trips, the path rule."""
from __future__ import annotations

import io
import zlib

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.wire import codecs, protocol as P


def test_wire_bytes_are_pinned():
    """A change here changes the protocol: bump VERSION and say so in the changelog."""
    assert P.VERSION == 2 and P.BASE_VERSION == 1 and P.VERSIONS == (1, 2)
    assert (P.T_ROUND_END, P.P_WARM) == (7, 3)
    assert P.json_frame(P.T_HELLO, {"version": 1, "roots": ["layer"]}).hex() == (
        "454d4631010000001f7b2276657273696f6e223a312c22726f6f7473223a5b226c61796572225d7d")
    assert P.chunk_frame(7, 4096, "lz4", 3, 8192, 0xDEADBEEF, b"xyz", 4096, b"\x00\x01").hex() == (
        "454d46310300000028000000070000000000001000010301000020000000000300001000deadbeef"
        "00000002000178797a")
    assert P.frame(P.T_PROBE, b"ab").hex() == "454d463106000000026162"


def test_codec_ids_come_from_codecs():
    assert P.CODEC_NAMES is codecs.CODEC_NAMES


def test_chunk_round_trip():
    raw = b"A" * 4096 + b"B" * 100
    wire = P.chunk_frame(3, 8192, "none", 0, len(raw), zlib.crc32(raw), raw, len(raw))
    ftype, payload = P.FrameReader(io.BytesIO(wire).read).next()
    assert ftype == P.T_CHUNK
    ch = P.parse_chunk(payload)
    assert (ch["id"], ch["offset"], ch["codec"], ch["level"], ch["raw_len"]) == (3, 8192, "none", 0, len(raw))
    assert ch["crc"] == zlib.crc32(raw) and ch["data"] == raw and ch["pagemap"] == b""


def test_chunk_with_page_map_round_trip():
    pagemap = bytes([P.P_ZERO, P.P_LITERAL])
    wire = P.chunk_frame(0, 0, "none", 0, 2 * P.PAGE, 1, b"L" * P.PAGE, P.PAGE, pagemap)
    ch = P.parse_chunk(P.FrameReader(io.BytesIO(wire).read).next()[1])
    assert ch["pagemap"] == pagemap and ch["literal_len"] == P.PAGE


def test_parse_chunk_refuses_unknown_codec_and_bad_lengths():
    head = P.CHUNK_HEAD.pack(0, 0, 99, 0, 0, 1, 1, 1, 0)
    with pytest.raises(P.ProtocolError, match="unknown codec"):
        P.parse_chunk(head + b"x")
    head = P.CHUNK_HEAD.pack(0, 0, 0, 0, 0, 1, 2, 1, 0)
    with pytest.raises(P.ProtocolError, match="header says"):
        P.parse_chunk(head + b"x")


def test_frame_reader_limits():
    with pytest.raises(P.ProtocolError, match="magic"):
        P.FrameReader(io.BytesIO(b"GARBAGEGARBAGE").read).next()
    with pytest.raises(P.ProtocolError, match="exceeds"):
        P.FrameReader(io.BytesIO(P.HEADER.pack(P.MAGIC, P.T_ENTRY, P.MAX_FRAME + 1)).read).next()
    with pytest.raises(P.ProtocolError, match="unknown frame type"):
        P.FrameReader(io.BytesIO(P.HEADER.pack(P.MAGIC, 99, 0)).read).next()
    with pytest.raises(P.ProtocolError, match="truncated"):
        P.FrameReader(io.BytesIO(P.frame(P.T_END, b"{}")[:-1]).read).next()


def test_parse_json_wants_an_object():
    assert P.parse_json(b'{"a":1}', "END") == {"a": 1}
    with pytest.raises(P.ProtocolError, match="not a JSON object"):
        P.parse_json(b"[]", "END")


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", "", "a/./b", "x\0y", 7])
def test_check_relpath_refuses(path):
    with pytest.raises(P.ProtocolError, match="bad path"):
        P.check_relpath(path)


def test_check_relpath_accepts():
    assert P.check_relpath(".") == []
    assert P.check_relpath("etc/deep/f.txt") == ["etc", "deep", "f.txt"]
