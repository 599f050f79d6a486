# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 23, finding 4: the follow rulebook's event source attacked over HTTP (loopback, ephemeral port).

An event's ``edge`` used to become ``target`` in run_playbook's extra vars,
which ansible-core 2.19 renders as trusted templates: ``{"edge": "{{
lookup('ansible.builtin.pipe', 'id > /tmp/x') }}edge2"}`` ran ``id`` as root on
the controller. Here the real source (extensions/eda/plugins/event_source/
handover.py, run in-process by ``handover.main`` as ansible-rulebook runs it)
gets template syntax in every field, unknown names, wrong kinds, bodies that are
not JSON or too large, and every wrong form of the token. For each: a 4xx,
nothing on the rulebook's queue, the policy untouched, and no sender text in
the source's log file.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

aiohttp = pytest.importorskip("aiohttp")  # requirements-eda.txt (ansible-rulebook depends on it)
from multidict import CIMultiDict  # noqa: E402 (aiohttp's own dependency)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "unit", "extensions", "eda"))
from eda_server import EDGES, SERVICES, TOKEN, auth, handover, run, started, stop  # noqa: E402

VALID = {"user": "u1", "edge": "edge2", "kind": "handover", "confidence": 0.9}
POC = "{{ lookup('ansible.builtin.pipe', 'id > /tmp/x') }}edge2"
# Template syntax, Jinja's delimiters alone, a bare lookup, and names that only look configured.
PAYLOADS = {
    "poc": POC,
    "expression": "{{ 7 * 7 }}",
    "statement": "{% if true %}edge2{% endif %}",
    "comment": "{# x #}edge2",
    "open-only": "edge2{{",
    "lookup": "lookup('ansible.builtin.pipe', 'id')",
    "fullwidth-braces": "\uff5b\uff5b 7*7 \uff5d\uff5dedge2",
    "fullwidth-digit": "edge\uff12",
    "cyrillic-e": "\u0435dge2",
    "zero-width": "edge2\u200b",
    "nul": "edge2\x00",
    "blank": " edge2",
    "case": "EDGE2",
}
FIELDS = ("user", "edge", "kind", "confidence")
# Markers of sender text that must never reach the queue or the log file.
TRACES = ("{{", "{%", "{#", "lookup", "\uff5b", "id >", "EDGE2", "\u0435dge", "teleport", "edge3", "u2")


def _field_cases() -> list:
    """Every payload in every field, in an extra field, and as an extra field's name."""
    cases = []
    for field in FIELDS:
        for name, payload in PAYLOADS.items():
            cases.append(pytest.param({**VALID, field: payload}, id=f"{field}-{name}"))
    for name, payload in PAYLOADS.items():
        cases.append(pytest.param({**VALID, "note": payload}, id=f"extra-field-{name}"))
    cases += [
        pytest.param({**VALID, POC: "x"}, id="template-as-key"),
        pytest.param({**VALID, "target": "edge2"}, id="extra-target"),
        pytest.param({**VALID, "edge": [POC]}, id="edge-list"),
        pytest.param({**VALID, "edge": {"edge2": POC}}, id="edge-object"),
        pytest.param({**VALID, "edge": "edge3"}, id="unknown-edge"),
        pytest.param({**VALID, "user": "u2"}, id="unknown-user"),
        pytest.param({**VALID, "kind": "teleport"}, id="wrong-kind"),
        pytest.param({**VALID, "kind": "Handover"}, id="kind-case"),
        pytest.param({**VALID, "confidence": "0.9"}, id="confidence-text"),
        pytest.param({**VALID, "confidence": True}, id="confidence-bool"),
        pytest.param({**VALID, "confidence": 7}, id="confidence-range"),
        pytest.param({**VALID, "user": None}, id="user-null"),
        pytest.param([VALID, {**VALID, "edge": POC}], id="batch-with-one-bad"),
        pytest.param([VALID] * 65, id="batch-too-long"),
        pytest.param([], id="batch-empty"),
        pytest.param("edge2", id="string-not-object"),
    ]
    return cases


