# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json

from fakes import run_module

from ansible_collections.edgemig.migration.plugins.modules import migration_report as mod

REPORT = {"service": "apache", "source": "edge1", "target": "edge2", "downtime_s": 0.8,
          "stages_s": {"checkpoint_s": 0.4, "transfer_s": 0.1, "restore_s": 0.3}}


def test_writes_the_report_and_says_about_the_plot(tmp_path):
    failed, res = run_module(mod, {"report": REPORT, "dest_dir": str(tmp_path / "r"), "name": "m"}, check_mode=True)
    assert not failed and not (tmp_path / "r").exists()
    failed, res = run_module(mod, {"report": REPORT, "dest_dir": str(tmp_path / "r" / ".." / "r"), "name": "m"})
    assert not failed and res["changed"]
    assert res["path"] == str(tmp_path / "r" / "m.json")                   # normalised
    assert json.loads((tmp_path / "r" / "m.json").read_text()) == REPORT
    assert (res["plot"] and res["plot_note"] == "") or (not res["plot"] and "matplotlib" in res["plot_note"])


def test_a_name_with_a_path_is_refused(tmp_path):
    failed, res = run_module(mod, {"report": REPORT, "dest_dir": str(tmp_path), "name": "../x"})
    assert failed and "plain file name" in res["msg"]


def test_without_a_plot_an_earlier_one_is_not_left_beside_the_new_report(tmp_path):
    (tmp_path / "m.png").write_bytes(b"an earlier migration's plot")
    (tmp_path / "other.png").write_bytes(b"not ours")
    failed, res = run_module(mod, {"report": REPORT, "dest_dir": str(tmp_path), "name": "m", "plot": False})
    assert not failed and res["plot"] == "" and res["plot_note"] == "plot=false"
    assert not (tmp_path / "m.png").exists() and (tmp_path / "other.png").exists()
    assert json.loads((tmp_path / "m.json").read_text()) == REPORT
