# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 24: the lab's catalog lives with the lab's inventory, the real-host example has a catalog of its
own with documentation addresses; what Ansible itself resolves for a host of each (ansible-inventory)."""
from __future__ import annotations

import configparser
import ipaddress
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "lab"))

import followutil  # noqa: E402
import labutil  # noqa: E402

LAB = os.path.join(ROOT, "inventory", "lab", "hosts.yml")
EXAMPLE = os.path.join(ROOT, "inventory", "example", "hosts.yml")
LAB_NET = ipaddress.ip_network("10.213.0.0/24")
DOC_NET = ipaddress.ip_network("192.0.2.0/24")   # RFC 5737 TEST-NET-1


def host_vars(inventory: str, host: str, cwd: str) -> dict:
    """What Ansible resolves for ``host`` from ``inventory`` alone: no ansible.cfg, no ANSIBLE_* of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    proc = subprocess.run(["ansible-inventory", "-i", inventory, "--host", host], capture_output=True, text=True,
                          env=env, cwd=cwd, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def hosts_of(inventory: str, cwd: str) -> set:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    proc = subprocess.run(["ansible-inventory", "-i", inventory, "--list"], capture_output=True, text=True,
                          env=env, cwd=cwd, check=False)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout)["_meta"]["hostvars"])


def addresses(services: dict) -> dict:
    return {name: ipaddress.ip_address(spec["address"]) for name, spec in services.items()}


def test_a_real_host_gets_the_examples_catalog_not_the_labs(tmp_path):
    got = host_vars(EXAMPLE, "mec1", str(tmp_path))
    services = got["edgemig_services"]
    assert set(services) == {"apache", "mysql", "tomcat", "redis", "postgres", "nginx", "mosquitto", "pyapp"}
    assert all(a in DOC_NET for a in addresses(services).values()), addresses(services)
    assert ipaddress.ip_address(got["edgemig_migration_address"]) in DOC_NET
    assert "criu_wrapper_preload" not in got and "edgemig_lab" not in got


def test_the_lab_keeps_its_catalog_and_its_addresses(tmp_path):
    got = host_vars(LAB, "edge1", str(tmp_path))
    services = got["edgemig_services"]
    assert services == labutil.catalog()
    assert all(a in LAB_NET for a in addresses(services).values()), addresses(services)
    assert all("uptime_probe" in s for s in services.values())   # the lab's tests read them
    assert got["edgemig_lab"] is True


def test_the_example_catalog_serves_the_same_services_with_the_same_fields_but_the_lab_only_ones():
    with open(os.path.join(ROOT, "inventory", "example", "group_vars", "all", "catalog.yml")) as fh:
        example = yaml.safe_load(fh)["edgemig_services"]
    lab = labutil.catalog()
    assert set(example) == set(lab)
    for name, spec in example.items():
        for field in ("image", "ports", "health"):
            assert spec[field] == lab[name][field], (name, field)
        assert spec.get("volumes", []) == lab[name]["volumes"], name


def test_every_reference_to_the_lab_inventory_names_the_new_paths():
    with open(os.path.join(ROOT, "Makefile")) as fh:
        inventory = re.search(r"^INVENTORY \?= (\S+)$", fh.read(), re.M).group(1)
    assert inventory == "inventory/lab/hosts.yml"
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "ansible.cfg"))
    assert cfg["defaults"]["inventory"] == inventory
    with open(os.path.join(ROOT, "extensions", "molecule", "config.yml")) as fh:
        assert "${MOLECULE_PROJECT_DIRECTORY}/" + inventory in fh.read()
    assert labutil.INVENTORY == os.path.join(ROOT, inventory) and os.path.isfile(labutil.INVENTORY)
    assert os.path.isfile(labutil.CATALOG)
    assert not os.path.exists(os.path.join(ROOT, "inventory", "group_vars"))


def make_follow_inventory(directory: str) -> str:
    inv = os.path.join(directory, "inventory")
    proc = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "follow-inventory", f"FOLLOW_INVENTORY={inv}"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return inv


@pytest.mark.parametrize("make", [followutil.follow_inventory, make_follow_inventory], ids=["followutil", "make"])
def test_the_follow_inventory_has_the_lab_its_catalog_and_an_explicit_localhost(tmp_path, make):
    inv = make(str(tmp_path))
    assert sorted(os.listdir(inv)) == ["controller.yml", "group_vars", "hosts.yml"]
    assert hosts_of(inv, str(tmp_path)) == {"edge1", "edge2", "edge3", "localhost"}
    assert host_vars(inv, "edge2", str(tmp_path))["edgemig_services"] == labutil.catalog()


def test_a_users_own_inventory_adds_services_and_keeps_its_relative_paths(tmp_path):
    inv = labutil.user_inventory(str(tmp_path), {"counter": {"image": "myorg/counter:1", "build": {"context": "../c"}}})
    assert inv == str(tmp_path / "inventory" / "hosts.yml")
    got = host_vars(inv, "edge1", str(tmp_path))
    assert set(got["edgemig_services"]) == set(labutil.catalog()) | {"counter"}
    # relative build contexts resolve from the inventory's directory; its image cache is its own
    assert got["base_images_cache_dir"] == "{{ inventory_dir }}/../.cache/images"
    with open(labutil.INVENTORY) as fh:
        assert labutil.LAB_IMAGE_CACHE in fh.read()