BODIES = [
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff\xfe{}", id="not-utf8"),
    pytest.param(b"{'user': 'u1', 'edge': 'edge2'}", id="python-literal"),
    pytest.param(b'{"user": "u1", "edge": "edge2", "confidence": NaN}', id="nan"),
    pytest.param(b'{"user": "u1", "edge": "edge2", "confidence": Infinity}', id="infinity"),
    pytest.param(b"[" * 30000 + b"]" * 30000, id="deep-nesting"),
    pytest.param(json.dumps({**VALID, "note": "x" * (1 << 20)}).encode(), id="huge-1MiB"),
    pytest.param(b" " * (70 * 1024) + json.dumps(VALID).encode(), id="padded-past-64KiB"),
]

WRONG_AUTH = [
    pytest.param({}, id="missing"),
    pytest.param({"Authorization": ""}, id="empty"),
    pytest.param({"Authorization": "Bearer"}, id="scheme-only"),
    pytest.param({"Authorization": "Bearer wrong-token-0123456789abcdef"}, id="wrong"),
    pytest.param({"Authorization": f"Bearer {TOKEN[:-1]}"}, id="prefix"),
    pytest.param({"Authorization": f"Bearer {TOKEN}x"}, id="longer"),
    pytest.param({"Authorization": f"Bearer  {TOKEN}"}, id="two-spaces"),
    pytest.param({"Authorization": f"Bearer\t{TOKEN}"}, id="tab"),
    pytest.param({"Authorization": f"Bearer {TOKEN} {TOKEN}"}, id="token-twice"),
    pytest.param({"Authorization": f"bearer {TOKEN}"}, id="scheme-lowercase"),
    pytest.param({"Authorization": f"Token {TOKEN}"}, id="scheme-token"),
    pytest.param({"Authorization": f"Basic {TOKEN}"}, id="scheme-basic"),
    pytest.param({"Authorization": TOKEN}, id="no-scheme"),
    pytest.param({"X-Auth-Token": TOKEN}, id="x-auth-token"),
    pytest.param({"Token": TOKEN}, id="token-header"),
    pytest.param({"Authorisation": f"Bearer {TOKEN}"}, id="british-spelling"),
    pytest.param({"X-Authorization": f"Bearer {TOKEN}"}, id="x-authorization"),
    pytest.param(CIMultiDict([("Authorization", "Bearer nope-nope-nope-nope"), ("Authorization", f"Bearer {TOKEN}")]),
                 id="two-headers"),
]


async def _attack(tmp_path, method: str, path: str, body, headers, prepare: bool = False):
    """Start a source, optionally let a valid event prepare a plan, then send the attack.

    Returns (status, what the queue got after the attack, the source, the prepare decision).
    """
    src, queue, task = await started({"locations": {"apache": "edge1"}, "log": str(tmp_path / "follow.jsonl")})
    prepared = None
    try:
        async with aiohttp.ClientSession() as s:
            if prepare:
                async with s.post(src.base_url + "/event", json={**VALID, "kind": "approach"}, headers=auth()) as r:
                    assert r.status == 200
                prepared = (await queue.get())["edgemig"]
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body)
            async with s.request(method, src.base_url + path, data=data, headers=headers) as r:
                status = r.status
                await r.read()
        await asyncio.sleep(0.05)  # anything the clock would emit after the request
        got = []
        while not queue.empty():
            got.append(queue.get_nowait())
        return status, got, src, prepared
    finally:
        await stop(task)


def _untouched(src, tmp_path, events: int = 0) -> None:
    """No event taken, no plan, no user state; the log file holds no text of the sender's."""
    assert src.policy.counts["events"] == events and src.policy.counts["prepared"] == events
    assert src.policy.location == {"apache": "edge1"}
    log = tmp_path / "follow.jsonl"
    text = log.read_text(encoding="utf-8") if log.exists() else ""
    decoded = json.dumps([json.loads(line) for line in text.splitlines()], ensure_ascii=False)
    assert not [t for t in TRACES if t in decoded], decoded[-2000:]


@pytest.mark.parametrize("event", _field_cases())
def test_a_bad_event_with_the_token_is_refused_and_nothing_emitted(tmp_path, event):
    status, got, src, _reply = run(_attack(tmp_path, "POST", "/event", event, auth()))
    assert status == 400 and got == []
    assert src.policy.plans == {} and src.policy.users == {}
    _untouched(src, tmp_path)


@pytest.mark.parametrize("body", BODIES)
def test_a_body_that_is_not_an_event_is_refused(tmp_path, body):
    status, got, src, _reply = run(_attack(tmp_path, "POST", "/event", body, auth()))
    assert status in (400, 413) and got == []
    assert src.policy.plans == {} and src.policy.users == {}
    _untouched(src, tmp_path)


