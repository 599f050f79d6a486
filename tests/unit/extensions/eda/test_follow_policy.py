# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hysteresis of issue 15 (extensions/eda/plugins/event_source/follow_policy.py), clock in hand."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eda_paths import load  # noqa: E402

fp = load("follow_policy", "edgemig_follow_policy")


def policy(**kw):
    kw.setdefault("dwell_s", 3.0)
    kw.setdefault("ttl_s", 30.0)
    return fp.FollowPolicy(services={"u1": ["apache"]}, location={"apache": "edge1"}, **kw)


def ev(edge, kind="handover", conf=1.0, user="u1"):
    return {"user": user, "edge": edge, "kind": kind, "confidence": conf}


def actions(decisions):
    return [d["action"] for d in decisions]


def run_to_gate(p, decisions, now):
    """The prepare's playbook run reaches its gate at ``now``."""
    (d,) = [d for d in decisions if d["action"] == "prepare"]
    return d["plan"], p.prepared(d["plan"], now)


@pytest.mark.parametrize("raw,msg", [
    ([], "JSON object"), ({"edge": "e"}, "user"), ({"user": "u"}, "edge"),
    ({"user": "u", "edge": "e", "kind": "teleport"}, "kind"),
    ({"user": "u", "edge": "e", "confidence": 2}, "confidence"),
    ({"user": "u", "edge": "e", "confidence": True}, "confidence"),
    ({"user": "u", "edge": "e", "confidence": float("nan")}, "confidence"),
    ({"user": "u", "edge": "e", "kind": ["handover"]}, "kind"),
    ({"user": "u", "edge": "e", "note": "x"}, "unknown field"),
])
def test_bad_events_are_refused(raw, msg):
    with pytest.raises(fp.EventError, match=msg):
        fp.parse_event(raw)


@pytest.mark.parametrize("raw,msg", [
    ({"user": "u2", "edge": "edge2"}, "user: not a configured user"),
    ({"user": "u1", "edge": "edge9"}, "edge: not a configured edge"),
    ({"user": "u1", "edge": "edge2 "}, "edge"),
    ({"user": "u1", "edge": "{{ 1 }}edge2"}, "edge"),
])
def test_with_a_configuration_only_configured_names_pass(raw, msg):
    with pytest.raises(fp.EventError, match=msg):
        fp.parse_event(raw, users={"u1": ["apache"]}, edges=["edge1", "edge2"])
    # The refusal names the field, never the sender's text.
    with pytest.raises(fp.EventError) as err:
        fp.parse_event(raw, users={"u1": ["apache"]}, edges=["edge1", "edge2"])
    assert "{{" not in str(err.value) and "edge9" not in str(err.value)


def test_a_parsed_event_holds_the_configured_strings():
    edges, users = ["edge1", "edge2"], {"u1": ["apache"]}
    raw = {"user": "".join(["u", "1"]), "edge": "".join(["edge", "2"]), "kind": "".join(["hand", "over"])}
    ev = fp.parse_event(raw, users=users, edges=edges)
    assert ev == {"user": "u1", "edge": "edge2", "kind": "handover", "confidence": 1.0}
    assert ev["edge"] is edges[1] and ev["user"] is next(iter(users)) and ev["kind"] is fp.KINDS[1]


def test_handover_to_where_the_service_is_does_nothing():
    p = policy()
    assert p.on_event(ev("edge1"), 0.0) == []
    assert p.plans == {}


def test_warmed_approach_then_handover_moves_at_once():
    p = policy()
    d = p.on_event(ev("edge2", "approach"), 0.0)
    assert actions(d) == ["prepare"] and d[0]["target"] == "edge2"
    plan, d = run_to_gate(p, d, 2.0)
    assert d == [] and p.gate_state(plan) is None  # parked: no handover yet
    d = p.on_event(ev("edge2"), 5.0)  # dwell counted from the approach
    assert actions(d) == ["go"] and d[0]["event_at"] == 5.0
    assert p.gate_state(plan) == "go"
    # No second move while it runs.
    assert p.on_event(ev("edge1"), 5.5) == [] and p.on_event(ev("edge2"), 6.0) == []
    assert p.on_done(plan, "edge2", True, 7.0) == []
    assert p.location["apache"] == "edge2" and p.counts["moves"] == 1


def test_handover_without_approach_prepares_now_and_goes_after_dwell():
    p = policy()
    d = p.on_event(ev("edge2"), 10.0)
    plan, d = run_to_gate(p, d, 11.0)
    assert d == [] and p.next_deadline() == 13.0
    assert p.tick(12.9) == []
    assert actions(p.tick(13.0)) == ["go"]


def test_dwell_waits_for_a_slow_prepare():
    p = policy()
    d = p.on_event(ev("edge2"), 0.0)
    assert p.tick(5.0) == []  # dwell over, but the target is not prepared yet
    plan, d = run_to_gate(p, d, 6.0)
    assert actions(d) == ["go"]


