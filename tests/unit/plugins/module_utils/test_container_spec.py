# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.docker import container_spec as cs

SPEC = {"image": "edgemig/mysql:bookworm", "command": ["mariadbd"], "env": {"B": "2", "A": "1"},
        "ports": [{"container": 3306, "host": 3306}, {"container": 53, "proto": "udp"}],
        "volumes": [{"name": "mysql-data", "path": "/var/lib/mysql"}]}


def test_from_catalog():
    body = cs.from_catalog("mysql", SPEC)
    assert body["Image"] == "edgemig/mysql:bookworm" and body["Hostname"] == "mysql" and body["Cmd"] == ["mariadbd"]
    assert body["Env"] == ["A=1", "B=2"]                                  # sorted: a stable spec
    assert body["ExposedPorts"] == {"3306/tcp": {}, "53/udp": {}}
    assert body["HostConfig"]["PortBindings"] == {"3306/tcp": [{"HostIp": "", "HostPort": "3306"}]}
    assert body["HostConfig"]["Mounts"] == [{"Type": "volume", "Source": "mysql-data", "Target": "/var/lib/mysql"}]
    assert body["Labels"] == {cs.LABEL_SERVICE: "mysql", cs.LABEL_SPEC: cs.spec_hash(SPEC)}


def test_from_catalog_needs_an_image():
    with pytest.raises(ValueError, match="'web': catalog entry has no image"):
        cs.from_catalog("web", {"ports": []})


def test_spec_hash_ignores_key_order_and_sees_values():
    assert cs.spec_hash({"a": 1, "b": 2}) == cs.spec_hash({"b": 2, "a": 1})
    assert cs.spec_hash({"a": 1}) != cs.spec_hash({"a": 2})
    assert len(cs.spec_hash(SPEC)) == 16


INSPECT = {
    "Id": "c1", "Name": "/mysql", "Image": "sha256:abc",
    "State": {"Running": True, "Status": "running", "StartedAt": "t"},
    "Config": {"Image": "edgemig/mysql:bookworm", "Env": ["A=1"], "Cmd": ["mariadbd"], "Hostname": "mysql",
               "Labels": {"x": "y"}, "Tty": False, "User": ""},
    "HostConfig": {"Binds": ["mysql-data:/var/lib/mysql", "/etc/hosts.d:/etc/hosts.d:ro"], "CgroupParent": "/lab",
                   "PortBindings": {"3306/tcp": [{"HostPort": "3306"}]}, "Privileged": False, "Dns": [],
                   "LogConfig": {"Type": "json-file"}},
    "Mounts": [{"Type": "volume", "Name": "mysql-data", "Source": "/var/lib/docker/volumes/mysql-data/_data",
                "Destination": "/var/lib/mysql"},
               {"Type": "bind", "Source": "/etc/hosts.d", "Destination": "/etc/hosts.d"}],
    "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": "/var/lib/docker/overlay2/u/diff"}},
    "NetworkSettings": {"IPAddress": "172.17.0.2"},
}


def test_from_inspect_reproduces_a_container_by_image_id():
    body = cs.from_inspect(INSPECT)
    assert body["Image"] == "sha256:abc"                                  # the ID, not the tag
    assert body["Env"] == ["A=1"] and body["Tty"] is False and "User" in body
    hc = body["HostConfig"]
    assert "CgroupParent" not in hc and "LogConfig" not in hc and "Dns" not in hc   # host-specific or empty
    assert hc["Privileged"] is False
    assert hc["Mounts"] == [{"Type": "volume", "Source": "mysql-data", "Target": "/var/lib/mysql"}]
    assert hc["Binds"] == ["/etc/hosts.d:/etc/hosts.d:ro"]               # named-volume binds go via Mounts


def test_upper_dir_volumes_checkpoint_dir_summary():
    assert cs.upper_dir(INSPECT) == "/var/lib/docker/overlay2/u/diff"
    assert cs.upper_dir({"GraphDriver": {"Name": "vfs"}}) is None
    assert cs.volumes(INSPECT) == [{"name": "mysql-data", "path": "/var/lib/docker/volumes/mysql-data/_data",
                                    "destination": "/var/lib/mysql"}]
    s = cs.summary(INSPECT)
    assert s["exists"] and s["running"] and s["name"] == "mysql" and s["image_id"] == "sha256:abc"
    assert s["image"] == "edgemig/mysql:bookworm" and s["ip_address"] == "172.17.0.2"
    assert cs.summary(None) == {"exists": False, "running": False}
