# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.timeline_plot import find_timeline, plot, stages

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
