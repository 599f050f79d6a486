# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bench/compare_runs.py: two benchmark runs side by side, and which way each cell moved."""
from __future__ import annotations

import json
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path[:0] = [os.path.join(_ROOT, "bench")]

import compare_runs as cr  # noqa: E402


def result(service, rate, method, downtime, cell=None, ok=True):
    return {"service": service, "cell": cell, "rate_mbit": rate, "method": method, "ok": ok,
            "client_downtime_s": downtime, "stages": {"checkpoint_s": 0.2, "transfer_s": 0.1, "restore_s": 0.4}}


def write(tmp_path, name, results):
    path = tmp_path / name
    path.write_text(json.dumps({"results": results}))
    return str(path)


def test_verdict_within_lower_higher():
    assert cr.verdict([2.40, 2.26], 2.30) == "within the noise"
    assert cr.verdict([2.40, 2.26], 2.60) == "within the noise"   # 10 % of the median is slack
    assert cr.verdict([2.40, 2.26], 2.70) == "HIGHER"
    assert cr.verdict([0.70, 0.74], 0.50) == "lower"
    assert cr.verdict([0.70], 0.74) == "within the noise"         # 0.05 s of slack at least


def test_table_counts_higher_rows_and_lists_cells_of_one_run(tmp_path):
    old = write(tmp_path, "old.json", [result("apache", 0, "model", 0.70), result("apache", 0, "model", 0.72),
                                       result("mysql", 10.0, "precopy", 2.3, cell="mysql-big"),
                                       result("tomcat", 10.0, "model", 12.2)])
    new = write(tmp_path, "new.json", [result("apache", 0, "model", 1.5),
                                       result("mysql", 10.0, "precopy", 2.2, cell="mysql-big"),
                                       result("tomcat", 10.0, "model", None), result("redis", 0, "model", 0.5)])
    text, higher = cr.table(old, new)
    assert higher == 1
    assert "| apache | unshaped | model | **0.71** (0.70, 0.72) | **1.50** (1.50) |" in text
    assert "| mysql-big | 10 Mbit/s | precopy |" in text and "within the noise" in text
    # a failed or unmeasured run is not compared; cells of one run only are named apart
    assert "In one run only (not compared): redis 0 model (new), tomcat 10 model (old)" in text
