# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Each option's default is declared once (options.MigrationOptions): the module's argument spec is
built from it, its documentation says the same, and the playbooks pass ``omit`` instead of a default."""
from __future__ import annotations

import os
import re
from dataclasses import fields

import yaml

from ansible_collections.edgemig.migration.plugins.module_utils.common import options
from ansible_collections.edgemig.migration.plugins.modules import docker_checkpoint_restore, edge_migrate

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..")
NAMES = [f.name for f in fields(options.MigrationOptions)]


def test_the_argument_spec_is_the_dataclass():
    spec = options.argument_spec()
    assert list(spec) == NAMES
    for f in fields(options.MigrationOptions):
        assert spec[f.name] == {"type": f.type, "default": f.default}


def test_the_documentation_says_the_same_defaults():
    doc = yaml.safe_load(edge_migrate.DOCUMENTATION)["options"]
    for f in fields(options.MigrationOptions):
        assert doc[f.name].get("default") == f.default, f.name
        assert doc[f.name]["type"] == f.type, f.name
    prep = yaml.safe_load(docker_checkpoint_restore.DOCUMENTATION)["options"]
    assert prep["stall_timeout"]["default"] == options.MigrationOptions.stall_timeout
    assert prep["dump_dir"]["default"] == options.DEFAULT_DUMP_DIR


def test_the_playbooks_declare_no_default_of_their_own():
    with open(os.path.join(ROOT, "playbooks", "tasks", "migrate_move.yml")) as fh:
        text = fh.read()
    for name in NAMES:
        # -e edgemig_<name>=... reaches the module as given, or not at all.
        uses = re.findall(rf"edgemig_{name}\s*\|\s*default\(([^)]*)\)", text)
        assert uses and all(u == "omit" for u in uses), (name, uses)
    assert "default('model')" not in text and "default(30)" not in text
