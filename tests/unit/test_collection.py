# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection builds and every module's documentation renders."""
from __future__ import annotations

import os
import subprocess
import tarfile

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
    tarball = tmp_path / "edgemig-migration-0.1.0.tar.gz"
    assert tarball.exists()
    # What a user installs: the collection, not this checkout's lab, benchmarks, caches or reports.
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    for must in ("MANIFEST.json", "plugins/modules/edge_migrate.py", "playbooks/migrate.yml",
                 "roles/base_images/tasks/main.yml", "plugins/filter/literal.py", "plugins/action/edge_migrate.py"):
        assert must in names, must
    for name in names:
        top = name.split("/", 1)[0]
        assert top not in ("bench", "lab", "reports", ".cache", ".hypothesis", ".benchmarks", ".ansible", ".git",
                           "Makefile", "ansible.cfg"), name
        assert "__pycache__" not in name and not (name.startswith("docs/") and name.endswith(".json")), name


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    proc = subprocess.run(["ansible-doc", f"edgemig.migration.{module}"], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    for section in ("OPTIONS", "EXAMPLES", "RETURN"):
        assert section in proc.stdout or section == "RETURN" and "RETURN VALUES" in proc.stdout, section
