# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.driver.timeline_plot import (
    find_timeline,
    nested,
    plot,
    stages,
)

REPORT = {"service": "apache", "source": "edge1", "target": "edge2", "downtime_s": 0.8,
          "stages_s": {"checkpoint_s": 0.4, "connect_s": 1.1, "transfer_s": 0.1, "restore_s": 0.3,
                       "downtime_s": 0.8, "health_s": 0.0}}


def test_stages_in_the_order_they_happen_without_totals():
    assert stages(REPORT) == [("connect", 1.1), ("checkpoint", 0.4), ("transfer", 0.1), ("restore", 0.3)]


def test_find_timeline_under_transfer():
    assert find_timeline({"transfer": {"timeline": [{"t": 0}]}}) == [{"t": 0}]


def test_a_short_migration_still_gets_a_picture(tmp_path):
    pytest.importorskip("matplotlib")
    out = plot(REPORT, str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.endswith("r.png")


def test_nothing_to_draw_is_a_value_error(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError):
        plot({"service": "x"}, str(tmp_path / "r.png"))


def test_criu_shares_are_drawn_inside_their_stage_not_after_the_switch():
    """Issue 26: CRIU's share of the checkpoint and of the restore are times within those stages."""
    report = {"stages_s": {"checkpoint_s": 0.16, "criu_frozen_s": 0.08, "criu_memdump_s": 0.01, "connect_s": 0.9,
                           "downtime_s": 0.64, "transfer_s": 0.07, "restore_s": 0.36, "health_s": 0.004,
                           "switch_s": 0.03, "criu_restore_s": 0.24, "criu_restore_stage_s": 0.21}}
    order = ["connect", "checkpoint", "transfer", "restore", "health", "switch"]
    assert [name for name, _secs in stages(report)] == order
    assert {(stage, name) for stage, name, _secs in nested(report)} == {
        ("checkpoint", "criu_frozen"), ("checkpoint", "criu_memdump"), ("restore", "criu_restore"),
        ("restore", "criu_restore_stage")}
    # The bar is as long as the stages that happened, not their sum with the nested times.
    assert sum(secs for _name, secs in stages(report)) == pytest.approx(0.9 + 0.16 + 0.07 + 0.36 + 0.004 + 0.03)
