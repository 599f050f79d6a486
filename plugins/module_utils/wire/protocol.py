# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The edgemig stream's wire format, and nothing else.

Both sides import this file: the sender (stream_sender.py) to encode frames,
the receiver (stream_receiver.py, tree_writer.py) to decode and check them.
It holds no I/O beyond a blocking ``read(n)`` and no policy, so a change of
the bytes on the wire is a change of this file (and of ``VERSION``).

A migration stream carries several *roots* (``checkpoint``, ``layer``,
``volume/<name>``), each a tree of entries (dirs, files, symlinks, whiteouts,
hard links) and file data in chunks. Every frame is

    magic "EMF1" | type (u8) | payload length (u32)   -- network byte order

Sender -> receiver frames: HELLO (json), ENTRY (json), CHUNK (binary), END
(json), ABORT (json), and before HELLO any number of PROBE frames (filler the
receiver discards and answers with ``{"probe": <bytes>}``: the sender times
them to estimate the link before the service is frozen). Receiver -> sender:
one JSON object per line (acks, probe answers, final ``ok`` or ``error``).

Versions: a stop-and-copy stream says ``"version": 1`` in HELLO and its bytes
are those of version 1. A pre-copy session (issue 11) says ``2``: the
receiver then also accepts ROUND_END (json: a warm round's totals, answered
with ``{"ack": n, "round": k}`` and nothing finished or restored), the ENTRY
kinds ``delete`` and ``mem`` (warm memory pages into the ``warm`` root's
store), a file ENTRY with ``"patch": true`` (rewrite blocks of the existing
file: chunks at strictly increasing offsets, gaps allowed) and the page-map
tag P_WARM (a page the warm store holds, named by (namespace pid, vaddr)).
The last round ends with END, as a version 1 stream does.

Chunks name their codec and level, so the level can change from one chunk to
the next; they carry the raw length and a CRC32 of the raw bytes, so a
corrupted chunk is detected before anything is restored from it. Memory-page
chunks may carry a page map: a page is either literal (in the compressed
payload), zero, or a reference to a page sent earlier (dedup beyond any
codec window). The sender builds page maps (stream_sender.Deduper), the
receiver expands them (tree_writer.expand_pagemap).

The receiver trusts nothing: the bounds below cap what a peer can make it
allocate, and ``check_relpath`` is the rule every path of a frame must pass.

