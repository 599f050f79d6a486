# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.edgemig.migration`` importable from the checkout.

ansible-test and Ansible want the tree at ``.../ansible_collections/edgemig/migration``;
rather than moving files we point a symlink there (``make collection-link``
creates it too) and put its parent on ``sys.path``. The one copy of this
bootstrap: tests/conftest.py and the bench scripts call it.
"""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "edgemig", "migration")


def ensure_collection_path() -> str:
    """Create the symlink if needed and put its parent first on sys.path; returns that parent."""
    if not os.path.exists(LINK):
        os.makedirs(os.path.dirname(LINK), exist_ok=True)
        os.symlink(ROOT, LINK)
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)
    return COLLECTIONS


def user_env(collections: str) -> dict:
    """A user's environment: none of this checkout's ANSIBLE_* settings, the given collections path only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1")
    return env
