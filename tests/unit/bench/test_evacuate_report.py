# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bench/evacuate_report.py: the evacuation benchmark's verdicts come from its numbers, and its section of
docs/benchmarks.md is what its JSON regenerates."""
from __future__ import annotations

import copy
import json
import os
import shutil
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path[:0] = [os.path.join(_ROOT, "bench")]

import evacuate_report as er  # noqa: E402

JSON = os.path.join(_ROOT, "docs", "benchmarks-evacuate.json")


def run(makespan=50.0, evac_down=(0.9, 1.0), comps=(100.0, 120.0, 130.0), lost=0, runs_on=("edge2",)):
    """Two services, one rate: solo 40 s each (sum 80), solo downtimes 0.8 and 1.0."""
    evac = {}
    for order, comp in zip(("shortest", "catalog", "largest"), comps):
        evac[order] = {"makespan_s": makespan, "sum_completion_s": comp, "controller_cpu_s": 9.0,
                       "controller_pss_mb": 200.0, "return_s": 30.0,
                       "services": {"a": {"runs_on": list(runs_on), "downtime_s": evac_down[0], "completion_s": 20.0},
                                    "b": {"runs_on": ["edge3"], "downtime_s": evac_down[1], "completion_s": 30.0}}}
    return {"when": "now", "commit": "abc", "host": "2 CPUs", "services": ["a", "b"], "writer_rate": 50.0,
            "rates": [{"rate_mbit": 100.0, "sum_solo_s": 80.0, "evacuations": evac,
                       "solo": {"a": {"target": "edge2", "wall_s": 40.0, "downtime_s": 0.8, "controller_cpu_s": 6.0,
                                      "controller_pss_mb": 160.0},
                                "b": {"target": "edge3", "wall_s": 40.0, "downtime_s": 1.0, "controller_cpu_s": 6.0,
                                      "controller_pss_mb": 160.0}}}],
            "writers": {"mysql": {"acked_rows": 10, "lost_rows": lost, "errors": 0}}}


def test_targets_met():
    v = er.verdicts(run())["100.0"]
    assert v["makespan_over_solo_sum"] == 0.625 and not v["makespan_ok"]   # 50 / 80
    v = er.verdicts(run(makespan=48.0))["100.0"]
    assert v["makespan_ok"] and v["downtime_ok"] and v["all_moved"]
    assert v["worst_downtime_ratio"] == 1.12 and v["order_beats"] == {"catalog": True, "largest": True}


@pytest.mark.parametrize("bad, key", [
    ({"evac_down": (1.3, 1.0)}, "downtime_ok"),            # 1.3 / 0.8 > 1.5
    ({"evac_down": (None, 1.0)}, "downtime_ok"),           # a service never seen answering again
    ({"comps": (120.0, 120.0, 130.0)}, "order_beats"),     # a tie is not a win
    ({"runs_on": ("edge1",)}, "all_moved"),                # still on the source
    ({"runs_on": ("edge2", "edge3")}, "all_moved"),        # twice
])
def test_each_miss_is_said(bad, key):
    v = er.verdicts(run(makespan=48.0, **bad))["100.0"]
    assert v[key] is False or (isinstance(v[key], dict) and not all(v[key].values())), v


def test_lost_rows_are_counted():
    assert er.verdicts(run(lost=3))["rows_lost"] == 3


def test_the_section_names_each_miss():
    r = run()
    r["verdicts"] = er.verdicts(r)
    text = er.section(r)
    assert text.startswith(er.MARKERS[0]) and text.endswith(er.MARKERS[1])
    assert "**0.625** (target <= 0.6: MISSED)" in text and "at 50 rows/s" in text


@pytest.mark.skipif(not os.path.exists(JSON), reason="no evacuation run recorded yet")
def test_the_repos_section_is_what_its_json_regenerates(tmp_path):
    doc = tmp_path / "benchmarks.md"
    shutil.copy(os.path.join(_ROOT, "docs", "benchmarks.md"), doc)
    with open(JSON) as fh:
        recorded = json.load(fh)
    assert recorded["verdicts"] == er.verdicts(copy.deepcopy(recorded))
    er.write_docs(recorded, str(doc))
    assert doc.read_bytes() == open(os.path.join(_ROOT, "docs", "benchmarks.md"), "rb").read()
