# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Catalog entries -> create bodies: entrypoint/command forms, unknown fields."""
from __future__ import annotations

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.docker.container_spec import from_catalog


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
    # Accepted (not "unknown catalog field"), and only the base_images role reads them: the
    # create body is the one the image alone gives, but for the spec hash, which covers the
    # whole entry (a changed recipe is a changed service).
    def body_and_hash(entry):
        body = from_catalog("s", entry)
        labels = dict(body["Labels"])
        return dict(body, Labels=labels), labels.pop("edgemig.spec-hash")

    plain, plain_hash = body_and_hash({"image": "i"})
    for extra in ({"build": {"context": "d"}}, {"archive": "a.tar", "url": "http://x/"}):
        body, spec_hash = body_and_hash({"image": "i", **extra})
        assert body == plain and spec_hash != plain_hash
