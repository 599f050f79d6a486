# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bench/mobility_bench.write_doc: its block into docs/mobility.md (a temp copy) through doc_section."""
from __future__ import annotations

import os
import shutil
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path[:0] = [os.path.join(_ROOT, "bench"), os.path.join(_ROOT, "lab"), os.path.join(_ROOT, "tests")]

import doc_section  # noqa: E402
import mobility_bench as mb  # noqa: E402

OUT = {"probe_timeout_s": 0.5,
       "summary": {"quick": True, "dwell_s": 8.0, "ttl_s": 30.0, "warm_moves": 1, "warm_reaction_median_s": 1.25,
                   "cold_moves": 0, "cold_reaction_median_s": None, "ping_pong_handovers": 4,
                   "ping_pong_migrations": 1, "handovers": 6, "handovers_away": 3, "moves": 2,
                   "avoided_by_hysteresis": 1, "prepared": 2, "cancelled": 0,
                   "client": {"requests": 100, "failed": 2, "slow": 1}},
       "moves": [{"label": "walk", "target": "edge2", "warm": True, "reaction_s": 1.25, "measured_by": "client",
                  "hold_s": 0.1, "start_connect_s": 0.4, "connect_s": 0.2, "downtime_s": 0.6, "prepare_s": 3.0,
                  "client": {"failed": 2, "slow": 1, "max_gap_s": 0.9}}]}


def test_the_block_replaces_its_section_and_keeps_every_other_byte(tmp_path):
    doc = tmp_path / "mobility.md"
    shutil.copy(os.path.join(_ROOT, "docs", "mobility.md"), doc)
    before = doc.read_text()
    mb.write_doc(str(doc), OUT)
    after = doc.read_text()
    assert after.split(mb.MARK_START)[0] == before.split(mb.MARK_START)[0]
    assert after.split(mb.MARK_END)[1] == before.split(mb.MARK_END)[1]
    assert "| 1 | walk | edge2 | yes | 1.25 s |" in after


def test_a_doc_without_the_markers_is_refused_and_a_missing_one_made(tmp_path):
    doc = tmp_path / "mobility.md"
    doc.write_text("# Mobility, by hand\n")
    with pytest.raises(doc_section.SectionError, match="nothing was written"):
        mb.write_doc(str(doc), OUT)
    assert doc.read_text() == "# Mobility, by hand\n"
    new = tmp_path / "new.md"
    mb.write_doc(str(new), OUT)
    assert new.read_text().startswith(f"# Mobility\n\n{mb.MARK_START}\n") and new.read_text().endswith(f"{mb.MARK_END}\n")
