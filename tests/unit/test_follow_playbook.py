# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/follow.yml repeats migrate.yml's steps before and after its gate: they must not drift apart.

Every task of migrate.yml is in follow.yml, by name and in order, with the same
module and arguments; only the request check, the choice of the target and
the already-there stop differ (follow.yml is always given its target, and tells
the event source where the service runs), and the report's save and print.
"""
from __future__ import annotations

import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIFFERENT = {"Check the request", "Set source and target", "Already there", "Print the report"}
RENAMED = {"Save the report and its plot": "Save the report"}  # follow.yml: no plot on the follow path


def tasks(name: str) -> list[dict]:
    with open(os.path.join(ROOT, "playbooks", name)) as fh:
        play = yaml.safe_load(fh)[0]
    out = []

    def walk(items):
        for t in items:
            out.append(t)
            for key in ("block", "rescue", "always"):
                walk(t.get(key, []))

    walk(play["tasks"])
    return out


def test_follow_repeats_migrate_tasks_in_order_and_unchanged():
    follow = tasks("follow.yml")
    names = [t["name"] for t in follow]
    pos = -1
    for t in tasks("migrate.yml"):
        t = {**t, "name": RENAMED.get(t["name"], t["name"])}
        assert t["name"] in names, f"migrate.yml task {t['name']!r} is missing from follow.yml"
        i = names.index(t["name"])
        assert i > pos, f"{t['name']!r} is out of order in follow.yml"
        pos = i
        if t["name"] in DIFFERENT or t["name"] in RENAMED.values() or "block" in t:
            continue
        assert follow[i] == t, f"{t['name']!r} differs between migrate.yml and follow.yml"


def test_follow_parks_at_the_gate_before_the_freeze():
    names = [t["name"] for t in tasks("follow.yml")]
    assert names.index("Create the target container before the freeze") < names.index("Wait at the gate for the handover") \
        < names.index("Migrate (freeze, stream, restore, switch over)")
    assert names.index("Wait at the gate for the handover") < names.index("Remove the prepared target container") \
        < names.index("Migrate (freeze, stream, restore, switch over)")
