# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection builds and every module's documentation renders."""
from __future__ import annotations

import os
import subprocess

import pytest
from collection_path import COLLECTIONS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "plugins", "modules")) if f.endswith(".py"))
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
           ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))


def test_galaxy_build(tmp_path):
    proc = subprocess.run(["ansible-galaxy", "collection", "build", "--force", "--output-path", str(tmp_path), ROOT],
                          capture_output=True, text=True, env=ENV, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "edgemig-migration-0.1.0.tar.gz").exists()


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    proc = subprocess.run(["ansible-doc", f"edgemig.migration.{module}"], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    for section in ("OPTIONS", "EXAMPLES", "RETURN"):
        assert section in proc.stdout or section == "RETURN" and "RETURN VALUES" in proc.stdout, section
