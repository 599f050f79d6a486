# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The restore's timeout is declared once (timeouts.py) and every restore waits that long."""
from __future__ import annotations

import ast
import inspect
import os

from ansible_collections.edgemig.migration.plugins.module_utils.common import timeouts
from ansible_collections.edgemig.migration.plugins.module_utils.docker import tmpfs_restore

PLUGINS = os.path.dirname(os.path.dirname(os.path.dirname(timeouts.__file__)))


def test_the_wait_after_commit_covers_restore_health_and_switch_over():
    assert timeouts.outcome_limit_s(30) == timeouts.RESTORE_TIMEOUT_S + 30 + timeouts.SWITCHOVER_MARGIN_S
    assert timeouts.outcome_limit_s(0) > timeouts.RESTORE_TIMEOUT_S


def test_every_restore_takes_the_one_timeout():
    # start_from_checkpoint (the one way any edge restores) defaults to it, and no caller in the
    # collection names another: a second number would drift from the driver's outcome_limit_s.
    assert inspect.signature(tmpfs_restore.start_from_checkpoint).parameters["timeout"].default \
        == timeouts.RESTORE_TIMEOUT_S
    callers = []
    for root, _dirs, files in os.walk(PLUGINS):
        for fname in (f for f in files if f.endswith(".py")):
            path = os.path.join(root, fname)
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) \
                        == "start_from_checkpoint":
                    callers.append(os.path.relpath(path, PLUGINS))
                    assert not [k for k in node.keywords if k.arg == "timeout"] and len(node.args) <= 3, \
                        f"{path}:{node.lineno} names its own restore timeout"
    assert {"module_utils/docker/switchover.py", "module_utils/driver/recovery.py",
            "modules/docker_checkpoint_restore.py"} <= set(callers)
