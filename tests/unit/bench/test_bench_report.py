# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bench/bench_report.py: the restore's split between CRIU and Docker."""
from __future__ import annotations

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path[:0] = [os.path.join(_ROOT, "bench"), os.path.join(_ROOT, "lab")]

import bench_report as br  # noqa: E402


def test_criu_share_takes_medians_over_the_runs_that_reported_it():
    rows = [{"stages": {"restore_s": 1.2, "criu_restore_s": 0.3}},
            {"stages": {"restore_s": 1.0, "criu_restore_s": 0.35}},
            {"stages": {"restore_s": 1.4, "criu_restore_s": 0.25}},
            {"stages": {"restore_s": 9.0}}]                       # an older target: no CRIU figure
    text = br.criu_share(rows)
    assert "Of the restore (1.20 s, 3 runs), CRIU's own run is 0.30 s; the other 0.90 s" in text


def test_criu_share_says_nothing_without_figures():
    assert br.criu_share([{"stages": {"restore_s": 1.0}}, {}]) == ""
