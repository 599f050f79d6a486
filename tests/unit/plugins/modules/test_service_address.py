# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest
from fakes import run_module

from ansible_collections.edgemig.migration.plugins.module_utils.docker.switchover import SwitchoverError
from ansible_collections.edgemig.migration.plugins.modules import service_address as mod


@pytest.fixture
def iface(monkeypatch):
    """An interface in memory instead of `ip addr` and raw ARP sockets."""
    state = {"addrs": set(), "set_calls": []}

    def address_present(interface, address):
        return address in state["addrs"], "02:00:00:00:00:01"

    def set_address(interface, address, present, prefix=32, garp_count=3):
        state["set_calls"].append((interface, address, present, prefix, garp_count))
        changed = (address in state["addrs"]) != present
        (state["addrs"].add if present else state["addrs"].discard)(address)
        return changed

    monkeypatch.setattr(mod, "address_present", address_present)
    monkeypatch.setattr(mod, "set_address", set_address)
    return state


def test_add_then_idempotent(iface):
    args = {"address": "10.213.0.101", "interface": "eth0"}
    failed, res = run_module(mod, args)
    assert not failed and res == {"changed": True, "present": True}
    assert iface["set_calls"] == [("eth0", "10.213.0.101", True, 32, 3)]
    failed, res = run_module(mod, args)
    assert not failed and res["changed"] is False and res["present"] is True


def test_check_mode_predicts_without_touching(iface):
    failed, res = run_module(mod, {"address": "10.213.0.101", "interface": "eth0"}, check_mode=True)
    assert not failed and res == {"changed": True, "present": False} and iface["set_calls"] == []
    iface["addrs"].add("10.213.0.101")
    failed, res = run_module(mod, {"address": "10.213.0.101", "interface": "eth0", "state": "absent"},
                             check_mode=True)
    assert not failed and res["changed"] is True and iface["set_calls"] == []


def test_absent_removes(iface):
    iface["addrs"].add("10.213.0.101")
    failed, res = run_module(mod, {"address": "10.213.0.101", "interface": "eth0", "state": "absent"})
    assert not failed and res == {"changed": True, "present": False} and not iface["addrs"]


@pytest.mark.parametrize("bad", ["10.213.0", "fe80::1", "apache"])
def test_not_ipv4_fails_naming_the_value(iface, bad):
    failed, res = run_module(mod, {"address": bad, "interface": "eth0"})
    assert failed and res["msg"] == f"address={bad!r} is not an IPv4 address" and iface["set_calls"] == []


def test_interface_error_names_the_interface(monkeypatch):
    def broken(interface, address):
        raise SwitchoverError('ip -j addr show dev nope0: Device "nope0" does not exist.')
    monkeypatch.setattr(mod, "address_present", broken)
    failed, res = run_module(mod, {"address": "10.213.0.101", "interface": "nope0"})
    assert failed and res["msg"].startswith("interface='nope0':") and "does not exist" in res["msg"]


def test_garp_failure_is_reported(iface, monkeypatch):
    def no_raw_socket(*a, **kw):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(mod, "set_address", no_raw_socket)
    failed, res = run_module(mod, {"address": "10.213.0.101", "interface": "eth0"})
    assert failed and res["msg"].startswith("gratuitous ARP on eth0 failed")


def test_required_arguments():
    failed, res = run_module(mod, {"address": "10.213.0.101"})
    assert failed and "interface" in res["msg"]
