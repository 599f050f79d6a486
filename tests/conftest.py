# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.edgemig.migration`` importable from the checkout (see collection_path.py)."""
from __future__ import annotations

import os

import pytest
from collection_path import ensure_collection_path

ensure_collection_path()


def _fresh_stdin() -> None:
    """Put a fresh, blocking /dev/null on fd 0.

    ansible refuses a non-blocking stdin, and O_NONBLOCK lives on the open file
    description that every child inheriting fd 0 shares: one child that sets it and is
    killed before it restores it (ssh does this; a fault case kills such processes on
    purpose) would break every later ansible run of the session. A description of each
    test's own keeps that damage inside the test that caused it.
    """
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)


_fresh_stdin()


@pytest.fixture(autouse=True)
def _own_stdin():
    _fresh_stdin()
    yield