Shipped to the target with the receiver (see receiver_install.receiver_bundle): it
imports only the standard library and codecs.py (for the codec ids).
"""
from __future__ import annotations

import json
import struct
from collections.abc import Callable

from ansible_collections.edgemig.migration.plugins.module_utils.wire.codecs import CODEC_NAMES, CODECS

MAGIC = b"EMF1"
VERSION = 2         # the newest this code speaks (pre-copy sessions)
BASE_VERSION = 1    # stop-and-copy: what the sender says when pre-copy is not used (same bytes as before)
VERSIONS = (1, 2)   # what the receiver accepts: an older sender keeps working
HEADER = struct.Struct("!4sBI")
CHUNK_HEAD = struct.Struct("!IQBbBIIII")  # file_id offset codec level flags raw_len comp_len literal_len crc
REF = struct.Struct("!IQ")

T_HELLO, T_ENTRY, T_CHUNK, T_END, T_ABORT, T_PROBE = 1, 2, 3, 4, 5, 6
# After END and the receiver's ``verified``: the sender recorded the commit (json, migration id).
# Numbered apart from the data frames so that new stream frame types do not collide with it.
T_COMMIT = 16
T_ROUND_END = 7  # version 2 only: end of a warm round (totals), the session goes on
# Version 2 only, empty: the sender is busy with nothing to send (predicting the final
# round, checkpointing); it keeps the receiver's idle watchdog from firing meanwhile.
T_KEEPALIVE = 8
FRAME_TYPES = (T_HELLO, T_ENTRY, T_CHUNK, T_END, T_ABORT, T_PROBE, T_ROUND_END, T_KEEPALIVE, T_COMMIT)
F_PAGEMAP = 1

PAGE = 4096
# P_REF: REF = (file id, offset) of a page sent earlier in this round.
# P_WARM (version 2): REF layout reused as (namespace pid, vaddr) of a page in
# the warm store; the sender sends it only when the SHA-256 of the page equals
# that of the page it sent warm at that (pid, vaddr).
P_LITERAL, P_ZERO, P_REF, P_WARM = 0, 1, 2, 3
ZERO_PAGE = bytes(PAGE)

# Bounds the receiver enforces (a peer can not make it allocate more).
MAX_FRAME = 64 << 20
MAX_CHUNK = 16 << 20
MAX_JSON = 1 << 20
MAX_PATH = 4096
MAX_ENTRIES = 2_000_000
MAX_PROBES = 64
MAX_PROBE_FRAME = 8 << 20

KINDS = ("dir", "file", "symlink", "hardlink", "whiteout", "fifo", "chr", "blk")
PRECOPY_KINDS = ("delete", "mem")  # version 2 only
# The root a pre-copy session's warm memory store lives in (the target's dump tmpfs).
WARM_ROOT = "warm"
MAX_MEM_ENTRY_PAGES = MAX_CHUNK // PAGE  # pages one ``mem`` ENTRY may announce


class ProtocolError(Exception):
    """The stream is malformed, corrupted, or asks for something not allowed."""


# ---------------------------------------------------------------- encoding (sender)
def frame(ftype: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, ftype, len(payload)) + payload


# Version 2 only: "still here, nothing to send" (empty; the receiver's idle watchdog counts it).
KEEPALIVE_FRAME = frame(T_KEEPALIVE, b"")


def json_frame(ftype: int, obj: dict) -> bytes:
    return frame(ftype, json.dumps(obj, separators=(",", ":")).encode())


def chunk_frame(file_id: int, offset: int, codec: str, level: int, raw_len: int, crc: int,
                payload: bytes, literal_len: int, pagemap: bytes = b"") -> bytes:
    """One CHUNK frame. ``crc`` is the CRC32 of the full raw chunk (after page-map expansion)."""
    flags = F_PAGEMAP if pagemap else 0
    head = CHUNK_HEAD.pack(file_id, offset, CODECS[codec], level, flags, raw_len,
                           len(payload), literal_len, crc)
    parts = [head]
    if pagemap:
        parts.append(struct.pack("!I", len(pagemap)))
        parts.append(pagemap)
    parts.append(payload)
    body = b"".join(parts)
    return HEADER.pack(MAGIC, T_CHUNK, len(body)) + body


# ---------------------------------------------------------------- decoding (receiver)
class FrameReader:
    """Reads frames from a blocking ``read(n)`` callable (e.g. stdin)."""

    def __init__(self, read: Callable[[int], bytes]):
        self._read = read
        self.bytes_in = 0

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            piece = self._read(n - len(buf))
            if not piece:
                raise ProtocolError(f"stream truncated: wanted {n} bytes, got {len(buf)}")
            buf += piece
        self.bytes_in += n
        return bytes(buf)

    def next(self) -> tuple[int, bytes]:
        magic, ftype, length = HEADER.unpack(self._exact(HEADER.size))
        if magic != MAGIC:
            raise ProtocolError(f"bad frame magic {magic!r}: not an edgemig stream or corrupted")
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME} limit")
        if ftype not in FRAME_TYPES:
            raise ProtocolError(f"unknown frame type {ftype}")
        if ftype == T_PROBE and length > MAX_PROBE_FRAME:
            raise ProtocolError(f"PROBE frame of {length} bytes exceeds the {MAX_PROBE_FRAME} limit")
        if ftype == T_KEEPALIVE and length:
            raise ProtocolError(f"KEEPALIVE frame of {length} bytes (it is empty)")
        return ftype, self._exact(length)


def parse_json(payload: bytes, what: str) -> dict:
    if len(payload) > MAX_JSON:
        raise ProtocolError(f"{what} frame too large")
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"{what} frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} frame is not a JSON object")
    return obj


def parse_chunk(payload: bytes) -> dict:
    if len(payload) < CHUNK_HEAD.size:
        raise ProtocolError("chunk frame shorter than its header")
    (fid, offset, codec_id, level, flags, raw_len, comp_len, literal_len,
     crc) = CHUNK_HEAD.unpack_from(payload)
    pos = CHUNK_HEAD.size
    if codec_id not in CODEC_NAMES:
        raise ProtocolError(f"chunk uses unknown codec id {codec_id}")
    if raw_len > MAX_CHUNK or literal_len > raw_len:
        raise ProtocolError(f"chunk raw length {raw_len} (literal {literal_len}) out of bounds")
    pagemap = b""
    if flags & F_PAGEMAP:
        if pos + 4 > len(payload):
            raise ProtocolError("truncated page map length")
        (mlen,) = struct.unpack_from("!I", payload, pos)
        pos += 4
        if pos + mlen > len(payload):
            raise ProtocolError("truncated page map")
        pagemap = payload[pos:pos + mlen]
        pos += mlen
    elif literal_len != raw_len:
        raise ProtocolError("chunk without page map must carry all its bytes")
    data = payload[pos:]
    if len(data) != comp_len:
        raise ProtocolError(f"chunk payload is {len(data)} bytes, header says {comp_len}")
    return {"id": fid, "offset": offset, "codec": CODEC_NAMES[codec_id], "level": level,
            "raw_len": raw_len, "literal_len": literal_len, "crc": crc, "pagemap": pagemap,
            "data": data}


# ---------------------------------------------------------------- path rule (both sides)
def check_relpath(path: str) -> list[str]:
    """Split a frame's path into components, refusing anything that could escape.

    ``"."`` is the root itself. Absolute paths, ``..``, empty components, NUL
    bytes and over-long paths are refused.
    """
    if not isinstance(path, str) or not path:
        raise ProtocolError(f"bad path {path!r}: empty or not a string")
    if len(path) > MAX_PATH or "\0" in path:
        raise ProtocolError(f"bad path {path[:80]!r}: too long or contains NUL")
    if path == ".":
        return []
    if path.startswith("/"):
        raise ProtocolError(f"bad path {path!r}: absolute paths are not allowed")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ProtocolError(f"bad path {path!r}: '..', '.' or empty components are not allowed")
    return parts
