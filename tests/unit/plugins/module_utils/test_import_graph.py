# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The import graph of plugins/module_utils (docs/design.md, "Import rules")."""
from __future__ import annotations

import os

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils import receiver_install

MU = receiver_install.PKG
MU_DIR = os.path.dirname(receiver_install.__file__)

# The Docker/CRIU side: containers, checkpoints, addresses, health.
DOCKER = {"docker_api", "daemon_config", "checkpoint", "containerd_dump", "criu_preflight", "container_spec", "switchover",
          "tmpfs_restore", "health", "garp", "tcp_reset",
          "module_common"}
# The stream engine, by side of the wire.
WIRE = {"protocol"}
SENDER = {"tree_reader", "stream_sender", "controller", "netmon", "process_memory", "precopy"}
RECEIVER = {"stream_receiver", "tree_writer", "warm_store"}
# The source's SSH end, the target's entry point, and the receiver's installer (bundle, launcher).
ENDS = {"ssh_stream", "receiver", "receiver_install"}
ENGINE = WIRE | SENDER | RECEIVER | ENDS
# Leaves either side may import; they import only each other.
SHARED = {"codecs", "wkdm", "dump_layout", "host_readiness", "timeline_plot", "criu_images", "progress",
          "migration_state", "ticket", "faults", "timeouts", "page_arrays", "options"}
# The recovery sits above the Docker side and below the driver: it reads an edge's facts and
# brings a copy up or down (Docker side, shared leaves); the driver's rollback is its bring_up.
RECOVERY = {"recovery"}
# The migration driver sits on top of both: it runs the Docker side (checkpoint,
# rollback, address) and the source's end (ssh_stream), and only modules import it.
DRIVER = {"migration_driver"}
# An evacuation's plan and record (controller side, pure) and the parsers of an edge's load: they
# import nothing of module_utils, and nothing of it imports them (filters and edge_load_info do).
PLANNING = {"evacuation_plan", "evacuation_record", "edge_load"}
# The one arrow from the engine into the Docker side: the receiver restores
# the container the moment the stream is verified.
GLUE = {("receiver", "switchover")}


def graph() -> dict[str, set[str]]:
    out = {}
    for fname in sorted(os.listdir(MU_DIR)):
        if fname.endswith(".py") and fname != "__init__.py":
            short = fname[:-3]
            with open(os.path.join(MU_DIR, fname), encoding="utf-8") as fh:
                found = receiver_install.module_utils_imports(fh.read(), f"{MU}.{short}")
            out[short] = {name.rsplit(".", 1)[1] for name in found} - {short}
    return out


GRAPH = graph()


def arrows(src: set[str], dst: set[str]) -> set[tuple[str, str]]:
    return {(a, b) for a in src for b in GRAPH.get(a, ()) if b in dst}


def test_every_module_is_placed():
    groups = [DOCKER, WIRE, SENDER, RECEIVER, ENDS, SHARED, RECOVERY, DRIVER, PLANNING]
    for name in GRAPH:
        assert sum(name in g for g in groups) == 1, f"{name}.py: put it in exactly one group (and design.md)"


def test_docker_side_does_not_import_the_stream_engine():
    assert arrows(DOCKER, ENGINE) == set()


def test_stream_engine_does_not_import_the_docker_side_but_for_the_glue():
    assert arrows(ENGINE, DOCKER) == GLUE


@pytest.mark.parametrize("side, other", [(RECEIVER, SENDER | ENDS), (SENDER, RECEIVER | ENDS)])
def test_the_two_sides_do_not_import_each_other(side, other):
    assert arrows(side, other) == set()


def test_the_wire_format_stands_alone():
    assert GRAPH["protocol"] <= SHARED


def test_shared_leaves_import_only_each_other():
    assert all(GRAPH[name] <= SHARED for name in SHARED)


def test_only_modules_import_the_driver():
    assert arrows(set(GRAPH) - DRIVER, DRIVER) == set()


def test_the_driver_uses_the_ends_and_the_docker_side_not_the_stream_internals():
    # controller.parse_policy: the preflight refuses a bad policy before anything is frozen;
    # precopy.warm_up and process_memory.container_processes: the warm phase's policy and
    # which processes' memory it reads (the stream itself stays behind ssh_stream).
    assert GRAPH["migration_driver"] <= DOCKER | ENDS | SHARED | RECOVERY | {"controller", "precopy", "process_memory"}
    assert "ssh_stream" in GRAPH["migration_driver"] and "receiver" not in GRAPH["migration_driver"]


def test_the_recovery_stands_on_the_docker_side_and_shared_leaves_only():
    # No stream engine: migration_recover ships what it imports, and it streams nothing.
    assert GRAPH["recovery"] <= DOCKER | SHARED


def test_only_the_driver_imports_the_recovery():
    # The driver's rollback is the recovery's bring_up; nothing lower may reach up to it.
    assert arrows(set(GRAPH) - RECOVERY, RECOVERY) == {("migration_driver", "recovery")}


def test_the_planning_stands_alone():
    assert all(GRAPH[name] == set() for name in PLANNING)
    assert {a for a, b in arrows(set(GRAPH) - PLANNING, PLANNING)} == set()
