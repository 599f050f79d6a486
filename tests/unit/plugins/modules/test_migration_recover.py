# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""migration_recover: inspect, decide and converge with a fake Docker (issue 12, item 3)."""
from __future__ import annotations

import pytest
from fakes import CriuDocker, container, run_module, use_api

from ansible_collections.edgemig.migration.plugins.module_utils.common.migration_state import (
    read_held,
    read_state,
    write_held,
    write_state,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.driver import recovery
from ansible_collections.edgemig.migration.plugins.modules import migration_recover as mod


@pytest.fixture
def edge(monkeypatch, tmp_path):
    addr = {"here": False}
    monkeypatch.setattr(recovery, "set_address", lambda i, a, present, *x, **kw: addr.update(here=present) or True)
    monkeypatch.setattr(recovery, "address_present", lambda i, a: (addr["here"], "aa:bb:cc:dd:ee:ff"))
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


# ---------------------------------------------------------------- the held record (issue 23, item 5)
def held_source(api, tmp_path, policy="unless-stopped"):
    """What a reboot leaves of a source a checkpoint stopped: the container stopped at policy ``no``,
    an empty dump tmpfs, and the held record beside it."""
    api.containers["mysql"]["HostConfig"]["RestartPolicy"] = {"Name": "no"}
    write_held(str(tmp_path / "held"), "mysql", api.containers["mysql"]["Id"],
               {"Name": policy, "MaximumRetryCount": 0}, work_dir=str(tmp_path / "dumps" / "mysql-1"),
               checkpoint_dir=str(tmp_path / "dumps" / "mysql-1" / "edgemig"))
    return str(tmp_path / "held")


def test_after_a_reboot_the_held_source_is_started_cold_with_its_policy(edge, tmp_path):
    api, addr, dumps = edge
    held_dir = held_source(api, tmp_path)
    failed, res = run_module(mod, args(dumps, mode="inspect"))
    assert not failed and res["facts"]["held"]["restart_policy"]["Name"] == "unless-stopped"
    assert res["facts"]["record"] is None and res["facts"]["checkpoint"] is None
    target = {"record": None, "exists": True, "running": False, "has_checkpoint": False, "checkpoint": None,
              "address_here": False, "held": None}
    failed, dec = run_module(mod, {"name": "mysql", "mode": "decide", "edges": {"edge1": res["facts"], "edge2": target}})
    assert dec["decision"]["actions"] == {"edge1": "serve", "edge2": "stand_down"} and dec["decision"]["complete"]
    failed, res = run_module(mod, args(dumps, mode="converge", action="serve"))
    assert not failed and res["changed"], res
    assert res["done"] == ["started without a checkpoint", "restart policy given back", "address here"]
    assert api.containers["mysql"]["State"]["Running"] and addr["here"]
    assert api.containers["mysql"]["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert read_held(held_dir, "mysql") is None


def test_the_migrate_gate_counts_a_held_record(edge, tmp_path):
    """tasks/recover_service.yml runs the decision at migrate.yml's start when any edge has a record or a held one."""
    api, _addr, dumps = edge
    held_source(api, tmp_path)
    failed, res = run_module(mod, args(dumps, mode="inspect"))
    assert not failed and res["facts"]["held"] and not res["facts"]["record"]


def test_a_refused_give_back_fails_the_converge_naming_the_policy(edge, tmp_path):
    api, _addr, dumps = edge
    held_dir = held_source(api, tmp_path, "always")
    api.fail["update_container"] = DockerAPIError(409, "conflict")
    failed, res = run_module(mod, args(dumps, mode="converge", action="serve"))
    assert failed and "converge of 'mysql': RestartPolicyError" in res["msg"]
    assert "could not be given back: it was 'always'" in res["msg"] and "conflict" in res["msg"]
    assert api.containers["mysql"]["State"]["Running"] and read_held(held_dir, "mysql")


def test_the_stood_down_source_loses_its_held_record_and_dump(edge, tmp_path):
    api, _addr, dumps = edge
    held_dir = held_source(api, tmp_path)
    (tmp_path / "dumps" / "mysql-1" / "edgemig").mkdir(parents=True)
    failed, res = run_module(mod, args(dumps, mode="converge", action="stop"))
    assert not failed and read_held(held_dir, "mysql")          # stop keeps the copy, and its record
    failed, res = run_module(mod, args(dumps, mode="converge", action="stand_down"))
    assert not failed and "held restart policy dropped" in res["done"] and read_held(held_dir, "mysql") is None
    assert not (tmp_path / "dumps" / "mysql-1").exists()


def test_an_own_held_dir_and_only_dirs_inside_the_dump_dir_are_removed(edge, tmp_path):
    api, _addr, dumps = edge
    outside = tmp_path / "precious"
    outside.mkdir()
    own = str(tmp_path / "my-held")
    write_held(own, "mysql", api.containers["mysql"]["Id"], {"Name": "always", "MaximumRetryCount": 0},
               work_dir=str(outside))
    write_state(dumps, "mysql", "source", "frozen", work_dir=str(tmp_path / "dumps" / ".." / "precious"))
    failed, res = run_module(mod, args(dumps, mode="converge", action="serve", held_dir=own))
    assert not failed and "restart policy given back" in res["done"] and read_held(own, "mysql") is None
    assert outside.exists()         # neither record may name a dir outside this edge's dump dir
