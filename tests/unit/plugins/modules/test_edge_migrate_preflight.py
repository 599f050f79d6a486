# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 12, item 4/5: edge_migrate refuses bad options before anything is frozen or
contacted, and its fault hooks are not module options (fakes only, no lab)."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.edgemig.migration.plugins.module_utils.docker import module_common, switchover
from ansible_collections.edgemig.migration.plugins.module_utils.driver import migration_driver
from ansible_collections.edgemig.migration.plugins.modules import checkpoint_transfer, edge_migrate


class Touched(Exception):
    pass


@pytest.fixture
def fakes(monkeypatch):
    """Docker, checkpoint and SSH are off limits: touching one means the preflight let it through."""
    seen = []

    def forbidden(what):
        def fn(*a, **kw):
            seen.append(what)
            raise Touched(what)
        return fn
    monkeypatch.setattr(edge_migrate, "docker_api", forbidden("docker"))
    monkeypatch.setattr(migration_driver, "create", forbidden("checkpoint"))
    monkeypatch.setattr(migration_driver, "SshStream", forbidden("connect"))
    monkeypatch.setattr(migration_driver, "interface_exists", lambda name: name == "eth0")
    monkeypatch.delenv("EDGEMIG_FAULTS", raising=False)
    monkeypatch.setattr(edge_migrate.signal, "signal", lambda *a: None)  # keep pytest's handlers
    return seen


def run_module(mod, args, capsys) -> dict:
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            mod.main()
    return json.loads(capsys.readouterr().out)


BASE = {"name": "apache", "address": "10.213.0.101", "interface": "eth0",
        "target": {"host": "10.213.0.12", "ticket": "0123456789abcdef0123456789abcdef"}}


@pytest.mark.parametrize("change, words", [
    ({"policy": "bogus"}, ["policy='bogus'", "unknown compression policy", "edgemig_policy"]),
    ({"policy": "fixed:lz9:1"}, ["policy='fixed:lz9:1'", "unknown codec"]),
    ({"address": "fd00::101"}, ["address='fd00::101'", "IPv6", "IPv4 only"]),
    ({"address": "10.213.0.101/24"}, ["address='10.213.0.101/24'", "not an IP address"]),
    ({"interface": "nosuch0"}, ["interface='nosuch0'", "no such interface", "edgemig_address_interface"]),
])
def test_bad_options_are_refused_before_the_freeze(fakes, capsys, change, words):
    out = run_module(edge_migrate, {**BASE, **change}, capsys)
    assert out["failed"] and out["rolled_back"] == "not_needed", out
    for word in words:
        assert word in out["msg"], out["msg"]
    assert fakes == [], f"touched {fakes} before refusing"


def test_good_options_pass_the_preflight(fakes, capsys):
    with patch_module_args(BASE), pytest.raises(Touched):
        edge_migrate.main()
    assert fakes == ["docker"]  # the first thing after the preflight


def test_fault_options_are_not_module_options(fakes, capsys):
    out = run_module(edge_migrate, {**BASE, "fault_corrupt_every": 3}, capsys)
    assert out["failed"] and "fault_corrupt_every" in out["msg"]
    assert "fault_" not in edge_migrate.DOCUMENTATION
    assert "fault_" not in checkpoint_transfer.DOCUMENTATION


def test_faults_come_from_the_environment(monkeypatch):
    none = {"corrupt_every": 0, "restore": False, "health": False, "pause_verified": 0.0, "pause_restore": 0.0}
    assert edge_migrate.read_faults() == none
    monkeypatch.setenv("EDGEMIG_FAULTS", '{"corrupt_every": 3}')
    assert edge_migrate.read_faults() == {**none, "corrupt_every": 3}
    monkeypatch.setenv("EDGEMIG_FAULTS", '{"restore": true, "pause_restore": 5}')
    assert edge_migrate.read_faults() == {**none, "restore": True, "pause_restore": 5.0}
    monkeypatch.setenv("EDGEMIG_FAULTS", '{"corupt_every": 3}')
    with pytest.raises(ValueError, match="EDGEMIG_FAULTS"):
        edge_migrate.read_faults()


def test_bad_fault_spec_is_refused_before_the_freeze(fakes, capsys, monkeypatch):
    monkeypatch.setenv("EDGEMIG_FAULTS", '{"corupt_every": 3}')
    out = run_module(edge_migrate, BASE, capsys)
    assert out["failed"] and out["rolled_back"] == "not_needed" and "EDGEMIG_FAULTS" in out["msg"]
    assert fakes == []


def test_checkpoint_transfer_refuses_a_bad_policy_before_connecting(monkeypatch, capsys):
    monkeypatch.setattr(checkpoint_transfer, "send_over_ssh",
                        lambda *a, **kw: (_x for _x in ()).throw(Touched("connect")))
    out = run_module(checkpoint_transfer, {"target": {"host": "10.213.0.12", "ticket": "0" * 32}, "policy": "bogus",
                                           "roots": [{"name": "layer", "src": "/a"}]}, capsys)
    assert out["failed"] and "policy='bogus'" in out["msg"]


def test_helpers():
    assert switchover.interface_exists("lo") and not switchover.interface_exists("nosuch0")
    assert module_common.ipv4_problem("10.213.0.101") is None
    assert "IPv6" in module_common.ipv4_problem("::1")
