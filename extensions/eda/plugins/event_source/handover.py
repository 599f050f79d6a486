# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""edgemig.migration.handover: mobility events in, follow decisions out (issue 15).

An HTTP server (aiohttp, which ansible-rulebook itself depends on) on
``host:port`` takes mobility events and runs them through the hysteresis of
``follow_policy.py`` (beside this file). Only *decisions* go on the queue, as
``{"edgemig": {"action": "prepare"|"go"|"cancel", "svc", "target", "plan",
"gate", "done", ...}}``; the rulebook (extensions/eda/rulebooks/follow.yml)
starts ``playbooks/migrate.yml`` with ``follow_gate`` for each ``prepare``. That run prepares the
target, then parks on ``GET <gate>`` until this source says go (freeze now)
or no-go (remove the prepared container); it reports back on ``POST <done>``.
So a handover that finds its target prepared costs no playbook start, no
discovery and no preflight: only the gate's answer and the freeze path.

Endpoints:

- ``POST /event``: one event or a list, ``{"user": "u1", "edge": "edge2",
  "kind": "handover"|"approach", "confidence": 0.9}``; answers the decisions.
- ``GET /gate/<plan>``: the parked run's long poll; answers ``{"go": true|false}``.
- ``POST /done/<plan>``: ``{"location": "edge2", "moved": true, "report": {...}}``.
- ``GET /status``: the policy's state, counts and the timestamped log.

Arguments (rulebook ``args``): ``host`` [127.0.0.1], ``port`` [5055],
``services`` (user -> list of services) or ``services_file`` (YAML/JSON file
with a ``follow_services`` mapping), ``dwell_s`` [3], ``ttl_s`` [30],
``cooldown_s`` [0], ``prepare_timeout_s`` [90: a run that never reached its gate, e.g. a
failed preflight, is forgotten], ``min_confidence`` [0.5], ``edges`` (accepted edge names),
``locations`` (service -> edge, where they run now; learned otherwise),
``log`` (path of a JSON-lines log of events and decisions).
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from typing import Any

from aiohttp import web

DOCUMENTATION = r"""
---
short_description: Mobility events (approach, handover) in, service-follow decisions out.
description:
  - An HTTP server that takes mobility events and emits prepare/go/cancel decisions
    after hysteresis (minimum dwell, one move at a time, TTL for prepared targets).
options:
  host: {description: Address to listen on., type: str, default: 127.0.0.1}
  port: {description: Port to listen on., type: int, default: 5055}
  services: {description: User to list of services., type: dict}
  services_file: {description: YAML or JSON file with a follow_services mapping., type: str}
  dwell_s: {description: Minimum stable intent before a move., type: float, default: 3.0}
  ttl_s: {description: A prepared target without news for this long is removed., type: float, default: 30.0}
"""


def _load_policy_module():
    name = "edgemig_follow_policy"
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "follow_policy.py")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