def test_ping_pong_every_2s_for_30s_moves_at_most_once():
    p = policy()
    moves, edge, t = 0, "edge2", 0.0
    while t < 30.0:
        for d in p.on_event(ev(edge), t):
            if d["action"] == "prepare":
                p.prepared(d["plan"], t + 1.0)
        for d in p.tick(t + 1.0) + p.tick(t + 1.99):
            moves += d["action"] == "go"
        edge = "edge1" if edge == "edge2" else "edge2"
        t += 2.0
    assert moves == 0  # 2 s < dwell: the border never moved it
    # The user stays on edge2: one move, on the warm plan.
    p.on_event(ev("edge2"), 30.0)
    later = p.tick(33.0)
    assert actions(later) == ["go"]
    assert p.counts["prepared"] == 1  # one warm target served the whole ping-pong


def test_ttl_cancels_a_prepared_target_nobody_came_to():
    p = policy(ttl_s=10.0)
    plan, _decisions = run_to_gate(p, p.on_event(ev("edge2", "approach"), 0.0), 1.0)
    assert p.next_deadline() == 10.0
    d = p.tick(10.0)
    assert actions(d) == ["cancel"] and p.gate_state(plan) == "cancel"
    # No new plan for apache until the cancelled run is done.
    assert p.on_event(ev("edge2", "approach"), 11.0) == []
    assert p.on_done(plan, "edge1", False, 12.0) == []
    assert actions(p.on_event(ev("edge2", "approach"), 13.0)) == ["prepare"]


def test_signals_toward_the_target_keep_it_warm():
    p = policy(ttl_s=10.0)
    run_to_gate(p, p.on_event(ev("edge2", "approach"), 0.0), 1.0)
    p.on_event(ev("edge2", "approach"), 8.0)
    assert p.tick(12.0) == [] and p.next_deadline() == 18.0


def test_low_confidence_is_ignored_unknown_edges_and_users_refused():
    p = policy(edges=["edge1", "edge2"])
    assert p.on_event(ev("edge2", conf=0.2), 0.0) == []
    with pytest.raises(fp.EventError, match="edge"):
        p.on_event(ev("edge9"), 0.0)
    with pytest.raises(fp.EventError, match="user"):
        p.on_event(ev("edge2", user="u9"), 0.0)
    assert p.counts["ignored"] == 1 and p.counts["events"] == 1 and p.plans == {} and p.users == {}


def test_cooldown_spaces_moves():
    p = policy(cooldown_s=20.0)
    plan, _decisions = run_to_gate(p, p.on_event(ev("edge2", "approach"), 0.0), 1.0)
    assert actions(p.on_event(ev("edge2"), 4.0)) == ["go"]
    p.on_done(plan, "edge2", True, 5.0)
    d = p.on_event(ev("edge1", "approach"), 6.0)
    plan, _decisions = run_to_gate(p, d, 7.0)
    assert p.on_event(ev("edge1"), 10.0) == [] and p.tick(24.9) == []
    assert actions(p.tick(25.0)) == ["go"]


def test_a_user_left_elsewhere_during_a_move_is_followed_after_it():
    p = fp.FollowPolicy(services={"u1": ["apache"]}, location={"apache": "edge1"}, dwell_s=0.0)
    plan, _decisions = run_to_gate(p, p.on_event(ev("edge2", "approach"), 0.0), 1.0)
    assert actions(p.on_event(ev("edge2"), 2.0)) == ["go"]
    p.on_event(ev("edge3"), 3.0)  # moved on while the move ran
    d = p.on_done(plan, "edge2", True, 4.0)
    assert actions(d) == ["prepare"] and d[0]["target"] == "edge3"


def test_a_run_that_never_reports_is_forgotten():
    p = policy(prepare_timeout_s=60.0, move_timeout_s=100.0)
    p.on_event(ev("edge2"), 0.0)  # e.g. its preflight failed
    assert p.next_deadline() == 60.0
    p.tick(61.0)
    assert p.plans == {} and "apache" not in p.location
    p.location["apache"] = "edge1"
    plan, d = run_to_gate(p, p.on_event(ev("edge2"), 70.0), 71.0)
    assert actions(d) == ["go"]  # on edge2 since 0.0: dwell long over
    assert p.tick(172.0) == [] and p.plans == {}  # the go'd run never said done


def test_unknown_location_is_learned_from_the_run():
    p = fp.FollowPolicy(services={"u1": ["apache"]})
    d = p.on_event(ev("edge1"), 0.0)  # where is apache? the run finds out
    assert actions(d) == ["prepare"]
    assert p.on_done(d[0]["plan"], "edge1", False, 1.0) == []
    assert p.location == {"apache": "edge1"} and p.on_event(ev("edge1"), 2.0) == []
