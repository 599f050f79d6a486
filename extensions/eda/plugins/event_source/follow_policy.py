# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""When a service follows its user: the hysteresis of issue 15, pure (no I/O, time passed in).

Not an event source itself: ``handover.py`` beside it loads this file by path
(ansible-rulebook runs sources with ``runpy.run_path``, so there is no package
to import from) and so do the unit tests.

Inputs are mobility events ``{"user", "edge", "kind": "approach"|"handover", "confidence"}``,
the clock (``tick(now)``) and the end of a playbook run (``done``). Outputs are
decisions, each a dict with ``action``:

- ``prepare`` (svc, target, plan): warm the target ahead: preflight + target
  container created; the run then parks at its gate until ``go`` or ``cancel``.
- ``go`` (svc, plan): release the gate: freeze, stream, restore now.
- ``cancel`` (svc, plan): release the gate with no-go: the prepared target
  container is removed (the user went back, or the TTL ran out).
- ``avoided`` (svc, target): a move the hysteresis did not make (for reports).

Rules (docs/mobility.md):

- An event below ``min_confidence`` is ignored; with ``edges`` set, one for an
  edge or a user that is not configured is refused (EventError).
- The user's *intent* is the edge of their last signal (approach or handover);
  ``intent_since`` is when the intent last changed. Any signal toward a
  service's other edge starts a ``prepare`` (unless a plan for that edge is
  already parked or running) - preparing is cheap and reversible.
- ``go`` needs: the user attached to the target (a handover), the intent
  unchanged for ``dwell_s`` (an approach ahead of the handover counts: a user
  who was announced early moves at once), the plan parked (prepared), and no
  move of that service within ``cooldown_s`` before.
- One plan per service at a time: no new move while one runs; signals that
  arrive meanwhile are remembered and acted on when it is done.
- A parked plan whose target has seen no signal for ``ttl_s`` is cancelled.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

KINDS = ("approach", "handover")


class EventError(ValueError):
    """A mobility event that is not one (bad JSON shape, unknown user, edge or kind, extra fields)."""


FIELDS = ("user", "edge", "kind", "confidence")


def _configured(value: object, names: Iterable[str] | None, what: str) -> str:
    """The configured name equal to ``value`` (the configured object, not the sender's string).

    Values never name themselves into a decision: whatever the sender typed, only a
    name from the configuration goes on, so a decision can hold no text of the
    sender's (ansible-core takes run_playbook's extra vars as trusted templates).
    """
    if not isinstance(value, str) or not value:
        raise EventError(f"{what}: a non-empty string is required")
    if names is None:
        return value
    for name in names:
        if name == value:
            return name
    raise EventError(f"{what}: not a configured {what}")


def _confidence(value: object) -> float:
    # bool is an int to Python, NaN compares false to everything: both refused by name.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise EventError("confidence: a number in [0, 1]")
    return float(value)


def parse_event(raw: object, users: Iterable[str] | None = None, edges: Iterable[str] | None = None) -> dict:
    """Validate one mobility event; returns a normalised copy or raises EventError.

    With ``users`` and ``edges`` (what the source is configured with) every string of
    the copy is one of those names or one of ``KINDS``; fields other than ``FIELDS``
    are refused rather than dropped, so a sender learns its event was not understood.
    """
    if not isinstance(raw, dict):
        raise EventError("an event is a JSON object")
    extra = [k for k in raw if k not in FIELDS]
    if extra:
        raise EventError(f"unknown field(s): {len(extra)}; an event has only {', '.join(FIELDS)}")
    kind = raw.get("kind", "handover")
    if not isinstance(kind, str) or kind not in KINDS:
        raise EventError(f"kind: one of {', '.join(KINDS)}")
    return {"user": _configured(raw.get("user"), users, "user"),
            "edge": _configured(raw.get("edge"), edges, "edge"),
            "kind": KINDS[KINDS.index(kind)],
            "confidence": _confidence(raw.get("confidence", 1.0))}


