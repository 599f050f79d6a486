# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Catalog entries -> create bodies: entrypoint/command forms, unknown fields."""
from __future__ import annotations

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.container_spec import from_catalog


def test_entrypoint_and_command_exec_and_shell_forms():
    body = from_catalog("s", {"image": "i", "entrypoint": ["/bin/app", "--x"], "command": "echo {{ hi }}"})
    assert body["Entrypoint"] == ["/bin/app", "--x"]
    assert body["Cmd"] == ["/bin/sh", "-c", "echo {{ hi }}"]


def test_env_values_are_passed_as_written():
    body = from_catalog("s", {"image": "i", "env": {"CONF": "a={{ b }} {% raw %}"}})
    assert body["Env"] == ["CONF=a={{ b }} {% raw %}"]


def test_a_misspelt_field_is_an_error_naming_it():
    with pytest.raises(ValueError, match="unknown catalog field.*comand"):
        from_catalog("s", {"image": "i", "comand": ["x"]})


def test_build_and_archive_are_catalog_fields():
    from_catalog("s", {"image": "i", "build": {"context": "d"}})
    from_catalog("s", {"image": "i", "archive": "a.tar", "url": "http://x/"})
