# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/unit on sys.path, so that tests import the shared fakes as ``fakes``."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The in-process stream harness (local_stream) lives with the benchmarks, which use it too.
sys.path.insert(1, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))


@pytest.fixture(scope="session")
def collection_tarball(tmp_path_factory) -> str:
    """The collection built once per session (ansible-galaxy collection build), as a user gets it."""
    from collection_path import COLLECTIONS
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path_factory.mktemp("dist")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_CONFIG=os.path.join(root, "ansible.cfg"))
    proc = subprocess.run(["ansible-galaxy", "collection", "build", "--force", "--output-path", str(out), root],
                          capture_output=True, text=True, env=env, cwd=root, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarballs = sorted(out.glob("edgemig-migration-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    return str(tarballs[0])


@pytest.fixture(scope="session")
def installed_collection(collection_tarball, tmp_path_factory) -> str:
    """The built tarball installed into an empty collections path (no dependencies: none is reachable
    offline, and what the tests run uses none). Returns that collections path."""
    from collection_path import user_env
    path = tmp_path_factory.mktemp("collections")
    # From an empty directory with no ansible.cfg: this checkout's collection link must not count as installed.
    proc = subprocess.run(["ansible-galaxy", "collection", "install", "--offline", "--no-deps", "--force",
                           "-p", str(path), collection_tarball], capture_output=True, text=True,
                          env=user_env(str(path)), cwd=str(tmp_path_factory.mktemp("cwd")), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.path.isfile(os.path.join(path, "ansible_collections", "edgemig", "migration", "MANIFEST.json"))
    return str(path)
