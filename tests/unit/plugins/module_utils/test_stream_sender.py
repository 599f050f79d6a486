# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The sender's parts on their own: page dedup, chunk compression, link probe."""
from __future__ import annotations

import json
import os
import threading
import time
import zlib

from ansible_collections.edgemig.migration.plugins.module_utils.receiver.stream_receiver import receive_stream
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.tree_writer import expand_pagemap
from ansible_collections.edgemig.migration.plugins.module_utils.sender.stream_sender import (
    AckState,
    Deduper,
    compress_chunk,
    probe_link,
)
from ansible_collections.edgemig.migration.plugins.module_utils.wire import protocol as P


def test_probe_link_measures_a_throttled_pipe():
    """probe_link against a receiver behind a pipe throttled to ~4 MB/s."""
    rate = 4e6
    rfd, wfd = os.pipe()
    reader, writer = os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb", buffering=0)
    acks = AckState()

    def slow_read(n):
        data = reader.read(min(n, 65536)) if n else b""
        time.sleep(len(data) / rate)
        return data if len(data) == n or not data else data + slow_read(n - len(data))

    def receiver():
        try:
            receive_stream(slow_read, lambda m: acks.feed_line(json.dumps(m).encode()), {}, workers=1)
        except P.ProtocolError:
            pass

    t = threading.Thread(target=receiver, daemon=True)
    t.start()
    try:
        out = probe_link(writer.write, acks, min_seconds=0.1, budget_s=3.0)
    finally:
        writer.write(P.json_frame(P.T_ABORT, {"reason": "test over"}))
        writer.close()
        t.join(5)
        reader.close()
    assert out["rtt_s"] is not None and out["bytes"] >= 64 << 10
    assert rate / 3 < out["rate_Bps"] < rate * 3


def test_probe_link_without_receiver_gives_no_rate():
    out = probe_link(lambda b: None, AckState(), budget_s=0.2)
    assert out["rate_Bps"] is None and out["rtt_s"] is None


def test_probe_link_ready_only_sends_one_ping():
    acks, sent = AckState(), []

    def send(data):
        sent.append(len(data))
        acks.feed_line(json.dumps({"probe": len(data) - P.HEADER.size}).encode())

    out = probe_link(send, acks, measure=False)
    assert len(sent) == 1 and out["rate_Bps"] is None and out["bytes"] == 0


def test_deduper_turns_zero_and_repeated_pages_into_tags():
    page = os.urandom(P.PAGE)
    d = Deduper()
    assert d.split(0, 0, page + os.urandom(P.PAGE)) is None  # nothing to dedup: sent as it is
    tags, literal = d.split(1, 0, bytes(P.PAGE) + page + b"tail")
    assert tags == bytes([P.P_ZERO, P.P_REF]) + P.REF.pack(0, 0) + bytes([P.P_LITERAL])
    assert literal == b"tail" and (d.zero_pages, d.dup_pages) == (1, 1)


def test_deduped_chunk_is_rebuilt_by_the_receiver():
    page = os.urandom(P.PAGE)
    d = Deduper()
    d.split(0, 0, page)
    raw = page + bytes(P.PAGE) + page
    tags, literal = d.split(1, 0, raw)
    rebuilt = expand_pagemap(tags, literal, len(raw), lambda fid, off, size: page if (fid, off) == (0, 0) else b"")
    assert rebuilt == raw


def test_compress_chunk_falls_back_to_none_when_it_does_not_pay():
    raw = os.urandom(1 << 16)
    codec, level, payload, crc, _cpu = compress_chunk("lz4", 1, raw, raw)
    assert (codec, level, payload) == ("none", 0, raw) and crc == zlib.crc32(raw)
    codec, level, payload, _crc, _cpu = compress_chunk("zstd", 3, bytes(1 << 16), bytes(1 << 16))
    assert codec == "zstd" and len(payload) < 1000
