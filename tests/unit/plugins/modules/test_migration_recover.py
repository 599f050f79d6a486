# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""migration_recover: inspect, decide and converge with a fake Docker (issue 12, item 3)."""
from __future__ import annotations

import pytest
from fakes import CriuDocker, container, run_module, use_api

from ansible_collections.edgemig.migration.plugins.module_utils import migration_driver as drv
from ansible_collections.edgemig.migration.plugins.module_utils.migration_state import read_state, write_state
from ansible_collections.edgemig.migration.plugins.modules import migration_recover as mod


@pytest.fixture
def edge(monkeypatch, tmp_path):
    addr = {"here": False}
    monkeypatch.setattr(drv, "set_address", lambda i, a, present, *x, **kw: addr.update(here=present) or True)
    monkeypatch.setattr(drv, "address_present", lambda i, a: (addr["here"], "aa:bb:cc:dd:ee:ff"))
    monkeypatch.setattr(mod, "receiver_running", lambda name: False)
    (tmp_path / "docker").mkdir()
    api = use_api(monkeypatch, mod, CriuDocker(containers={"mysql": container("mysql", running=False)},
                                               info={"DockerRootDir": str(tmp_path / "docker")}))
    api.container_dir("mysql")
    return api, addr, str(tmp_path / "dumps")


def args(dumps, **kw):
    return dict({"name": "mysql", "dump_dir": dumps, "address": "10.213.0.102", "interface": "eth0"}, **kw)


def test_in_doubt_target_is_restored_from_its_kept_checkpoint(edge, tmp_path):
    api, addr, dumps = edge
    ck = tmp_path / "dumps" / "mysql.restore" / "edgemig"       # what the stream wrote, kept while in doubt
    ck.mkdir(parents=True)
    (ck / "pages-1.img").write_bytes(b"x")
    write_state(dumps, "mysql", "target", "in_doubt", checkpoint_dir=str(ck), work_dir=str(ck.parent))
    failed, res = run_module(mod, args(dumps, mode="inspect"))
    assert not failed, res
    assert res["facts"]["has_checkpoint"] and res["facts"]["record"]["phase"] == "in_doubt"
    source = {"record": {"role": "source", "phase": "committed"}, "exists": True, "running": False,
              "has_checkpoint": False, "checkpoint": "/d", "address_here": False}
    edges = {"edge1": source, "edge2": res["facts"]}
    failed, res2 = run_module(mod, {"name": "mysql", "mode": "decide", "edges": edges})
    assert res2["decision"]["actions"] == {"edge1": "stop", "edge2": "serve"}
    failed, res3 = run_module(mod, args(dumps, mode="converge", action="serve"))
    assert not failed and res3["changed"] and "restored from its checkpoint" in res3["done"]
    assert ("start", api.containers["mysql"]["Id"], "edgemig") in api.calls and api.restored_from == [["pages-1.img"]]
    assert addr["here"] and read_state(dumps, "mysql") is None and not ck.parent.exists()


def test_loser_stands_down_and_its_dump_goes(edge, tmp_path):
    api, addr, dumps = edge
    addr["here"] = True
    work = tmp_path / "dumps" / "mysql-1"
    (work / "edgemig").mkdir(parents=True)
    write_state(dumps, "mysql", "source", "committed", work_dir=str(work), checkpoint_dir=str(work / "edgemig"))
    failed, res = run_module(mod, args(dumps, mode="converge", action="stop"))
    assert not failed and "mysql" in api.containers and not addr["here"]      # stop keeps the copy
    assert read_state(dumps, "mysql")["phase"] == "committed" and work.exists()
    partial = tmp_path / "dumps" / "mysql.restore" / "edgemig"    # a stream cut before verified: no record
    partial.mkdir(parents=True)
    (partial / "pages-1.img").write_bytes(b"half")
    failed, res = run_module(mod, args(dumps, mode="converge", action="stand_down"))
    assert not failed and "container removed" in res["done"] and "mysql" not in api.containers
    assert read_state(dumps, "mysql") is None and not work.exists() and not partial.parent.exists()


def test_running_copy_is_left_alone(edge):
    api, addr, dumps = edge
    api.containers["mysql"]["State"]["Running"] = True
    failed, res = run_module(mod, args(dumps, mode="converge", action="serve", health={"type": "tcp", "port": 1}))
    assert not failed and res["changed"] is False and res["done"] == ["already running", "address here"]
    failed, res = run_module(mod, args(dumps, mode="converge", action="wait"))
    assert not failed, res
    assert res["done"] == []