@dataclass
class Plan:
    plan: str
    svc: str
    target: str
    created: float
    last_signal: float  # last signal toward target (TTL)
    state: str = "preparing"  # preparing -> parked -> moving | cancelling (until its run is done)
    handovers: int = 0  # handovers toward target seen while the plan lived
    prepared_at: float | None = None
    go_at: float | None = None
    event_at: float | None = None  # the handover that the go answers


@dataclass
class UserState:
    edge: str | None = None  # attached (last handover)
    intent: str | None = None  # last signal, approach or handover
    intent_since: float = 0.0


@dataclass
class FollowPolicy:
    services: dict[str, list[str]]  # user -> services
    dwell_s: float = 3.0
    ttl_s: float = 30.0
    cooldown_s: float = 0.0
    min_confidence: float = 0.5
    move_timeout_s: float = 300.0  # a go'd or cancelled run that never reports done is forgotten after this
    prepare_timeout_s: float = 90.0  # a run that never reached its gate (failed preflight) is forgotten after this
    edges: list[str] | None = None  # known edges; None: any edge and any user (the source always sets it)
    location: dict[str, str] = field(default_factory=dict)  # svc -> edge (learned from done)
    users: dict[str, UserState] = field(default_factory=dict)
    plans: dict[str, Plan] = field(default_factory=dict)  # svc -> its one plan
    last_move: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {
        "events": 0, "ignored": 0, "prepared": 0, "moves": 0, "cancelled": 0, "avoided": 0})
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    # -- inputs ---------------------------------------------------------
    def on_event(self, raw: object, now: float) -> list[dict]:
        ev = parse_event(raw, users=self.services if self.edges is not None else None, edges=self.edges)
        self.counts["events"] += 1
        if ev["confidence"] < self.min_confidence:
            self.counts["ignored"] += 1
            return []
        st = self.users.setdefault(ev["user"], UserState())
        if st.intent != ev["edge"]:
            st.intent, st.intent_since = ev["edge"], now
        if ev["kind"] == "handover":
            st.edge = ev["edge"]
        out: list[dict] = []
        for svc in self.services.get(ev["user"], []):
            plan = self.plans.get(svc)
            if plan and plan.target == ev["edge"]:
                plan.last_signal = now
                if ev["kind"] == "handover":
                    plan.handovers += 1
                    if plan.event_at is None:
                        plan.event_at = now
            if plan is None and self.location.get(svc) != ev["edge"]:
                out.append(self._prepare(svc, ev["edge"], now, ev))
            elif plan and plan.state in ("preparing", "parked") and plan.target != ev["edge"]:
                # Signal away from the prepared target.
                plan.event_at = None
                if self.location.get(svc) != ev["edge"]:
                    # Toward a third edge: give this one up; tick() prepares the
                    # new edge once its run is done (one run per service at a time).
                    out.append(self._cancel(plan, now, "user heads to " + ev["edge"]))
        out += self.tick(now)
        return out

    def on_done(self, plan_id: str, location: str | None, moved: bool, now: float) -> list[dict]:
        """A follow run ended: ``location`` is where the service runs now (None: unknown)."""
        for svc, plan in list(self.plans.items()):
            if plan.plan == plan_id:
                del self.plans[svc]
                if location:
                    self.location[svc] = location
                if moved:
                    self.last_move[svc] = now
                return self.tick(now)
        return []

    def tick(self, now: float) -> list[dict]:
        """Timers: dwell reached (go), TTL reached (cancel), runs that never reported (forgotten)."""
        out: list[dict] = []
        for svc, plan in list(self.plans.items()):
            if plan.state in ("moving", "cancelling"):
                if now - (plan.go_at or plan.created) > self.move_timeout_s:
                    del self.plans[svc]  # its run never reported: forget it, and where the service is
                    self.location.pop(svc, None)
                continue
            if plan.state == "preparing" and now - plan.created > self.prepare_timeout_s:
                del self.plans[svc]
                self.location.pop(svc, None)
                continue
            if plan.state == "parked" and self._may_go(svc, plan, now):
                plan.state, plan.go_at = "moving", now
                self.counts["moves"] += 1
                out.append({"action": "go", "svc": svc, "plan": plan.plan, "target": plan.target,
                            "event_at": plan.event_at, "prepared_at": plan.prepared_at})
            elif plan.state == "parked" and now - plan.last_signal >= self.ttl_s:
                out.append(self._cancel(plan, now, "no handover within ttl"))
        # Users whose service is elsewhere with no plan (e.g. they signalled during a move).
        for user, st in self.users.items():
            if st.edge is None or st.intent != st.edge:
                continue
            for svc in self.services.get(user, []):
                if svc not in self.plans and svc in self.location and self.location[svc] != st.edge:
                    out.append(self._prepare(svc, st.edge, now, None))
        return out

    def prepared(self, plan_id: str, now: float) -> list[dict]:
        """The run for ``plan_id`` reached its gate with the target prepared."""
        for plan in self.plans.values():
            if plan.plan == plan_id and plan.state == "preparing":
                plan.state, plan.prepared_at = "parked", now
                return self.tick(now)
        return []

    def gate_state(self, plan_id: str) -> str | None:
        """``go``, ``cancel`` or None (keep waiting) for the run parked on ``plan_id``."""
        for plan in self.plans.values():
            if plan.plan == plan_id:
                return {"moving": "go", "cancelling": "cancel"}.get(plan.state)
        return "cancel"

    def next_deadline(self) -> float | None:
        """When tick() may next decide something (None: only an input can change anything)."""
        times = []
        for svc, plan in self.plans.items():
            if plan.state == "parked":
                times.append(plan.last_signal + self.ttl_s)
                st = self._user_of(svc)
                if st and st.edge == plan.target and st.intent == plan.target:
                    times.append(max(st.intent_since + self.dwell_s, self.last_move.get(svc, -1e18) + self.cooldown_s))
            elif plan.state in ("moving", "cancelling"):
                times.append((plan.go_at or plan.created) + self.move_timeout_s)
            elif plan.state == "preparing":
                times.append(plan.created + self.prepare_timeout_s)
        return min(times) if times else None

    def snapshot(self) -> dict:
        return {
            "location": dict(self.location),
            "users": {u: vars(s).copy() for u, s in self.users.items()},
            "plans": {s: vars(p).copy() for s, p in self.plans.items()},
            "counts": dict(self.counts),
        }

    # -- internals ------------------------------------------------------
    def _user_of(self, svc: str) -> UserState | None:
        for user, svcs in self.services.items():
            if svc in svcs:
                return self.users.get(user)
        return None

    def _may_go(self, svc: str, plan: Plan, now: float) -> bool:
        st = self._user_of(svc)
        return bool(st and st.edge == plan.target and st.intent == plan.target
                    and now >= st.intent_since + self.dwell_s
                    and now >= self.last_move.get(svc, -1e18) + self.cooldown_s)

    def _prepare(self, svc: str, target: str, now: float, ev: dict | None) -> dict:
        plan = Plan(plan=f"{svc}-{next(self._ids)}", svc=svc, target=target, created=now, last_signal=now,
                    event_at=now if ev and ev["kind"] == "handover" else None,
                    handovers=1 if ev and ev["kind"] == "handover" else 0)
        self.plans[svc] = plan
        self.counts["prepared"] += 1
        return {"action": "prepare", "svc": svc, "target": target, "plan": plan.plan,
                "user_edge": self._user_of(svc).edge if self._user_of(svc) else None}

    def _cancel(self, plan: Plan, now: float, why: str) -> dict:
        """The plan's run gets no-go at its gate; the plan stays (cancelling) until the run is done."""
        plan.state, plan.go_at = "cancelling", now
        self.counts["cancelled"] += 1
        if plan.handovers:
            self.counts["avoided"] += 1  # the user was handed over to target, and we did not move
        return {"action": "cancel", "svc": plan.svc, "plan": plan.plan, "target": plan.target, "why": why}
