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
from eda_paths import load  # noqa: E402

handover = load("handover", "edgemig_handover_source")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def started(args):
    queue = asyncio.Queue()
    task = asyncio.create_task(handover.main(queue, {"host": "127.0.0.1", "port": 0, **args}))
    # main() builds the source; find it through the server it started.
    for _attempt in range(200):
        await asyncio.sleep(0.01)
        srcs = [o for o in handover.LIVE if o.queue is queue]
        if srcs and srcs[0].base_url:
            return srcs[0], queue, task
    raise AssertionError("source did not start")


async def stop(task):
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def post(session, url, body):
    async with session.post(url, data=json.dumps(body)) as r:
        return r.status, await r.json()


def test_events_in_decisions_on_the_queue(tmp_path):
    log = tmp_path / "follow.jsonl"

    async def go():
        src, queue, task = await started({"services": {"u1": ["apache"]}, "locations": {"apache": "edge1"},
                                          "dwell_s": 0.2, "log": str(log)})
        async with aiohttp.ClientSession() as s:
            approach = {"user": "u1", "edge": "edge2", "kind": "approach", "confidence": 0.9}
            st, body = await post(s, src.base_url + "/event", approach)
            assert st == 200 and [d["action"] for d in body["decisions"]] == ["prepare"]
            ev = (await asyncio.wait_for(queue.get(), 5))["edgemig"]
            assert ev["action"] == "prepare" and ev["svc"] == "apache" and ev["target"] == "edge2"
            assert ev["gate"] == f"{src.base_url}/gate/{ev['plan']}" and ev["done"].endswith("/done/" + ev["plan"])
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
            async with s.get(src.base_url + "/status") as r:
                status = await r.json()
            assert status["policy"]["location"] == {"apache": "edge2"} and status["policy"]["counts"]["moves"] == 1
        await stop(task)

    run(go())
    kinds = [next(k for k in ("event", "decision", "parked", "gate", "done") if k in e)
             for e in map(json.loads, log.read_text().splitlines())]
    assert kinds == ["event", "decision", "parked", "event", "decision", "gate", "done"]


def test_ttl_answers_no_go_by_itself():
    async def go():
        src, queue, task = await started({"services": {"u1": ["apache"]}, "locations": {"apache": "edge1"},
                                          "ttl_s": 0.3})
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
        src, queue, task = await started({"services": {"u1": ["apache"]}})
        async with aiohttp.ClientSession() as s:
            async with s.post(src.base_url + "/event", data="not json") as r:
                assert r.status == 400
            st, body = await post(s, src.base_url + "/event", {"user": "u1", "edge": "edge2", "kind": "fly"})
            assert st == 400 and "kind" in body["error"]
        assert queue.empty()
        await stop(task)

    run(go())


def test_services_from_a_file_or_rendered_text(tmp_path):
    f = tmp_path / "map.yml"
    f.write_text("follow_services:\n  u1: [apache, mysql]\n")
    assert handover.load_services({"services_file": str(f)}) == {"u1": ["apache", "mysql"]}
    assert handover.load_services({"services": "{'u2': ['tomcat']}"}) == {"u2": ["tomcat"]}
    with pytest.raises(ValueError):
        handover.load_services({"services": {"u1": "apache"}})
