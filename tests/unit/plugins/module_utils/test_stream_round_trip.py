# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Sender and receiver together through send_local (bench/local_stream.py)."""
from __future__ import annotations

import os

import pytest
from local_stream import send_local
from stream_fixtures import make_tree, snapshot

from ansible_collections.edgemig.migration.plugins.module_utils.wire import protocol as P


@pytest.mark.parametrize("policy", ["fixed:none:0", "fixed:lz4:1", "fixed:lz4:9", "fixed:zstd:3", "model", "paper"])
@pytest.mark.parametrize("pipelined", [True, False])
def test_round_trip(tmp_path, policy, pipelined):
    ck, layer, pages = make_tree(tmp_path)
    d_ck, d_layer = tmp_path / "dck", tmp_path / "dlayer"
    d_ck.mkdir()
    d_layer.mkdir()
    res = send_local([("checkpoint", str(ck)), ("layer", str(layer))],
                     {"checkpoint": str(d_ck), "layer": str(d_layer)}, policy=policy,
                     chunk_size=64 * 1024, pipelined=pipelined)
    assert res["receiver"]["ok"]
    assert snapshot(ck) == snapshot(d_ck)
    assert snapshot(layer) == snapshot(d_layer)
    # Every file's bytes once; a second name of a file (layer/hard) travels as a hard link.
    assert res["bytes_raw"] == sum(len(e.get("data", b"")) for e in snapshot(ck).values()) + \
        sum(len(e.get("data", b"")) for e in snapshot(layer).values()) - os.path.getsize(layer / "hard")
    assert os.stat(d_layer / "hard").st_ino == os.stat(d_layer / "etc" / "deep" / "f.txt").st_ino
    assert res["zero_pages"] > 0 and res["dup_pages"] > 0
    if policy != "fixed:none:0":
        assert res["bytes_wire"] < res["bytes_raw"] * 0.5


def test_dedup_off_still_round_trips(tmp_path):
    ck, layer, pages = make_tree(tmp_path)
    d = tmp_path / "d"
    d.mkdir()
    res = send_local([("checkpoint", str(ck))], {"checkpoint": str(d)}, policy="fixed:none:0", dedup=False)
    assert (d / "pages-1.img").read_bytes() == pages
    assert res["dup_pages"] == 0


def test_corrupted_chunk_is_detected(tmp_path):
    ck, layer, pages = make_tree(tmp_path)
    d = tmp_path / "d"
    d.mkdir()

    def flip(ch):
        data = bytearray(ch["data"])
        data[len(data) // 2] ^= 0x01
        ch["data"] = bytes(data)
    with pytest.raises(P.ProtocolError, match="checksum|decompress|receiver failed"):
        send_local([("checkpoint", str(ck))], {"checkpoint": str(d)}, policy="fixed:none:0",
                   corrupt_hook=flip)


def test_unix_sockets_are_skipped(tmp_path):
    import socket
    layer = tmp_path / "layer"
    (layer / "run").mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(layer / "run" / "mysqld.sock"))
    (layer / "run" / "pid").write_text("1")
    dest = tmp_path / "dest"
    dest.mkdir()
    try:
        res = send_local([("layer", str(layer))], {"layer": str(dest)}, policy="fixed:none:0")
    finally:
        sock.close()
    assert res["receiver"]["ok"]
    assert (dest / "run" / "pid").read_text() == "1"
    assert not (dest / "run" / "mysqld.sock").exists()


@pytest.mark.parametrize("policy", ["fixed:none:0", "model"])
def test_round_trip_with_tight_in_flight_limit(tmp_path, policy):
    """The sender waits for acks once 64 KiB are in flight: no deadlock, same bytes."""
    ck, layer, pages = make_tree(tmp_path)
    d = tmp_path / "d"
    d.mkdir()
    res = send_local([("checkpoint", str(ck))], {"checkpoint": str(d)}, policy=policy,
                     chunk_size=16 * 1024, min_inflight=64 * 1024)
    assert res["receiver"]["ok"]
    assert (d / "pages-1.img").read_bytes() == pages
