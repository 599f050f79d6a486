# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""migrate.yml and recover.yml, as users type them, on an inventory whose edges lack
edgemig_address_interface for a service with an address: a clear message naming the hosts, before
any edge is contacted (the edges here are unreachable on purpose: the check must come first)."""
from __future__ import annotations

import os
import subprocess

import pytest
from collection_path import COLLECTIONS, user_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
INVENTORY = """\
all:
  children:
    edges:
      hosts:
        e1: {ansible_host: 127.0.0.1, ansible_port: 9, edgemig_address_interface: eth0}
        e2: {ansible_host: 127.0.0.1, ansible_port: 9}
  vars:
    edgemig_services:
      web: {image: "httpd:2", address: 192.0.2.10/24}
"""


@pytest.mark.parametrize("playbook", ["migrate.yml", "recover.yml"])
def test_missing_interface_is_named(tmp_path, playbook):
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    proc = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"),
                           os.path.join(ROOT, "playbooks", playbook), "-e", "svc=web"],
                          capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
                          env=user_env(COLLECTIONS))   # the collection installed, as a user has it
    assert proc.returncode != 0
    assert "needs edgemig_address_interface" in proc.stdout, proc.stdout[-3000:]
    assert "['e2']" in proc.stdout, proc.stdout[-3000:]
    assert "UNREACHABLE" not in proc.stdout, proc.stdout[-3000:]
