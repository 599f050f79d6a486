# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json
import os
import sys

from fakes import run_module

from ansible_collections.edgemig.migration.plugins.module_utils.receiver import receiver_install
from ansible_collections.edgemig.migration.plugins.modules import migration_receiver as mod


def test_installs_then_changes_nothing(tmp_path):
    args = {"dir": str(tmp_path / "rx"), "python": sys.executable, "allowed_roots": [str(tmp_path)],
            "dump_dir": str(tmp_path / "dumps")}
    failed, res = run_module(mod, args, check_mode=True)
    assert not failed and res["changed"] and not (tmp_path / "rx").exists()   # check mode writes nothing
    failed, res = run_module(mod, args)
    assert not failed and res["changed"] and res["version"] == receiver_install.receiver_version()
    assert res["launcher"] == str(tmp_path / "rx" / "edgemig-receiver") and os.access(res["launcher"], os.X_OK)
    config = json.loads((tmp_path / "rx" / "receiver.json").read_text())
    assert config == {"version": receiver_install.receiver_version(), "allowed_roots": [os.path.realpath(tmp_path)],
                      "dump_dir": os.path.realpath(tmp_path / "dumps")}
    failed, res = run_module(mod, args)
    assert not failed and not res["changed"]
    failed, res = run_module(mod, dict(args, allowed_roots=[str(tmp_path), "/srv"]))
    assert not failed and res["changed"]                                   # a new config is written


def test_refuses_roots_that_are_not_directories_to_confine_it(tmp_path):
    for roots in ([], ["/"], ["relative/dir"]):
        failed, res = run_module(mod, {"dir": str(tmp_path / "rx"), "allowed_roots": roots})
        assert failed and res["msg"].startswith("allowed_roots="), roots
