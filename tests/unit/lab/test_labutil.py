# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lab/labutil.RateSchedule, the one tc rate schedule of the benchmarks (no tc: a recording apply)."""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "lab"))

import labutil  # noqa: E402


def test_steps_applied_in_order_at_their_offsets():
    seen = []
    sched = labutil.RateSchedule(seen.append, [(0.0, 100.0), (0.15, 10.0), (0.3, 50.0)])
    sched.start()
    sched.join(timeout=5)
    assert seen == [100.0, 10.0, 50.0]
    offsets = [a["t"] for a in sched.applied]
    assert offsets == sorted(offsets)
    assert offsets[1] >= 0.15 and offsets[2] >= 0.3
    assert [a["rate_mbit"] for a in sched.applied] == seen


def test_stop_cancels_the_steps_not_yet_due():
    seen = []
    sched = labutil.RateSchedule(seen.append, [(0.0, 100.0), (30.0, 10.0)])
    sched.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    sched.stop()
    assert time.monotonic() - t0 < 2
    assert not sched.is_alive()
    assert seen == [100.0]


def test_anchor_waits_for_the_dump_dir(tmp_path):
    seen = []
    sched = labutil.RateSchedule(seen.append, [(0.0, 20.0)], anchor_dir=str(tmp_path), prefix="apache-")
    sched.start()
    (tmp_path / "mysql-1").mkdir()           # another service's dump: not the anchor
    time.sleep(0.15)
    assert seen == [] and sched.t0 is None
    (tmp_path / "apache-20250101T000000-1").mkdir()
    sched.join(timeout=5)
    assert seen == [20.0]
    assert sched.anchored_after_s is not None and sched.anchored_after_s >= 0.1


def test_stop_before_the_anchor_applies_nothing(tmp_path):
    seen = []
    sched = labutil.RateSchedule(seen.append, [(0.0, 20.0)], anchor_dir=str(tmp_path / "missing"), prefix="x-")
    sched.start()
    sched.stop()
    assert seen == [] and sched.anchored_after_s is None
