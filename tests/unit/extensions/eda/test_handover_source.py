# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The handover event source (extensions/eda/plugins/event_source/handover.py) on 127.0.0.1, a free port."""
from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

aiohttp = pytest.importorskip("aiohttp")  # requirements-eda.txt (ansible-rulebook depends on it)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eda_server import EDGES, SERVICES, TOKEN, auth, handover, post, run, started, stop  # noqa: E402


def strings(value) -> set[str]:
    """Every string in a decision, keys included."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(strings(k) | strings(v) for k, v in value.items())) if value else set()
    if isinstance(value, list):
        return set().union(*map(strings, value)) if value else set()
    return set()


def test_events_in_decisions_on_the_queue(tmp_path):
    log = tmp_path / "follow.jsonl"

    async def go():
        src, queue, task = await started({"locations": {"apache": "edge1"}, "dwell_s": 0.2, "log": str(log)})
        async with aiohttp.ClientSession() as s:
            approach = {"user": "u1", "edge": "edge2", "kind": "approach", "confidence": 0.9}
            st, body = await post(s, src.base_url + "/event", approach)
            assert st == 200 and [d["action"] for d in body["decisions"]] == ["prepare"]
            ev = (await asyncio.wait_for(queue.get(), 5))["edgemig"]
            assert ev["action"] == "prepare" and ev["svc"] == "apache" and ev["target"] == "edge2"
            key = ev["gate"].rsplit("/", 1)[1]
            assert ev["gate"] == f"{src.base_url}/gate/{ev['plan']}/{key}" and len(key) >= 32
            assert ev["done"] == f"{src.base_url}/done/{ev['plan']}/{key}"
            # The parked run's long poll; the handover releases it (the approach was 0.2 s+ ago).
            gate = asyncio.create_task(s.get(ev["gate"]))
            await asyncio.sleep(0.3)
            assert not gate.done()
            st, body = await post(s, src.base_url + "/event", {"user": "u1", "edge": "edge2", "kind": "handover"})
            assert [d["action"] for d in body["decisions"]] == ["go"]
            resp = await asyncio.wait_for(gate, 5)
            assert await resp.json() == {"go": True, "plan": ev["plan"]}
            assert (await queue.get())["edgemig"]["action"] == "go"
            st, _body = await post(s, ev["done"], {"location": "edge2", "moved": True})
            assert st == 200
            async with s.get(src.base_url + "/status", headers=auth()) as r:
                status = await r.json()
            assert status["policy"]["location"] == {"apache": "edge2"} and status["policy"]["counts"]["moves"] == 1
        await stop(task)

    run(go())
    kinds = [next(k for k in ("event", "decision", "parked", "gate", "done") if k in e)
             for e in map(json.loads, log.read_text().splitlines())]
    assert kinds == ["event", "decision", "parked", "event", "decision", "gate", "done"]


def test_ttl_answers_no_go_by_itself():
    async def go():
        src, queue, task = await started({"locations": {"apache": "edge1"}, "ttl_s": 0.3})
        async with aiohttp.ClientSession() as s:
            await post(s, src.base_url + "/event", {"user": "u1", "edge": "edge2", "kind": "approach"})
            ev = (await queue.get())["edgemig"]
            async with s.get(ev["gate"]) as r:  # the clock cancels it, no event needed
                assert await r.json() == {"go": False, "plan": ev["plan"]}
            assert (await queue.get())["edgemig"]["action"] == "cancel"
        await stop(task)

    run(go())


def test_bad_requests_are_refused():
    async def go():
        src, queue, task = await started({})
        async with aiohttp.ClientSession() as s:
            st, _body = await post(s, src.base_url + "/event", "not json")
            assert st == 400
            st, body = await post(s, src.base_url + "/event", {"user": "u1", "edge": "edge2", "kind": "fly"})
            assert st == 400 and "kind" in body["error"]
            # One bad event in a list: none of them is used.
            st, body = await post(s, src.base_url + "/event", [{"user": "u1", "edge": "edge2"},
                                                               {"user": "u1", "edge": "edge3"}])
            assert st == 400 and "edge" in body["error"] and src.policy.counts["events"] == 0
        assert queue.empty() and src.policy.plans == {}
        await stop(task)

    run(go())


def test_a_valid_event_emits_only_configured_names():
    edges, services = ["edge-a", "edge-b"], {"alice": ["apache", "mysql"]}

    async def go():
        src, queue, task = await started({"edges": edges, "services": services,
                                          "locations": {"apache": "edge-a", "mysql": "edge-a"}})
        async with aiohttp.ClientSession() as s:
            # Fresh string objects from the wire: what comes out must be the configured ones.
            st, _body = await post(s, src.base_url + "/event", {"user": "alice", "edge": "edge-b", "kind": "approach"})
            assert st == 200
            out = [(await queue.get())["edgemig"] for _i in range(2)]
        assert queue.empty()
        for d in out:
            assert d["target"] is edges[1] and d["svc"] in services["alice"] and d["user_edge"] is None
            assert next(x for x in services["alice"] if x == d["svc"]) is d["svc"]
            urls = {d["gate"], d["done"]}
            assert strings(d) - urls <= {"prepare", "edge-b", "apache", "mysql", d["plan"]} | set(d)
            assert d["plan"] in (f"{d['svc']}-1", f"{d['svc']}-2") and handover.is_data(d)
        await stop(task)

    run(go())


def test_gate_done_and_status_want_their_credentials():
    async def go():
        src, queue, task = await started({"locations": {"apache": "edge1"}})
        async with aiohttp.ClientSession() as s:
            await post(s, src.base_url + "/event", {"user": "u1", "edge": "edge2", "kind": "approach"})
            ev = (await queue.get())["edgemig"]
            plan, key = ev["plan"], ev["gate"].rsplit("/", 1)[1]
            wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
            for url in (f"{src.base_url}/gate/{plan}/{wrong}", f"{src.base_url}/gate/{plan}/{TOKEN}",
                        f"{src.base_url}/gate/apache-9/{key}"):
                async with s.get(url, headers=auth()) as r:
                    assert r.status == 401
            async with s.get(f"{src.base_url}/gate/{plan}") as r:
                assert r.status == 404
            st, _body = await post(s, f"{src.base_url}/done/{plan}/{wrong}", {"location": "edge2", "moved": True})
            assert st == 401
            async with s.get(src.base_url + "/status") as r:
                assert r.status == 401
            # Nothing changed: the plan still prepares, nothing moved, the location stands.
            assert src.policy.plans["apache"].state == "preparing" and src.policy.location == {"apache": "edge1"}
            # The run's own done (its URL) ends the plan; its key is then spent.
            st, _body = await post(s, ev["done"], {"location": "edge1", "moved": False}, headers={})
            assert st == 200 and src.policy.plans == {} and plan not in src.keys
            st, _body = await post(s, ev["done"], {"location": "edge2", "moved": True}, headers={})
            assert st == 401 and src.policy.location == {"apache": "edge1"}
        assert queue.empty()
        await stop(task)

    run(go())


def test_a_done_report_is_typed_and_its_location_configured():
    async def go():
        src, queue, task = await started({})
        async with aiohttp.ClientSession() as s:
            await post(s, src.base_url + "/event", {"user": "u1", "edge": "edge2", "kind": "approach"})
            ev = (await queue.get())["edgemig"]
            st, _body = await post(s, ev["done"], {"location": "{{ 7 }}", "moved": "yes", "t": 0, "done": "x",
                                                   "downtime_s": "1.5", "stages_s": {"a": 1, "b": "{{"},
                                                   "parked": {"go_seen_at": 1.5e9, "freeze_at": "{{ x }}", "x": 1}})
            assert st == 200 and src.policy.location == {}  # an unknown place is no place
        rec = [e for e in src.log if "done" in e][-1]
        assert rec["done"] == ev["plan"] and rec["location"] is None and rec["moved"] is False
        assert rec["downtime_s"] == 1.5 and rec["stages_s"] == {"a": 1.0} and rec["t"] > 1e9
        assert rec["parked"] == {"go_seen_at": 1.5e9}       # its two marks, numbers only
        await stop(task)

    run(go())


@pytest.mark.parametrize("args,msg", [
    ({"edges": None}, "edges"),
    ({"edges": []}, "edges"),
    ({"edges": ["edge1", "{{ lookup('pipe', 'id') }}"]}, "edges"),
    ({"edges": ["edge\uff11"]}, "edges"),  # a fullwidth digit
    ({"services": {"{{u}}": ["apache"]}}, "user"),
    ({"services": {"u1": ["apa che"]}}, "service"),
    ({"locations": {"apache": "edge9"}}, "locations"),
    ({"locations": {"tomcat": "edge1"}}, "locations"),
    ({"token": "short"}, "token"),
    ({"token": "a token with blanks in it"}, "token"),
    ({"token": ""}, "token is required"),
])
def test_a_bad_configuration_does_not_start(args, msg):
    with pytest.raises(ValueError, match=msg):
        run(started(args))


def test_the_token_file_is_made_0600_then_read(tmp_path, caplog):
    path = tmp_path / "eda" / "follow-token"
    tok = handover.load_token({"token_file": str(path)})
    assert path.read_text().strip() == tok and len(tok) >= 32 and (path.stat().st_mode & 0o777) == 0o600
    assert str(path) in caplog.text  # where to find it is logged
    assert handover.load_token({"token_file": str(path)}) == tok
    assert handover.load_token({"token": TOKEN, "token_file": str(path)}) == TOKEN  # token wins
    path.chmod(0o644)
    with pytest.raises(ValueError, match="0600"):
        handover.load_token({"token_file": str(path)})
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(OSError):
        handover.load_token({"token_file": str(link)})


def test_is_data():
    assert handover.is_data({"a": ["b", 1, 2.0, None, True, {"c": "d"}]})
    for bad in ("{{x}}", "a{%b", "{#", {"{{": 1}, ["ok", {"x": "{% if %}"}], object()):
        assert not handover.is_data(bad)


def test_edges_and_services_rendered_to_text():
    assert handover.load_edges({"edges": "['edge1', 'edge2']"}) == EDGES
    assert handover.load_edges({"edges": '["edge1"]'}) == ["edge1"]
    assert handover.load_services({"services": str(SERVICES)}) == SERVICES


def test_services_from_a_file_or_rendered_text(tmp_path):
    f = tmp_path / "map.yml"
    f.write_text("follow_services:\n  u1: [apache, mysql]\n")
    assert handover.load_services({"services_file": str(f)}) == {"u1": ["apache", "mysql"]}
    assert handover.load_services({"services": "{'u2': ['tomcat']}"}) == {"u2": ["tomcat"]}
    with pytest.raises(ValueError):
        handover.load_services({"services": {"u1": "apache"}})
