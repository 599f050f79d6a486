# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The packages of plugins/module_utils and the arrows between them (docs/design.md, "Import rules")."""
from __future__ import annotations

import os
import re

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.receiver import receiver_install

MU = receiver_install.PKG
MU_DIR = os.path.dirname(os.path.dirname(receiver_install.__file__))
DESIGN = os.path.join(MU_DIR, "..", "..", "docs", "design.md")

# Which packages the files of a package may import, besides their own package; bottom to top.
MAY_IMPORT = {
    "common": set(),                                 # options, timeouts, state records, faults: imports nothing
    "wire": set(),                                   # the formats both ends and the Docker side read
    "docker": {"wire", "common"},                    # containers, checkpoints, restores, addresses, health
    "sender": {"wire", "common"},                    # the source's stream, its pre-copy rounds, its SSH end
    "receiver": {"wire", "common"},                  # the target's pinned receiver, its ticket, its installer
    "driver": {"docker", "sender", "wire", "common"},  # a migration and its recovery; only modules import it
    "planning": set(),                               # an evacuation's plan and record: pure, controller side
}
# The arrows across those rules, each for its reason.
GLUE = {
    # The receiver restores the container the moment the sender committed.
    ("receiver.receiver", "docker.switchover"),
    # The source asks for the pinned receiver by its path and version (a digest of its sources).
    ("sender.ssh_stream", "receiver.receiver_install"),
}
# What the driver may use of the sender: its SSH end (the stream stays behind it), the policy check
# of the preflight (controller.parse_policy), the warm phase (precopy.warm_up) and whose memory the
# warm rounds read (process_memory.container_processes).
DRIVER_USES_OF_SENDER = {"sender.ssh_stream", "sender.controller", "sender.precopy", "sender.process_memory"}


def package_of(name: str) -> str:
    return name.split(".")[0]


def module_files() -> dict[str, str]:
    """``package.module`` (or ``package`` for its __init__) -> file, for every file under module_utils."""
    out = {}
    for root, dirs, files in os.walk(MU_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(root, MU_DIR).replace(os.sep, ".")
        for fname in sorted(f for f in files if f.endswith(".py")):
            short = fname[:-3]
            name = rel if short == "__init__" else f"{rel}.{short}" if rel != "." else short
            out[name] = os.path.join(root, fname)
    return out


FILES = module_files()


def graph() -> dict[str, set[str]]:
    out = {}
    for name, path in FILES.items():
        with open(path, encoding="utf-8") as fh:
            found = receiver_install.module_utils_imports(fh.read(), f"{MU}.{name}")
        out[name] = {n[len(MU) + 1:] for n in found} - {name}
    return out


GRAPH = graph()


def breaches(g: dict[str, set[str]]) -> set[tuple[str, str]]:
    """The arrows of ``g`` that the package rules do not allow (and are no GLUE)."""
    return {(a, b) for a, targets in g.items() for b in targets
            if package_of(b) != package_of(a) and package_of(b) not in MAY_IMPORT.get(package_of(a), ())
            and (a, b) not in GLUE}


def arrows(g: dict[str, set[str]], src, dst) -> set[tuple[str, str]]:
    return {(a, b) for a, targets in g.items() for b in targets if src(a) and dst(b)}


def test_every_file_sits_in_a_package_with_an_empty_init():
    # No module directly in module_utils: the folders are the layers. ansible-test's empty-init wants
    # the __init__.py files empty; Ansible's packer ships them with what a module imports.
    assert sorted(name for name in FILES if "." not in name) == sorted(MAY_IMPORT)
    for pkg in MAY_IMPORT:
        assert os.path.getsize(FILES[pkg]) == 0, f"{pkg}/__init__.py must stay empty"
    assert all(name.count(".") == 1 and package_of(name) in MAY_IMPORT for name in FILES if "." in name)


def test_the_package_rules_are_layers():
    # A package may import only packages below it: the rules draw no cycle.
    order = []
    todo = dict(MAY_IMPORT)
    while todo:
        ready = [p for p, below in todo.items() if below <= set(order)]
        assert ready, f"the package rules have a cycle among {sorted(todo)}"
        order += ready
        for p in ready:
            del todo[p]


def test_no_arrow_breaks_the_package_rules():
    assert breaches(GRAPH) == set()


def test_every_glue_arrow_exists():
    # An arrow allowed for a reason that no longer holds is a hole in the rules.
    assert {(a, b) for a, b in GLUE if b in GRAPH.get(a, ())} == GLUE


@pytest.mark.parametrize("arrow", [("wire.protocol", "docker.docker_api"), ("common.timeouts", "wire.protocol"),
                                   ("receiver.tree_writer", "sender.stream_sender"),
                                   ("sender.stream_sender", "receiver.tree_writer"),
                                   ("docker.switchover", "driver.recovery"), ("docker.checkpoint", "sender"),
                                   ("receiver.receiver", "docker.checkpoint")])
def test_a_breach_is_caught(arrow):
    a, b = arrow
    assert breaches({**GRAPH, a: GRAPH.get(a, set()) | {b}}) == {arrow}


def test_only_modules_import_the_driver():
    assert arrows(GRAPH, lambda a: package_of(a) != "driver", lambda b: package_of(b) == "driver") == set()


def test_the_driver_uses_the_sender_through_its_ends_only():
    used = {b for b in GRAPH["driver.migration_driver"] if package_of(b) == "sender"}
    assert "sender.ssh_stream" in used and used <= DRIVER_USES_OF_SENDER, used


def test_the_recovery_stands_on_the_docker_side_and_common_only():
    # No stream engine: migration_recover ships what it imports, and it streams nothing.
    assert {package_of(b) for b in GRAPH["driver.recovery"]} <= {"docker", "common", "wire"}
    assert arrows(GRAPH, lambda a: a != "driver.migration_driver", lambda b: b == "driver.recovery") == set()


def test_design_md_lists_every_file_once_in_its_package():
    # docs/design.md, "Engine": one row per file, under the heading of its package.
    with open(DESIGN, encoding="utf-8") as fh:
        text = fh.read()
    engine = text[text.index("## Engine (plugins/module_utils)"):text.index("## Modules (plugins/modules)")]
    listed, package = [], None
    for line in engine.splitlines():
        heading = re.match(r"^### `(\w+)/`", line)
        package = heading.group(1) if heading else package
        listed += [f"{package}.{m}" for m in re.findall(r"^\| `(\w+)\.py` \|", line)]
    modules = sorted(name for name in FILES if "." in name)
    assert sorted(listed) == modules, (sorted(set(modules) - set(listed)), sorted(set(listed) - set(modules)))
    assert len(listed) == len(set(listed)), "a file listed twice"
