# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""receive_stream: the frame loop refuses what is not a well-formed stream."""
from __future__ import annotations

import io

import pytest
from stream_fixtures import END, entry, run, stream

from ansible_collections.edgemig.migration.plugins.module_utils.receiver.stream_receiver import receive_stream
from ansible_collections.edgemig.migration.plugins.module_utils.wire import protocol as P


def test_truncated_stream(tmp_path):
    data = stream(entry("a", size=10)).getvalue()[:-3]
    with pytest.raises(P.ProtocolError, match="truncated"):
        run(tmp_path, io.BytesIO(data))


def test_oversized_frame(tmp_path):
    bad = P.HEADER.pack(P.MAGIC, P.T_ENTRY, P.MAX_FRAME + 1)
    with pytest.raises(P.ProtocolError, match="exceeds"):
        run(tmp_path, stream(bad))


def test_bad_magic(tmp_path):
    with pytest.raises(P.ProtocolError, match="magic"):
        run(tmp_path, io.BytesIO(b"GARBAGEGARBAGE"))


def test_unknown_root_rejected(tmp_path):
    hello = P.json_frame(P.T_HELLO, {"version": P.VERSION, "roots": ["evil"]})
    with pytest.raises(P.ProtocolError, match="roots"):
        run(tmp_path, io.BytesIO(hello))


def test_abort_frame(tmp_path):
    with pytest.raises(P.ProtocolError, match="sender aborted"):
        run(tmp_path, stream(P.json_frame(P.T_ABORT, {"reason": "boom"})))


# -- link probe (PROBE frames before HELLO)

def test_probe_frames_are_answered_and_discarded(tmp_path):
    probes = P.frame(P.T_PROBE, b"") + P.frame(P.T_PROBE, bytes(70_000))
    hello = P.json_frame(P.T_HELLO, {"version": P.VERSION, "roots": ["layer"]})
    replies = []
    dest = tmp_path / "dest"
    dest.mkdir()
    receive_stream(io.BytesIO(probes + hello + END).read, replies.append, {"layer": str(dest)}, workers=1)
    assert replies[:2] == [{"probe": 0}, {"probe": 70_000}]
    assert list(dest.iterdir()) == []


def test_too_many_probe_frames_rejected(tmp_path):
    flood = P.frame(P.T_PROBE, b"x") * (P.MAX_PROBES + 1)
    with pytest.raises(P.ProtocolError, match="PROBE"):
        run(tmp_path, io.BytesIO(flood))


def test_probe_after_hello_rejected(tmp_path):
    with pytest.raises(P.ProtocolError, match="unexpected frame type"):
        run(tmp_path, stream(P.frame(P.T_PROBE, b"x"), END))
