# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest
from fakes import run_module

from ansible_collections.edgemig.migration.plugins.module_utils.sender.ssh_stream import TransferError
from ansible_collections.edgemig.migration.plugins.modules import checkpoint_transfer as mod

ROOTS = [{"name": "checkpoint", "src": "/d/ck"}, {"name": "layer", "src": "/d/up"}]
TICKET = "0123456789abcdef0123456789abcdef"
TARGET = {"host": "10.213.0.12", "ticket": TICKET}


@pytest.fixture
def stream(monkeypatch):
    """Stands in for the SSH stream: records what would be sent where."""
    calls = []

    def send_over_ssh(src, ticket, **kw):
        calls.append({"src": src, "ticket": ticket, **kw})
        return {"bytes_raw": 10, "bytes_wire": 4, "timeline": [{"t": 0.1}]}

    monkeypatch.setattr(mod, "send_over_ssh", send_over_ssh)
    return calls


def test_roots_and_volumes_become_one_stream(stream):
    failed, res = run_module(mod, {"roots": ROOTS, "target": TARGET,
                                   "source_volumes": [{"name": "db", "path": "/s/db"}]})
    assert not failed and res["changed"] is True
    assert res["stats"] == {"bytes_raw": 10, "bytes_wire": 4} and res["timeline"] == [{"t": 0.1}]
    call = stream[0]
    assert call["src"] == [("checkpoint", "/d/ck"), ("layer", "/d/up"), ("volume/db", "/s/db")]
    assert call["ticket"] == TICKET and "dest" not in call and "clear" not in call  # the target's ticket says
    assert call["host"] == "10.213.0.12" and call["port"] == 22 and call["policy"] == "model"


@pytest.mark.parametrize("roots, message", [
    ([{"name": "../etc", "src": "/a"}], "roots[0].name='../etc': must be checkpoint, layer or volume/"),
    ([{"name": "layer"}], "roots[0] (layer): src is required"),
    ([{"name": "layer", "src": "/a"}, {"name": "layer", "src": "/c"}], "roots[1]: root 'layer' given twice"),
])
def test_bad_roots_fail_before_connecting(stream, roots, message):
    failed, res = run_module(mod, {"roots": roots, "target": TARGET})
    assert failed and res["msg"].startswith(message) and stream == []


@pytest.mark.parametrize("size", [1000, 4096 * 5000, 4097])
def test_chunk_size_is_checked(stream, size):
    failed, res = run_module(mod, {"roots": ROOTS, "target": TARGET, "chunk_size": size})
    assert failed and res["msg"].startswith(f"chunk_size={size}:") and stream == []


def test_transfer_errors_name_the_host_or_the_policy(monkeypatch):
    def refused(*a, **kw):
        raise TransferError("connection refused")
    monkeypatch.setattr(mod, "send_over_ssh", refused)
    failed, res = run_module(mod, {"roots": ROOTS, "target": TARGET})
    assert failed and res["msg"] == "transfer to 10.213.0.12 failed: connection refused"

    # A bad policy is refused before anything is sent (controller.parse_policy).
    calls = []
    monkeypatch.setattr(mod, "send_over_ssh", lambda *a, **kw: calls.append(a))
    failed, res = run_module(mod, {"roots": ROOTS, "target": TARGET, "policy": "fast"})
    assert failed and res["msg"].startswith("policy='fast': unknown compression policy 'fast'") and calls == []


def test_missing_paramiko_fails_with_missing_required_lib(monkeypatch, stream):
    monkeypatch.setattr(mod, "HAS_PARAMIKO", False)
    failed, res = run_module(mod, {"roots": ROOTS, "target": TARGET})
    assert failed and "paramiko" in res["msg"] and stream == []


def test_check_mode_is_not_supported(stream):
    failed, res = run_module(mod, {"roots": ROOTS, "target": TARGET}, check_mode=True)
    assert not failed and res.get("skipped") is True and stream == []


def test_a_volume_the_target_lacks_is_refused_before_connecting(stream):
    failed, res = run_module(mod, {"roots": ROOTS, "target": dict(TARGET, volumes=[]),
                                   "source_volumes": [{"name": "db", "path": "/s"}]})
    assert failed and "source volume 'db' has no counterpart" in res["msg"] and stream == []
    failed, res = run_module(mod, {"roots": ROOTS, "target": dict(TARGET, checkpoint_dir="/etc")})
    assert failed and "target.checkpoint_dir" in res["msg"] and stream == []   # no silent default
