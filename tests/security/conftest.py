# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The security suite's shared fixture: a fake Docker Engine API that logs every call (fake_docker.py)."""
from __future__ import annotations

import pytest
from fake_docker import FakeDocker


@pytest.fixture(name="fake_docker")
def fake_docker_fixture(tmp_path):
    """A started FakeDocker whose socket and data root are in ``tmp_path``; closed after the test."""
    with FakeDocker(str(tmp_path)) as fake:
        yield fake
