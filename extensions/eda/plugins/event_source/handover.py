# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""edgemig.migration.handover: mobility events in, follow decisions out (issue 15).

An HTTP server (aiohttp, which ansible-rulebook itself depends on) on
``host:port`` takes mobility events and runs them through the hysteresis of
``follow_policy.py`` (beside this file). Only *decisions* go on the queue, as
``{"edgemig": {"action": "prepare"|"go"|"cancel", "svc", "target", "plan",
"gate", "done", ...}}``; the rulebook (extensions/eda/rulebooks/follow.yml)
starts ``edgemig.migration.migrate`` (playbooks/migrate.yml) with ``follow_gate`` for each ``prepare``. That run prepares the
target, then parks on ``GET <gate>`` until this source says go (freeze now)
or no-go (remove the prepared container); it reports back on ``POST <done>``.
So a handover that finds its target prepared costs no playbook start, no
discovery and no preflight: only the gate's answer and the freeze path.

Event values are data, never templates (issue 23): ansible-rulebook hands a
decision's values to ansible-playbook as extra vars, which ansible-core 2.19
renders as trusted templates. So every field of an event is checked against
the configuration (``user`` a key of ``services``, ``edge`` one of ``edges``,
``kind`` a known kind, ``confidence`` a number, nothing else) and a decision
holds only configured names, plan ids made of them and URLs made here; the
last check before the queue refuses any ``{{``, ``{%`` or ``{#``. Names in the
configuration itself must match ``NAME`` or the source does not start.

Endpoints (a request without the right credential gets 401 and changes nothing):

- ``POST /event`` (``Authorization: Bearer <token>``, as ``ansible.eda.webhook``):
  one event or a list, ``{"user": "u1", "edge": "edge2", "kind": "handover"|"approach",
  "confidence": 0.9}``; answers the decisions, or 400 (and nothing of the request
  is used) if any event is refused.
- ``GET /gate/<plan>/<key>``: the parked run's long poll; answers ``{"go": true|false}``.
- ``POST /done/<plan>/<key>``: ``{"location": "edge2", "moved": true, "report": ...}``.
  ``<key>`` is an unguessable per-plan secret: the gate and done URLs a decision
  carries are the credential of the one run started for that plan.
- ``GET /status`` (bearer token): the policy's state, counts and the timestamped log.

Arguments (rulebook ``args``): ``host`` [127.0.0.1], ``port`` [5055],
``token`` (the bearer token) or ``token_file`` (a file holding it, owned by this
user and mode 0600; made with a random token, and its path logged, if missing;
with neither the source does not start), ``edges`` (accepted edge names, required),
``services`` (user -> list of services) or ``services_file`` (YAML/JSON file
with a ``follow_services`` mapping), ``dwell_s`` [3], ``ttl_s`` [30],
``cooldown_s`` [0], ``prepare_timeout_s`` [90: a run that never reached its gate, e.g. a
failed preflight, is forgotten], ``min_confidence`` [0.5],
``locations`` (service -> edge, where they run now; learned otherwise),
``log`` (path of a JSON-lines log of events and decisions).
"""
from __future__ import annotations

import asyncio
import hmac
import importlib.util
import ipaddress
import json
import logging
import math
import os
import re
import secrets
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
  - Every event field is checked against the configured users, edges and kinds;
    decisions hold only configured names, never a sender's text.
options:
  host: {description: Address to listen on (loopback unless told otherwise)., type: str, default: 127.0.0.1}
  port: {description: Port to listen on., type: int, default: 5055}
  token: {description: "Bearer token POST /event and GET /status require (Authorization: Bearer <token>).", type: str}
  token_file: {description: File with the token (mode 0600); created with a random token if missing., type: str}
  edges: {description: Edge names an event may name., type: list, required: true}
  services: {description: User to list of services., type: dict}
  services_file: {description: YAML or JSON file with a follow_services mapping., type: str}
  dwell_s: {description: Minimum stable intent before a move., type: float, default: 3.0}
  ttl_s: {description: A prepared target without news for this long is removed., type: float, default: 30.0}
"""

LOG = logging.getLogger("edgemig.handover")
# What a configured user, edge or service may be called: host-name-like ASCII, no
# braces, percent or hash (Jinja's delimiters), no space, no lookalike letters.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}", re.ASCII)
TEMPLATE_MARKERS = ("{{", "{%", "{#")
MAX_BODY = 64 * 1024  # an event is ~100 bytes; aiohttp answers 413 past this
MAX_EVENTS = 64  # per POST
MIN_TOKEN = 16


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


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ValueError(f"{what}: {value!r} is not a name ({NAME.pattern})")
    return value


def load_edges(args: dict[str, Any]) -> list[str]:
    """The edges an event may name: required, since an unchecked edge becomes a playbook's target."""
    edges = _mapping(args.get("edges"))
    if not isinstance(edges, list) or not edges:
        raise ValueError("edges: a list of edge names is required (rulebook var follow_edges)")
    return [_name(e, "edges") for e in edges]


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
    for user, svcs in services.items():
        _name(user, "services (user)")
        for svc in svcs:
            _name(svc, "services (service)")
    return services


def load_locations(args: dict[str, Any], services: dict[str, list[str]], edges: list[str]) -> dict[str, str]:
    locations = dict(_mapping(args.get("locations")) or {})
    known = {svc for svcs in services.values() for svc in svcs}
    for svc, edge in locations.items():
        if svc not in known or edge not in edges:
            raise ValueError(f"locations: {svc!r} -> {edge!r} is not a configured service on a configured edge")
    return locations


# -- the token -------------------------------------------------------------
def _check_token(token: str, where: str) -> str:
    # Printable ASCII without blanks: it travels in a header, compared byte for byte.
    if len(token) < MIN_TOKEN or not all(33 <= ord(c) <= 126 for c in token):
        raise ValueError(f"{where}: the token must be at least {MIN_TOKEN} printable ASCII characters, no blanks")
    return token


def _read_token_file(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, encoding="ascii", errors="replace") as fh:
        st = os.fstat(fh.fileno())
        # Another user's file, or one others can read, is not a secret of ours.
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise ValueError(f"token_file {path}: must be owned by uid {os.getuid()} and mode 0600")
        return _check_token(fh.read().strip(), f"token_file {path}")


def _token_from_file(path: str) -> str:
    """The token in ``path``; a new random one written there (0600) if there is none yet."""
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return _read_token_file(path)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(token + "\n")
    LOG.warning("handover: no token configured and no token file yet: generated one in %s "
                "(requests send 'Authorization: Bearer <its content>')", os.path.abspath(path))
    return token


def load_token(args: dict[str, Any]) -> str:
    """``token``, else ``token_file``; neither: no start (loopback is shared by every local user)."""
    token = args.get("token")
    if token not in (None, ""):
        return _check_token(str(token), "token")
    if args.get("token_file"):
        return _token_from_file(str(args["token_file"]))
    raise ValueError("handover: a token is required: set token (rulebook var follow_token or env FOLLOW_TOKEN "
                     "with -E FOLLOW_TOKEN) or token_file (follow_token_file)")


def bearer_ok(request: web.Request, token: str) -> bool:
    """Exactly one ``Authorization: Bearer <token>`` header, compared in constant time (ansible.eda.webhook's form)."""
    values = request.headers.getall("Authorization", [])
    if len(values) != 1:
        return False
    given = values[0].encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, ("Bearer " + token).encode("ascii"))


# -- what leaves the source ------------------------------------------------
def is_data(value: Any) -> bool:
    """No template delimiter in any string of ``value`` (keys included), however deep."""
    if isinstance(value, str):
        return not any(m in value for m in TEMPLATE_MARKERS)
    if isinstance(value, dict):
        return all(is_data(k) and is_data(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(is_data(v) for v in value)
    return value is None or isinstance(value, (bool, int, float))


class Refused(Exception):
    """A request answered with ``status`` and nothing of it used."""

    def __init__(self, status: int, why: str):
        super().__init__(why)
        self.status = status


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a number here")


async def read_json(request: web.Request) -> Any:
    """The body as JSON, or Refused: too large (413), not UTF-8, not JSON, NaN/Infinity, nested too deep (400)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refused(413, f"body larger than {MAX_BODY} bytes") from None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Refused(400, "body is not JSON") from None


def _number(value: Any) -> float | None:
    """A finite number (or numeric text: the playbook's templating may give either); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        out = float(value)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


LIVE: list[HandoverSource] = []  # running sources (tests find theirs here)


class HandoverSource:
    """The server and the policy's clock; ``queue`` gets the decisions."""

    def __init__(self, queue: Any, args: dict[str, Any]):
        policy_mod = _load_policy_module()
        self.queue = queue
        self.host = str(args.get("host") or "127.0.0.1")
        self.port = int(args.get("port", 5055))
        self.edges = load_edges(args)
        services = load_services(args)
        self.token = load_token(args)
        self.policy = policy_mod.FollowPolicy(
            services=services,
            dwell_s=float(args.get("dwell_s", 3.0)),
            ttl_s=float(args.get("ttl_s", 30.0)),
            cooldown_s=float(args.get("cooldown_s", 0.0)),
            prepare_timeout_s=float(args.get("prepare_timeout_s", 90.0)),
            min_confidence=float(args.get("min_confidence", 0.5)),
            edges=self.edges,
            location=load_locations(args, services, self.edges),
        )
        self.parse_event = policy_mod.parse_event
        self.event_error = policy_mod.EventError
        self.keys: dict[str, str] = {}  # plan -> the secret in its gate and done URLs
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

    def _refuse(self, request: web.Request, status: int, why: str) -> web.Response:
        """A refused request: a log line (no text of the sender's in it) and the answer."""
        LOG.warning("handover: refused %s %r from %s: %s", request.method, request.path, request.remote, why)
        if status != 401:  # an unauthenticated caller does not get to write into our log file
            self._record({"refused": why, "path": request.path})
        return web.json_response({"error": why}, status=status)

    def _key(self, plan: str) -> str:
        return self.keys.setdefault(plan, secrets.token_urlsafe(24))

    def _urls(self, plan: str) -> dict:
        key = self._key(plan)
        return {"gate": f"{self.base_url}/gate/{plan}/{key}", "done": f"{self.base_url}/done/{plan}/{key}"}

    async def _emit(self, decisions: list[dict]) -> None:
        for d in decisions:
            if not is_data(d):  # cannot happen with checked names; if it ever does, nothing runs
                LOG.error("handover: a decision with template syntax was not emitted: %s", d.get("action"))
                continue
            self._record({"decision": d})  # without the URLs: their keys are the runs' credentials
            await self.queue.put({"edgemig": {**d, **self._urls(d["plan"])}})
        if decisions:
            await self._poke()

    async def _poke(self) -> None:
        """The policy changed: the clock takes a new deadline, parked runs look at their gate."""
        async with self.changed:
            self.changed.notify_all()

    def _run_key_ok(self, request: web.Request) -> bool:
        key = self.keys.get(request.match_info["plan"])
        return key is not None and hmac.compare_digest(request.match_info["key"].encode("utf-8", "surrogateescape"),
                                                       key.encode("ascii"))

    def _forget_keys(self) -> None:
        """Keys of plans the policy no longer has (done, or forgotten after a timeout)."""
        live = {p.plan for p in self.policy.plans.values()}
        for plan in [p for p in self.keys if p not in live]:
            del self.keys[plan]

    # -- HTTP -------------------------------------------------------------
    def _events(self, body: Any) -> list[dict]:
        """Every event of the request checked before any is used: one bad event refuses them all."""
        events = body if isinstance(body, list) else [body]
        if not events or len(events) > MAX_EVENTS:
            raise Refused(400, f"1 to {MAX_EVENTS} events per request")
        try:
            return [self.parse_event(ev, users=self.policy.services, edges=self.edges) for ev in events]
        except self.event_error as exc:
            raise Refused(400, str(exc)) from None

    async def post_event(self, request: web.Request) -> web.Response:
        t_recv = time.time()
        if not bearer_ok(request, self.token):
            return self._refuse(request, 401, "missing or wrong bearer token")
        try:
            events = self._events(await read_json(request))
        except Refused as exc:
            return self._refuse(request, exc.status, str(exc))
        decisions: list[dict] = []
        for ev in events:
            self._record({"event": ev, "t_recv": t_recv})
            decisions += self.policy.on_event(ev, time.monotonic())
        await self._emit(decisions)
        await self._poke()
        return web.json_response({"decisions": decisions})

    async def get_gate(self, request: web.Request) -> web.Response:
        if not self._run_key_ok(request):
            return self._refuse(request, 401, "unknown plan or wrong key")
        plan = request.match_info["plan"]
        self._record({"parked": plan})
        await self._emit(self.policy.prepared(plan, time.monotonic()))
        await self._poke()
        async with self.changed:
            await self.changed.wait_for(lambda: self.policy.gate_state(plan) is not None)
        state = self.policy.gate_state(plan)
        self._record({"gate": plan, "answer": state})
        return web.json_response({"go": state == "go", "plan": plan})

    def _done_report(self, body: Any) -> dict:
        """What a run reports, typed; only configured edges count as a location."""
        body = body if isinstance(body, dict) else {}
        location = next((e for e in self.edges if e == body.get("location")), None)
        out: dict[str, Any] = {"location": location, "moved": body.get("moved") is True}
        for k in ("t_migrated", "downtime_s"):
            if (n := _number(body.get(k))) is not None:
                out[k] = n
        parked = body.get("parked")
        if isinstance(parked, dict):   # the park's wall-clock marks (edge_migrate's parked), numbers only
            out["parked"] = {k: n for k in ("go_seen_at", "freeze_at") if (n := _number(parked.get(k))) is not None}
        stages = body.get("stages_s")
        if isinstance(stages, dict):
            out["stages_s"] = {str(k)[:64]: _number(v) for k, v in stages.items() if _number(v) is not None}
        for k in ("report", "why"):
            if isinstance(body.get(k), str):
                out[k] = body[k][:1000]
        return out

    async def post_done(self, request: web.Request) -> web.Response:
        if not self._run_key_ok(request):
            return self._refuse(request, 401, "unknown plan or wrong key")
        plan = request.match_info["plan"]
        try:
            body = await read_json(request)
        except Refused:
            body = {}  # the run ended all the same: the plan is over, its location unknown
        report = self._done_report(body)
        self._record({"done": plan, **report})
        await self._emit(self.policy.on_done(plan, report["location"], report["moved"], time.monotonic()))
        self._forget_keys()
        await self._poke()
        return web.json_response({"ok": True})

    async def get_status(self, request: web.Request) -> web.Response:
        if not bearer_ok(request, self.token):
            return self._refuse(request, 401, "missing or wrong bearer token")
        return web.json_response({"policy": self.policy.snapshot(), "log": self.log}, dumps=lambda o: json.dumps(o, default=str))

    # -- life cycle -------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes([web.post("/event", self.post_event), web.get("/gate/{plan}/{key}", self.get_gate),
                        web.post("/done/{plan}/{key}", self.post_done), web.get("/status", self.get_status)])
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        port = self.runner.addresses[0][1] if self.port == 0 else self.port
        self.port = port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{host}:{port}"
        if not _loopback(self.host):
            LOG.warning("handover: listening on %s, not loopback: the token and the gate keys cross the network "
                        "in clear text (plain HTTP)", self.host)

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
            self._forget_keys()
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
    # python handover.py [port]: print the decisions of events POSTed to 127.0.0.1:<port>
    # (token in .cache/eda/follow-token under the current directory, made if missing).
    class _Print:
        async def put(self, event: dict) -> None:
            print(json.dumps(event), flush=True)

    logging.basicConfig(level=logging.INFO)
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5055
    asyncio.run(main(_Print(), {"port": port, "services": {"u1": ["apache"]}, "edges": ["edge1", "edge2"],
                                "token_file": os.path.join(".cache", "eda", "follow-token")}))
