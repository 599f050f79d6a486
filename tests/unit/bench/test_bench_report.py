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


def test_criu_share_of_the_dump_too():
    rows = [{"stages": {"checkpoint_s": 0.22, "criu_frozen_s": 0.12}},
            {"stages": {"checkpoint_s": 1.9}}]                     # Docker's call: no stats-dump
    assert "Of the freeze+dump (0.22 s, 1 runs), CRIU keeps the service frozen 0.12 s" in br.criu_share(rows)


def test_criu_share_says_nothing_without_figures():
    assert br.criu_share([{"stages": {"restore_s": 1.0}}, {}]) == ""


def test_a_variant_cell_is_its_own_row_and_meets_its_own_target(tmp_path):
    def run(cell, method, downtime, **extra):
        return {"group": "precopy", "service": "mysql", "method": method, "rate_mbit": 20.0, "repeat": 0, "ok": True,
                "client_downtime_s": downtime, "module_downtime_s": downtime, "bytes_wire": 1e6, "wall_s": 10.0,
                "stages": {"checkpoint_s": 1.0, "transfer_s": 0.5, "restore_s": 1.0}, "precopy": {"rounds": []},
                **({"cell": cell} if cell else {}), **extra}
    rows = [run(None, "precopy", 4.0), run("mysql-big", "precopy", 2.9, big_volume={"volume_mib": 1030, "target_mib": 1024}),
            run("mysql-big", "model", 200.0, big_volume={"volume_mib": 1031, "target_mib": 1024})]
    got_rows, cells = br._pc_cells(rows)
    assert cells == [("mysql", 20.0), ("mysql-big", 20.0)]
    assert [r["service"] for r in got_rows] == ["mysql", "mysql-big", "mysql-big"]
    assert rows[1]["service"] == "mysql"      # the results themselves are left as they are
    data = {"command": "c", "started": "s", "elapsed_s": 1.0, "host": {"cpus": 2, "kernel": "k"}, "results": rows}
    text = "\n".join(br.precopy_section(data, str(tmp_path / "img")))
    assert "| MariaDB with a >= 1 GiB data volume (writer) client downtime, 20 Mbit/s <= 3 s | 2.900 s | 200.000 s" in text
    assert "met (0.100 s under)" in text
    assert "holds >= 1024 MiB (`du` of the volume before each case: 1030, 1031 MiB)" in text
    assert "sysbench oltp_read_write (6 threads) + writer, client downtime, unshaped <= 3 s | not measured" in text


def test_a_plot_is_named_by_its_repository_path_not_linked():
    """The collection ships no docs/img: the generated docs name a plot as text (issue 24)."""
    line = br.figure("Fig. 8", "img/fig8_time_vs_bandwidth.png")
    assert "](" not in line and "`docs/img/fig8_time_vs_bandwidth.png`" in line