@pytest.mark.parametrize("headers", WRONG_AUTH)
@pytest.mark.parametrize("path,method", [("/event", "POST"), ("/status", "GET")])
def test_without_the_right_token_nothing_happens(tmp_path, headers, path, method):
    status, got, src, _reply = run(_attack(tmp_path, method, path, VALID, headers))
    assert status == 401 and got == []
    assert src.policy.plans == {} and src.policy.users == {}
    _untouched(src, tmp_path)
    assert not (tmp_path / "follow.jsonl").exists()  # an unauthenticated caller writes nothing to disk


def test_the_token_in_the_query_string_is_not_a_token(tmp_path):
    status, got, src, _reply = run(_attack(tmp_path, "POST", f"/event?token={TOKEN}", VALID, {}))
    assert status == 401 and got == [] and src.policy.users == {}


@pytest.mark.parametrize("which", ["gate", "done"])
@pytest.mark.parametrize("url", [
    pytest.param("/{which}/{plan}/wrong-key-0123456789abcdefghij", id="wrong-key"),
    pytest.param("/{which}/{plan}/" + TOKEN, id="the-event-token"),
    pytest.param("/{which}/{plan}/{{{{ 7*7 }}}}", id="template-key"),
    pytest.param("/{which}/{{{{ 7*7 }}}}/{key}", id="template-plan-right-key"),
    pytest.param("/{which}/apache-2/{key}", id="other-plan-right-key"),
])
def test_a_run_url_without_its_key_changes_nothing(tmp_path, which, url):
    async def go():
        src, queue, task = await started({"locations": {"apache": "edge1"}})
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(src.base_url + "/event", json={**VALID, "kind": "approach"}, headers=auth()) as r:
                    assert r.status == 200
                d = (await queue.get())["edgemig"]
                key = d["gate"].rsplit("/", 1)[1]
                path = url.format(which=which, plan=d["plan"], key=key)
                method = "GET" if which == "gate" else "POST"
                body = json.dumps({"location": "edge2", "moved": True})
                async with s.request(method, src.base_url + path, data=body, headers=auth()) as r:
                    status = r.status
            # aiohttp's routes take no brace in a path segment: those never reach a handler (404).
            assert status == (404 if "{" in path else 401) and queue.empty()
            assert src.policy.plans["apache"].state == "preparing" and src.policy.location == {"apache": "edge1"}
        finally:
            await stop(task)

    run(go())


def test_the_reported_exploit_is_refused(tmp_path):
    """The issue's event, as sent: refused before the policy, nothing for run_playbook."""
    marker = tmp_path / "x"
    event = {"user": "u1", "edge": POC.replace("/tmp/x", str(marker)), "kind": "handover"}
    status, got, src, _reply = run(_attack(tmp_path, "POST", "/event", event, auth()))
    assert status == 400 and got == [] and not marker.exists()
    _untouched(src, tmp_path)


def test_a_valid_event_with_the_token_still_works(tmp_path):
    status, got, src, _reply = run(_attack(tmp_path, "POST", "/event", {**VALID, "kind": "approach"}, auth()))
    assert status == 200 and len(got) == 1
    d = got[0]["edgemig"]
    assert d["action"] == "prepare" and d["svc"] in SERVICES["u1"] and d["target"] in EDGES
    assert d["target"] == "edge2" and d["plan"] == "apache-1" and handover.is_data(got)
    base = src.base_url
    key = d["gate"].rsplit("/", 1)[1]
    assert d["gate"] == f"{base}/gate/apache-1/{key}" and d["done"] == f"{base}/done/apache-1/{key}"
    assert set(d) == {"action", "svc", "target", "plan", "user_edge", "gate", "done"}
    _untouched(src, tmp_path, events=1)


def test_attacks_after_a_plan_is_prepared_leave_it_alone(tmp_path):
    """With a plan parked-to-be, a forged handover or done cannot move the service."""
    status, got, src, prepared = run(_attack(tmp_path, "POST", "/event",
                                             {**VALID, "edge": "edge2\u200b"}, auth(), prepare=True))
    assert status == 400 and got == [] and prepared["action"] == "prepare"
    assert src.policy.plans["apache"].state == "preparing" and src.policy.plans["apache"].handovers == 0
