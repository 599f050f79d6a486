# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bench/services_table.py: the services' downtime table from test_services' record, into its marked section."""
from __future__ import annotations

import json
import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path[:0] = [os.path.join(_ROOT, "bench")]

import doc_section  # noqa: E402
import services_table as st  # noqa: E402

HOP = {"source": "edge1", "target": "edge2", "downtime_s": 0.7629, "bytes_raw": 3186475, "bytes_wire": 61977,
       "checkpoint_s": 0.2075, "restore_s": 0.3988}
DATA = {"redis": {"hop0": HOP, "hop1": {**HOP, "source": "edge2", "target": "edge1", "downtime_s": 0.6144},
                  "writes": {"acknowledged": 812, "lost": 0}},
        "nginx": {"hop0": {**HOP, "checkpoint_s": None}}}


def test_each_hop_and_the_writes_are_in_the_table():
    text = st.table(DATA, commit="abc1234")
    redis = next(line for line in text.splitlines() if line.startswith("| redis |"))
    assert "| 0.76 (edge1 -> edge2; 0.06 MB sent after the freeze of a 3.2 MB dump" in redis
    assert "| 0.61 (edge2 -> edge1;" in redis and redis.endswith("| 0 of 812 |")
    nginx = next(line for line in text.splitlines() if line.startswith("| nginx |"))
    assert "| not measured | n/a (reads) |" in nginx      # a hop the run did not reach is said, not blank
    assert "checkpoint ?, restore 0.40 s" in nginx       # a stage the report did not measure
    assert "Measured at abc1234" in text


def test_write_fills_both_documents_or_neither(tmp_path, monkeypatch):
    notes, report = tmp_path / "benchmarks-notes.md", tmp_path / "benchmarks.md"
    notes.write_text("# notes\n<!-- services:begin -->\nold\n<!-- services:end -->\ntail\n")
    report.write_text("# report, its markers missing\n")
    data = tmp_path / "services-downtime.json"
    data.write_text(json.dumps(DATA))
    monkeypatch.setattr(st, "DOCS", str(tmp_path))
    with pytest.raises(doc_section.SectionError):
        st.main([str(data), "--write"])
    assert "old" in notes.read_text() and not (tmp_path / st.RAW).exists()   # refused before any write
    report.write_text("# report\n<!-- services:begin -->\n<!-- services:end -->\n")
    assert st.main([str(data), "--write", "--commit", "abc1234"]) == 0
    for path in (notes, report):
        text = path.read_text()
        assert "old" not in text and "| redis | RPUSH, one client | 0.76" in text
    assert notes.read_text().endswith("<!-- services:end -->\ntail\n")
    assert json.loads((tmp_path / st.RAW).read_text()) == DATA