def _mapping(value: Any) -> Any:
    """A rulebook variable may arrive rendered to text: JSON, or a Python literal."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        import ast

        try:
            return json.loads(value)
        except ValueError:
            return ast.literal_eval(value)
    return value


def load_services(args: dict[str, Any]) -> dict[str, list[str]]:
    services = _mapping(args.get("services"))
    if services is None and args.get("services_file"):
        with open(args["services_file"], encoding="utf-8") as fh:
            text = fh.read()
        try:
            data = json.loads(text)
        except ValueError:
            import yaml  # ansible-rulebook depends on PyYAML

            data = yaml.safe_load(text)
        services = data.get("follow_services", data)
    if not isinstance(services, dict) or not all(
            isinstance(u, str) and isinstance(s, list) and all(isinstance(x, str) for x in s)
            for u, s in services.items()):
        raise ValueError("services: a mapping of user -> list of service names is required")
    return services


LIVE: list[HandoverSource] = []  # running sources (tests find theirs here)


class HandoverSource:
    """The server and the policy's clock; ``queue`` gets the decisions."""

    def __init__(self, queue: Any, args: dict[str, Any]):
        policy_mod = _load_policy_module()
        self.queue = queue
        self.host = str(args.get("host", "127.0.0.1"))
        self.port = int(args.get("port", 5055))
        self.policy = policy_mod.FollowPolicy(
            services=load_services(args),
            dwell_s=float(args.get("dwell_s", 3.0)),
            ttl_s=float(args.get("ttl_s", 30.0)),
            cooldown_s=float(args.get("cooldown_s", 0.0)),
            prepare_timeout_s=float(args.get("prepare_timeout_s", 90.0)),
            min_confidence=float(args.get("min_confidence", 0.5)),
            edges=args.get("edges"),
            location=dict(_mapping(args.get("locations")) or {}),
        )
        self.event_error = policy_mod.EventError
        self.log_path = args.get("log") or None
        if self.log_path and os.path.dirname(self.log_path):
            os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self.log: list[dict] = []
        self.changed = asyncio.Condition()
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    # -- bookkeeping ------------------------------------------------------
    def _record(self, entry: dict) -> None:
        entry = {"t": time.time(), **entry}
        self.log.append(entry)
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, default=str) + "\n")

    async def _emit(self, decisions: list[dict]) -> None:
        for d in decisions:
            d = {**d, "gate": f"{self.base_url}/gate/{d['plan']}", "done": f"{self.base_url}/done/{d['plan']}"}
            self._record({"decision": d})
            await self.queue.put({"edgemig": d})
        if decisions:
            await self._poke()

    async def _poke(self) -> None:
        """The policy changed: the clock takes a new deadline, parked runs look at their gate."""
        async with self.changed:
            self.changed.notify_all()

    # -- HTTP -------------------------------------------------------------
    async def post_event(self, request: web.Request) -> web.Response:
        t_recv = time.time()
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        events = body if isinstance(body, list) else [body]
        decisions: list[dict] = []
        try:
            for ev in events:
                self._record({"event": ev, "t_recv": t_recv})
                decisions += self.policy.on_event(ev, time.monotonic())
        except self.event_error as exc:
            return web.json_response({"error": str(exc)}, status=400)
        await self._emit(decisions)
        await self._poke()
        return web.json_response({"decisions": decisions})

    async def get_gate(self, request: web.Request) -> web.Response:
        plan = request.match_info["plan"]
        self._record({"parked": plan})
        await self._emit(self.policy.prepared(plan, time.monotonic()))
        await self._poke()
        async with self.changed:
            await self.changed.wait_for(lambda: self.policy.gate_state(plan) is not None)
        state = self.policy.gate_state(plan)
        self._record({"gate": plan, "answer": state})
        return web.json_response({"go": state == "go", "plan": plan})

    async def post_done(self, request: web.Request) -> web.Response:
        plan = request.match_info["plan"]
        try:
            body = await request.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        self._record({"done": plan, **body})
        await self._emit(self.policy.on_done(plan, body.get("location") or None, bool(body.get("moved")),
                                             time.monotonic()))
        await self._poke()
        return web.json_response({"ok": True})

    async def get_status(self, request: web.Request) -> web.Response:
        return web.json_response({"policy": self.policy.snapshot(), "log": self.log}, dumps=lambda o: json.dumps(o, default=str))

    # -- life cycle -------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.post("/event", self.post_event), web.get("/gate/{plan}", self.get_gate),
                        web.post("/done/{plan}", self.post_done), web.get("/status", self.get_status)])
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        port = self.runner.addresses[0][1] if self.port == 0 else self.port
        self.port = port
        self.base_url = f"http://{self.host}:{port}"

    async def clock(self) -> None:
        """Wake at the policy's next deadline (dwell reached, TTL out) or on any change."""
        while True:
            deadline = self.policy.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            async with self.changed:
                try:
                    await asyncio.wait_for(self.changed.wait(), timeout)
                except TimeoutError:
                    pass
            await self._emit(self.policy.tick(time.monotonic()))
            await asyncio.sleep(0)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def main(queue: Any, args: dict[str, Any]) -> None:
    source = HandoverSource(queue, args)
    LIVE.append(source)
    try:
        await source.start()
        await source.clock()
    finally:
        LIVE.remove(source)
        await source.stop()


if __name__ == "__main__":
    # python handover.py [port]: print the decisions of events POSTed to 127.0.0.1:<port>.
    class _Print:
        async def put(self, event: dict) -> None:
            print(json.dumps(event), flush=True)

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5055
    asyncio.run(main(_Print(), {"port": port, "services": {"u1": ["apache"]}}))
