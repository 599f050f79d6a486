# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What each module ships: the module_utils Ansible's packer sends with it to the host it runs on.

The packer follows a module's imports, transitively; so does this test, with the walker the
receiver's bundle is built with (``receiver_install.module_utils_imports``, as
test_receiver_install does for the receiver). A module that only reads or repairs a host
must not carry the stream engine or the driver to it.
"""
from __future__ import annotations

import os

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.receiver import receiver_install

MU = receiver_install.PKG
MODULES = "ansible_collections.edgemig.migration.plugins.modules"
PLUGINS_DIR = os.path.dirname(os.path.dirname(os.path.dirname(receiver_install.__file__)))

# The stream engine (docs/design.md, import rules): the wire format, the sender and the receiver.
ENGINE = {"wire.protocol", "sender.tree_reader", "sender.stream_sender", "sender.controller", "sender.netmon",
          "sender.process_memory", "sender.precopy", "sender.ssh_stream", "receiver.stream_receiver",
          "receiver.tree_writer", "receiver.warm_store", "receiver.receiver", "receiver.receiver_install"}
DRIVER = {"driver.migration_driver"}
# Only these run (part of) a migration's stream; every other module ships neither engine nor driver.
STREAMING = {"edge_migrate", "checkpoint_transfer", "migration_receiver"}


def source_of(name: str) -> str:
    """The source of a module (``MODULES.x``) or of a module_utils module or package (``MU.p.x``, ``MU.p``)."""
    rel = name.split(".plugins.", 1)[1].split(".")
    path = os.path.join(PLUGINS_DIR, *rel)
    path = os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def ships(module: str) -> set[str]:
    """Names (under module_utils: ``package.module``) of the module_utils ``module`` carries: its
    imports, theirs, and so on."""
    todo = receiver_install.module_utils_imports(source_of(f"{MODULES}.{module}"), f"{MODULES}.{module}")
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo |= receiver_install.module_utils_imports(source_of(name), name)
    return {name[len(MU) + 1:] for name in seen}


ALL = sorted(f[:-3] for f in os.listdir(os.path.join(PLUGINS_DIR, "modules"))
             if f.endswith(".py") and f != "__init__.py")


def test_the_recovery_module_ships_the_recovery_not_the_engine():
    shipped = ships("migration_recover")
    assert "driver.recovery" in shipped
    assert not shipped & (ENGINE | DRIVER), f"migration_recover ships {sorted(shipped & (ENGINE | DRIVER))}"
    # Of the receiver's package only the ticket (warm_dir: where the warm pages of a migration are).
    assert {name for name in shipped if name.startswith(("sender.", "receiver."))} == {"receiver.ticket"}


@pytest.mark.parametrize("module", sorted(set(ALL) - STREAMING))
def test_modules_that_do_not_stream_ship_neither_engine_nor_driver(module):
    assert not ships(module) & (ENGINE | DRIVER)


@pytest.mark.parametrize("module", ALL)
def test_only_edge_migrate_ships_the_driver(module):
    assert ("driver.migration_driver" in ships(module)) == (module == "edge_migrate")


def test_the_receiver_installer_ships_no_sender():
    # It installs the receiver's sources (receiver_install packs them by importing receiver).
    shipped = ships("migration_receiver")
    assert {"receiver.receiver", "receiver.receiver_install"} <= shipped
    assert not {name for name in shipped if name.startswith(("sender.", "driver."))}, sorted(shipped)
