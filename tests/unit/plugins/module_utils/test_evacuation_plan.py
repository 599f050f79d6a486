# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The evacuation planner: placement and its reasons, the order rule, lanes within the limits, link shares,
and requests an operator (or a hostile inventory) can send it."""
from __future__ import annotations

import itertools

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.planning import evacuation_plan as ep
from ansible_collections.edgemig.migration.plugins.module_utils.planning.evacuation_record import outcome, planned

GB, MB = 10**9, 10**6


def edge(mem=4 * GB, images=("sha:a", "sha:b"), iface=True, **kw):
    return dict({"mem_available": mem, "images": list(images), "address_interface": iface}, **kw)


def svc(name, mem, on="edge1", image="sha:a", ports=(), address=None, **kw):
    return dict({"name": name, "runs_on": on, "memory": mem, "image_id": image, "ports": list(ports),
                 "address": address}, **kw)


def three(**over):
    edges = {"edge1": edge(), "edge2": edge(), "edge3": edge()}
    edges.update(over)
    return edges


def request(services, edges=None, **kw):
    return dict({"edge": "edge1", "edges": edges or three(), "services": services}, **kw)


def by_service(p):
    return {m["service"]: m for m in p["moves"]}


# ---------------------------------------------------------------- placement and reasons

def test_every_service_of_the_edge_moves_and_only_those():
    p = ep.plan(request([svc("a", 10 * MB), svc("b", 20 * MB), svc("c", 5 * MB, on="edge2")]))
    assert sorted(by_service(p)) == ["a", "b"] and p["stays"] == []
    assert all(m["source"] == "edge1" and m["target"] in ("edge2", "edge3") for m in p["moves"])


def test_memory_is_counted_with_what_the_plan_already_placed():
    edges = three(edge2=edge(mem=300 * MB), edge3=edge(mem=300 * MB))
    p = ep.plan(request([svc("a", 200 * MB), svc("b", 200 * MB), svc("c", 200 * MB)], edges))
    targets = sorted(m["target"] for m in p["moves"])
    assert targets == ["edge2", "edge3"]                 # one each: 200 + 200 > 300
    assert [s["service"] for s in p["stays"]] == ["c"]
    assert "edge2: 100 MB free < 200 MB needed" in p["stays"][0]["reason"]
    assert "edge3: 100 MB free < 200 MB needed" in p["stays"][0]["reason"]


def test_ports_addresses_images_and_cpu_each_name_their_reason():
    edges = {
        "edge1": edge(cpu={"arch": "x86", "isa": ["avx2", "sse4_2"]}),
        "edge2": edge(ports_in_use=[8080], cpu={"arch": "x86", "isa": ["avx2", "sse4_2"]}),
        "edge3": edge(iface=False, images=["sha:a"], cpu={"arch": "x86", "isa": ["sse4_2"]}),
    }
    p = ep.plan(request([
        svc("web", 10 * MB, ports=[8080]),                      # edge2: port taken; edge3: CPU
        svc("addr", 10 * MB, address="10.0.0.9", ports=[81]),   # edge3 has no interface
        svc("img", 10 * MB, image="sha:b", ports=[82]),         # only edge2 has sha:b
    ], edges))
    reasons = {s["service"]: s["reason"] for s in p["stays"]}
    assert "edge2: port 8080 taken" in reasons["web"] and "edge3: CPU lacks avx2" in reasons["web"]
    assert by_service(p)["addr"]["target"] == "edge2" and by_service(p)["img"]["target"] == "edge2"


def test_an_address_held_on_the_target_and_a_port_a_staying_service_publishes_are_taken():
    p = ep.plan(request([svc("a", 10 * MB, address="10.0.0.9", ports=[80]),
                         svc("other", 10 * MB, on="edge2", address="10.0.0.9"),
                         svc("other3", 10 * MB, on="edge3", ports=[80])]))
    assert p["moves"] == [] and "held by other" in p["stays"][0]["reason"] and "port 80 taken" in p["stays"][0]["reason"]


def test_two_moving_services_do_not_get_the_same_port_on_one_target():
    p = ep.plan(request([svc("a", 10 * MB, ports=[80]), svc("b", 10 * MB, ports=[80])]))
    assert {m["target"] for m in p["moves"]} == {"edge2", "edge3"}


def test_a_missing_image_that_is_pullable_moves_and_says_so():
    edges = three(edge2=edge(images=[]), edge3=edge(images=[]))
    p = ep.plan(request([svc("a", MB, image="sha:z", pullable=True), svc("b", MB, image="sha:z")], edges))
    assert by_service(p)["a"]["pull"] is True
    assert p["stays"][0]["service"] == "b" and "image sha:z missing" in p["stays"][0]["reason"]


def test_unknown_memory_or_cpu_is_not_a_reason_to_stay():
    edges = {"edge1": edge(mem=None), "edge2": edge(mem=None, cpu={"arch": "unknown"})}
    p = ep.plan(request([svc("a", 10 * GB)], edges))
    assert by_service(p)["a"]["target"] == "edge2"


def test_an_unreachable_neighbour_takes_nothing():
    p = ep.plan(request([svc("a", MB)], three(edge2=edge(reachable=False), edge3=edge(reachable=False))))
    assert p["moves"] == [] and p["stays"][0]["reason"] == "edge2: unreachable; edge3: unreachable"


def test_users_near_an_edge_win_when_it_can_take_the_service():
    edges = three(edge2=edge(mem=8 * GB), edge3=edge(mem=1 * GB))
    p = ep.plan(request([svc("a", MB, near="edge3"), svc("b", MB), svc("c", 2 * GB, near="edge3")], edges))
    m = by_service(p)
    assert m["a"]["target"] == "edge3"          # near, and it fits
    assert m["b"]["target"] == "edge2"          # no preference: most memory left
    assert m["c"]["target"] == "edge2"          # near edge3, which cannot take 2 GB
    assert "(users near)" in "\n".join(ep.plan_lines(p))


def test_the_load_spreads_over_the_neighbours():
    p = ep.plan(request([svc(f"s{i}", 100 * MB) for i in range(6)]))
    targets = [m["target"] for m in p["moves"]]
    assert targets.count("edge2") == targets.count("edge3") == 3


# ---------------------------------------------------------------- order, lanes, limits, shares

MIXED = [svc("big", 400 * MB), svc("small", 10 * MB), svc("mid", 100 * MB, user_facing=True), svc("tiny", 1 * MB)]


def test_shortest_first_runs_the_short_moves_first_and_beats_the_naive_orders():
    p = ep.plan(request(MIXED, per_source=1))
    assert [m["service"] for m in p["moves"]] == ["tiny", "small", "mid", "big"]
    by = p["sum_completion_by_order"]
    assert by["shortest"] == p["sum_completion_s"]
    assert by["shortest"] < by["catalog"] and by["shortest"] < by["largest"]
    # one lane at the whole link: completion times are the running sums of the solo times
    solo = [m["solo_s"] for m in p["moves"]]
    assert p["sum_completion_s"] == pytest.approx(sum(itertools.accumulate(solo)), rel=0.01)


def test_shortest_first_is_optimal_for_one_lane():
    services = [svc(f"s{i}", m * MB) for i, m in enumerate((50, 7, 300, 21))]
    best = ep.plan(request(services, per_source=1))["sum_completion_s"]
    for perm in itertools.permutations(services):
        catalog_order = ep.plan(request(list(perm), per_source=1, order="catalog"))["sum_completion_s"]
        assert best <= catalog_order + 1e-6


def test_user_facing_first_is_an_option():
    p = ep.plan(request(MIXED, per_source=1, order="user_facing"))
    assert [m["service"] for m in p["moves"]] == ["mid", "tiny", "small", "big"]


def test_the_link_rate_comes_from_the_source_edge():
    slow = three(edge1=edge(link_mbit=20))
    p = ep.plan(request([svc("a", 100 * MB)], slow))
    assert p["moves"][0]["solo_s"] == pytest.approx(100e6 / (20e6 / 8), rel=0.01)
    assert ep.plan(request([svc("a", 100 * MB)]))["moves"][0]["solo_s"] == pytest.approx(100e6 / (ep.DEFAULT_LINK_MBIT * 1e6 / 8))


def overlapping(moves, key):
    """The largest number of moves sharing ``key`` that run at the same time."""
    worst = 0
    for m in moves:
        t = m["start_s"] + 1e-9
        worst = max(worst, sum(1 for o in moves if o[key] == m[key] and o["start_s"] <= t < o["start_s"] + o["expected_s"]))
    return worst


@pytest.mark.parametrize("per_source,per_target", [(1, 1), (2, 1), (2, 2), (3, 1), (4, 2)])
def test_lanes_keep_both_limits_whatever_the_durations(per_source, per_target):
    services = [svc(f"s{i}", (i * 37 % 11 + 1) * 10 * MB) for i in range(9)]
    p = ep.plan(request(services, per_source=per_source, per_target=per_target))
    assert len(p["lanes"]) <= per_source
    # Each lane runs its moves one after another, so a lane adds at most one move at a time to a
    # target: the limit holds when at most per_target lanes carry moves to any one target.
    lane_targets = [{by_service(p)[s]["target"] for s in lane} for lane in p["lanes"]]
    for target in ("edge2", "edge3"):
        assert sum(1 for t in lane_targets if target in t) <= per_target
    assert overlapping(p["moves"], "source") <= per_source
    assert sorted(s for lane in p["lanes"] for s in lane) == sorted(s["name"] for s in services)


def test_each_move_is_told_its_share_of_the_source_link():
    p = ep.plan(request([svc("a", 10 * MB), svc("b", 50 * MB), svc("c", 60 * MB)], per_source=2))
    m = by_service(p)
    assert m["a"]["share"] == m["b"]["share"] == 0.5      # started together on one link
    assert m["c"]["start_s"] == pytest.approx(m["a"]["expected_s"], abs=0.01)
    assert m["c"]["share"] == 0.5                          # b still runs when c starts
    alone = ep.plan(request([svc("a", 10 * MB)], per_source=2))
    assert alone["moves"][0]["share"] == 1.0 and len(alone["lanes"]) == 1
    # a move that starts after the others ended has the link to itself
    tail = ep.plan(request([svc("a", 10 * MB), svc("b", 10 * MB), svc("c", 500 * MB)], per_source=1))
    assert all(x["share"] == 1.0 for x in tail["moves"])


def test_the_simulated_link_is_never_oversubscribed():
    p = ep.plan(request([svc(f"s{i}", (i + 1) * 20 * MB) for i in range(5)], per_source=3))
    link = ep.DEFAULT_LINK_MBIT * 1e6 / 8
    # the link's bytes over the makespan: a shared link cannot finish faster than its bytes allow
    assert p["makespan_s"] >= sum(m["bytes"] for m in p["moves"]) / link - 0.05


# ---------------------------------------------------------------- odd and hostile requests

def test_an_unknown_edge_is_refused_naming_the_edges():
    with pytest.raises(ep.PlanError, match=r"edge='edge9' is not an edge host: \['edge1', 'edge2', 'edge3'\]"):
        ep.plan(request([], edge="edge9"))


def test_an_edge_with_no_services_plans_nothing():
    p = ep.plan(request([svc("a", MB, on="edge2")]))
    assert p["moves"] == [] and p["stays"] == [] and p["lanes"] == []
    assert "nothing to move: no catalog service runs on edge1" in ep.plan_lines(p)[-1]


@pytest.mark.parametrize("bad", [{"per_source": 0}, {"per_target": "x"}, {"order": "random"}, {"mode": "shuffle"},
                                 {"edges": {}}, {"edges": three(edge1=edge(link_mbit=-5))}])
def test_bad_settings_are_refused_before_anything(bad):
    with pytest.raises(ep.PlanError):
        ep.plan(dict(request([svc("a", MB)]), **bad))


@pytest.mark.parametrize("services", [[{"memory": 5}], [svc("a", -1)], [svc("a", 1, ports=["http"])], ["a"],
                                      [svc("a", 1), svc("a", 2)]])
def test_malformed_services_are_refused(services):
    with pytest.raises(ep.PlanError):
        ep.plan(request(services))


def test_a_service_named_like_a_template_is_data():
    name = "{{ lookup('pipe','id') }}"
    p = ep.plan(request([svc(name, MB), svc("{% for x in range(9) %}x{% endfor %}", 2 * MB)]))
    assert by_service(p)[name]["service"] == name
    assert any(name in line for line in ep.plan_lines(p))
    assert planned(p)[0]["service"] in (name, "{% for x in range(9) %}x{% endfor %}")


def test_the_return_brings_back_what_runs_elsewhere():
    services = [svc("a", MB, on="edge2"), svc("b", MB, on="edge3", ports=[80]), svc("c", MB, on="edge1"),
                svc("d", MB, on="edge2")]
    p = ep.plan(request(services, mode="return"))
    assert sorted((m["service"], m["source"], m["target"]) for m in p["moves"]) == [
        ("a", "edge2", "edge1"), ("b", "edge3", "edge1"), ("d", "edge2", "edge1")]
    # two source links, one target: per_target=2 lanes into edge1, one per source, each at its whole link
    assert len(p["lanes"]) == 2 and all(m["share"] == 1.0 for m in p["moves"])
    wider = ep.plan(request(services, mode="return", per_target=3))
    assert by_service(wider)["b"]["share"] == 1.0 and by_service(wider)["a"]["share"] == 0.5


# ---------------------------------------------------------------- from what the edges reported

def seen(containers, **kw):
    return dict({"mem_available": 4 * GB, "cpu": {"arch": "x86", "isa": ["avx2"]}, "images": ["sha:a"],
                 "ports_in_use": [], "containers": containers}, **kw)


CATALOG = {"apache": {"ports": [{"container": 80, "host": 4004}], "address": "10.213.0.101"},
           "counter": {"ports": [{"container": 8000, "host": 8000}], "near": "edge3", "user_facing": True},
           "idle": {}}


def test_the_request_is_built_from_the_edges_reports():
    running = {"running": True, "image_id": "sha:a", "memory": 5 * MB}
    ask = {"edge": "edge1", "catalog": CATALOG, "interfaces": {"edge1": "eth0", "edge2": "eth0", "edge3": ""},
           "links": {"edge1": 20, "edge2": "", "edge3": ""},
           # as evacuate.yml passes it: each edge's registered result (edge4: the play did not reach it at all)
           "seen": {"edge1": seen({"apache": running, "counter": running, "idle": dict(running, running=False)}),
                    "edge2": seen({}), "edge3": {"unreachable": True, "msg": "no route", "changed": False},
                    "edge4": None}}
    req, doubled = ep.request_from_facts(ask)
    assert doubled == [] and [s["name"] for s in req["services"]] == ["apache", "counter"]
    assert req["edges"]["edge3"]["reachable"] is False and req["edges"]["edge1"]["link_mbit"] == 20
    assert "edge4" not in req["edges"]  # not an edge of the interfaces' group
    p = ep.plan(req)
    assert by_service(p)["apache"]["target"] == "edge2"
    # counter's users are near edge3, which does not answer: it goes to edge2
    assert by_service(p)["counter"]["target"] == "edge2"
    assert by_service(p)["apache"]["solo_s"] == pytest.approx(5e6 / (20e6 / 8), rel=0.01)


def test_an_edge_whose_module_failed_takes_nothing_even_with_partial_facts():
    """A failed edge_load_info may still carry keys (e.g. from a module that died mid-way): it answered nothing."""
    running = {"running": True, "image_id": "sha:a", "memory": MB}
    ask = {"edge": "edge1", "catalog": CATALOG, "interfaces": {"edge1": "eth0", "edge2": "eth0"},
           "seen": {"edge1": seen({"apache": running}), "edge2": dict(seen({}), failed=True, msg="docker down")}}
    req, _unused = ep.request_from_facts(ask)
    assert req["edges"]["edge2"]["reachable"] is False
    assert ep.plan(req)["stays"][0]["reason"] == "edge2: unreachable"


def test_a_service_running_twice_is_not_moved_but_named():
    running = {"running": True, "image_id": "sha:a", "memory": MB}
    ask = {"edge": "edge1", "catalog": CATALOG, "interfaces": {"edge1": "eth0", "edge2": "eth0"},
           "seen": {"edge1": seen({"apache": running}), "edge2": seen({"apache": running})}}
    p = ep.plan(*ep.request_from_facts(ask))
    assert p["moves"] == [] and "runs on edge1, edge2" in p["stays"][0]["reason"]
    assert "recover.yml -e svc=apache" in p["stays"][0]["reason"]


def test_the_return_considers_only_what_the_evacuation_moved():
    running = {"running": True, "image_id": "sha:a", "memory": MB}
    ask = {"edge": "edge1", "mode": "return", "catalog": CATALOG, "only": ["apache"],
           "interfaces": {"edge1": "eth0", "edge2": "eth0"},
           "seen": {"edge1": seen({}), "edge2": seen({"apache": running, "counter": running})}}
    p = ep.plan(*ep.request_from_facts(ask))
    assert [(m["service"], m["target"]) for m in p["moves"]] == [("apache", "edge1")]


# ---------------------------------------------------------------- the record and the table

def test_outcomes_per_service_a_missing_lane_report_is_unknown():
    p = ep.plan(request([svc("a", MB), svc("b", 2 * MB), svc("c", 3 * MB)]))
    done = [{"service": "a", "ok": True, "downtime_s": "0.412", "report": "/r/a.json"},
            {"service": "b", "ok": False, "msg": "boom"}]
    out = outcome(p, done)
    status = {r["service"]: r["status"] for r in out["rows"]}
    assert status == {"a": "moved", "b": "failed", "c": "unknown"}
    assert out["failed"] == ["b", "c"] and out["rows"][0]["downtime_s"] == 0.412
    assert "recover.yml -e edge=edge1" in out["rows"][2]["note"]
    assert len(out["table"]) == 4 and "0.41 s" in "\n".join(out["table"])


def test_the_return_marks_what_came_back_in_the_evacuations_record():
    record = {"edge": "edge1", "moves": [{"service": "a", "source": "edge1", "target": "edge2", "status": "moved"},
                                         {"service": "b", "source": "edge1", "target": "edge2", "status": "moved"}],
              "stays": []}
    p = ep.plan(request([svc("a", MB, on="edge2"), svc("b", MB, on="edge2")], mode="return"))
    out = outcome(p, [{"service": "a", "ok": True}, {"service": "b", "ok": False, "msg": "x"}], record)
    assert [(r["service"], r["status"]) for r in out["record"]["moves"]] == [("a", "returned"), ("b", "failed")]


def test_many_sources_into_one_target_wait_in_its_lanes():
    """A return: edge2 and edge3 both send to edge1, which may take 2 lanes; the third source's moves
    wait in those lanes (the target's limit holds) instead of finding no lane at all."""
    moves = [{"source": s, "target": "edge1", "solo_s": 1.0, "index": i}
             for i, s in enumerate(["edge2", "edge2", "edge3", "edge3", "edge2"])]
    lanes = ep.assign_lanes(moves, 2, 2)
    assert len(lanes) == 2
    assert sorted(m["index"] for lane in lanes for m in lane) == [0, 1, 2, 3, 4]
