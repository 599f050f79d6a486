# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plan an evacuation: where each service of an edge goes, in which order, how many at once.

Pure data in, pure data out (the ``evacuation_plan`` filter runs it on the controller; nothing here
touches a host), so ``evacuate.yml --check`` prints the same plan a real run follows.

Placement: each service goes to a candidate edge that can take it - enough free memory for its
memory, its published ports free there, its address not held there and an interface for it, its
image present (or marked pullable), the source's CPU features (when both are known). Among the edges
that can, the one its users are near (``near``) wins, else the one with the most memory left (the
load spreads). A service no edge can take stays, with each candidate's reason.

Order (the stated rule, ``order``): ``shortest`` (default) - shortest expected move first: a move's
expected solo time is its bytes over its source link's rate; on a shared link, shortest first cuts
the sum of completion times (SPT). ``user_facing`` - services marked user-facing first, each group
shortest first. ``catalog`` and ``largest`` are the naive orders the plan is compared with.

Limits: at most ``per_source`` moves at once per source link and ``per_target`` per target. Moves
run in lanes: a lane is a sequence of moves run one after another, a source has at most
``per_source`` lanes, and no more than ``per_target`` lanes carry moves to the same target - so both
limits hold at run time whatever the moves' real durations, without any lock. A move goes to the
allowed lane that frees up first (list scheduling over expected times).

Share: the lanes of a source share its link. The plan simulates them (processor sharing: the moves
running at a moment split the link evenly) and tells each move the share it starts with (1 / moves
running then on its source link); edge_migrate's ``link_share`` scales its controller's first link
estimate by it, so a move that probes the link while its neighbours are between moves does not
start from the whole link.
"""
from __future__ import annotations

import math
from typing import Any

ORDERS = ("shortest", "user_facing", "catalog", "largest")
# The link rate the plan assumes for a source edge without edgemig_link_mbit: a plan's times are
# estimates; the migrations measure the link themselves.
DEFAULT_LINK_MBIT = 100.0
DEFAULT_PER_SOURCE = 2
DEFAULT_PER_TARGET = 2


class PlanError(ValueError):
    """The request itself is wrong (unknown edge, bad limit): nothing is planned, nothing frozen."""


def _mb(n: float) -> str:
    return f"{n / 1e6:.0f} MB"


def _int(value: Any, what: str, minimum: int = 0) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise PlanError(f"{what} must be an integer, not {value!r}") from None
    if n < minimum:
        raise PlanError(f"{what} must be >= {minimum}, not {n}")
    return n


def _service(raw: Any) -> dict:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise PlanError(f"a service needs a name: {raw!r}")
    name = raw["name"]
    ports = raw.get("ports") or []
    if not isinstance(ports, list):
        raise PlanError(f"{name}: ports must be a list of host ports")
    return {
        "name": name,
        "runs_on": raw.get("runs_on"),
        "memory": _int(raw.get("memory") or 0, f"{name}: memory"),
        "image_id": raw.get("image_id") or "",
        "pullable": bool(raw.get("pullable", False)),
        "ports": sorted({_int(p, f"{name}: port", 1) for p in ports}),
        "address": raw.get("address") or None,
        "near": raw.get("near") or None,
        "user_facing": bool(raw.get("user_facing", False)),
    }


def _edge(name: str, raw: Any) -> dict:
    raw = raw if isinstance(raw, dict) else {}
    mem = raw.get("mem_available")
    cpu = raw.get("cpu") if isinstance(raw.get("cpu"), dict) else {}
    link = raw.get("link_mbit")
    link_Bps = (float(link) if link not in (None, "") else DEFAULT_LINK_MBIT) * 1e6 / 8
    if not link_Bps > 0 or not math.isfinite(link_Bps):
        raise PlanError(f"{name}: link_mbit must be a positive number, not {link!r}")
    return {
        "mem_available": None if mem in (None, "") else _int(mem, f"{name}: mem_available"),
        "cpu_arch": cpu.get("arch") or "unknown",
        "cpu_isa": set(cpu.get("isa") or []),
        "images": set(raw.get("images") or []),
        "ports_in_use": {int(p) for p in raw.get("ports_in_use") or []},
        "address_interface": bool(raw.get("address_interface")),
        "reachable": raw.get("reachable", True) is not False,
        "link_Bps": link_Bps,
    }


def _why_not(svc: dict, name: str, edge: dict, src: dict | None, load: dict) -> str | None:
    """Why ``edge`` cannot take ``svc`` now (``load``: what the edge holds, placed moves included)."""
    if not edge["reachable"]:
        return "unreachable"
    if edge["mem_available"] is not None and svc["memory"] > edge["mem_available"] - load["memory"]:
        return f"{_mb(max(0, edge['mem_available'] - load['memory']))} free < {_mb(svc['memory'])} needed"
    taken = [p for p in svc["ports"] if p in edge["ports_in_use"] or p in load["ports"]]
    if taken:
        return "port " + ", ".join(map(str, taken)) + " taken"
    if svc["address"]:
        if not edge["address_interface"]:
            return f"no interface for address {svc['address']} (edgemig_address_interface)"
        if svc["address"] in load["addresses"]:
            return f"address {svc['address']} held by {load['addresses'][svc['address']]}"
    if svc["image_id"] and svc["image_id"] not in edge["images"] and not svc["pullable"]:
        return f"image {svc['image_id'][:19]} missing"
    if src is not None and src["cpu_arch"] == edge["cpu_arch"] != "unknown" and src["cpu_isa"] and edge["cpu_isa"]:
        missing = sorted(src["cpu_isa"] - edge["cpu_isa"])
        if missing:
            return "CPU lacks " + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
    return None


def order_key(rule: str):
    """Sort key of a move (a dict with solo_s, user_facing, index) under ``rule``."""
    if rule == "shortest":
        return lambda m: (m["solo_s"], m["index"])
    if rule == "user_facing":
        return lambda m: (not m["user_facing"], m["solo_s"], m["index"])
    if rule == "largest":
        return lambda m: (-m["solo_s"], m["index"])
    if rule == "catalog":
        return lambda m: m["index"]
    raise PlanError(f"order must be one of {', '.join(ORDERS)}, not {rule!r}")


def assign_lanes(moves: list[dict], per_source: int, per_target: int) -> list[list[dict]]:
    """Lanes (sequences run one after another) for ``moves`` taken in the given order.

    Per source at most ``per_source`` lanes; at most ``per_target`` lanes carry moves to one target.
    Each move goes to the allowed lane expected to be free first (its expected times at solo rate
    over the lanes of its source).
    """
    lanes: list[dict] = []  # {"source", "targets": set, "free_at": s, "moves": []}
    for m in moves:
        mine = [ln for ln in lanes if ln["source"] == m["source"]]
        if len(mine) < per_source:
            mine.append({"source": m["source"], "targets": set(), "free_at": 0.0, "moves": []})
            lanes.append(mine[-1])
        serving = sum(1 for ln in lanes if m["target"] in ln["targets"])
        allowed = [ln for ln in mine if m["target"] in ln["targets"] or serving < per_target]
        if not allowed:
            # Every lane the target may have already runs another source's moves (a return: many
            # sources, one target): this move waits in one of them, one after another.
            allowed = [ln for ln in lanes if m["target"] in ln["targets"]]
        lane = min(allowed, key=lambda ln: (ln["free_at"], m["target"] not in ln["targets"], lanes.index(ln)))
        lane["targets"].add(m["target"])
        lane["moves"].append(m)
        # While the source's other lanes run, this one gets a share of the link.
        lane["free_at"] += m["solo_s"] * max(1, len(mine))
    # A lane opened for a move that then went elsewhere is empty: drop it.
    return [ln["moves"] for ln in lanes if ln["moves"]]


def simulate(lanes: list[list[dict]], link_Bps: dict[str, float]) -> dict:
    """Run the lanes on their source links (processor sharing) and set each move's start_s, end_s,
    expected_s and share (1 / moves on its link when it starts). Returns makespan and the sum of
    completion times."""
    queues = [list(ln) for ln in lanes]
    running: list[dict] = []  # {"move", "left": bytes}
    now = 0.0

    def start_next():
        for q in queues:
            if q and not any(r["queue"] is q for r in running):
                m = q.pop(0)
                m["start_s"] = now
                running.append({"move": m, "left": float(max(m["bytes"], 1)), "queue": q})
        for r in running:
            if "share" not in r["move"]:
                n = sum(1 for x in running if x["move"]["source"] == r["move"]["source"])
                r["move"]["share"] = round(1.0 / n, 3)

    start_next()
    while running:
        rates = {}
        for r in running:
            n = sum(1 for x in running if x["move"]["source"] == r["move"]["source"])
            rates[id(r)] = link_Bps[r["move"]["source"]] / n
        dt = min(r["left"] / rates[id(r)] for r in running)
        now += dt
        done = []
        for r in running:
            r["left"] -= rates[id(r)] * dt
            if r["left"] <= 1e-6 * max(1.0, r["move"]["bytes"]):
                done.append(r)
        for r in done:
            running.remove(r)
            r["move"]["end_s"] = now
            r["move"]["expected_s"] = round(now - r["move"]["start_s"], 2)
        start_next()
    ends = [m["end_s"] for ln in lanes for m in ln]
    return {"makespan_s": round(max(ends, default=0.0), 2), "sum_completion_s": round(sum(ends), 2)}


def _schedule(moves: list[dict], rule: str, per_source: int, per_target: int,
              link_Bps: dict[str, float]) -> tuple[list[list[dict]], dict]:
    ordered = [dict(m) for m in sorted(moves, key=order_key(rule))]
    lanes = assign_lanes(ordered, per_source, per_target)
    return lanes, simulate(lanes, link_Bps)


def _place(services: list[dict], edges: dict, home: str, mode: str, stays: list[dict]) -> tuple[list, list]:
    """Each moving service's target (or its reasons to stay): the largest first."""
    # What each edge holds now: the services running there that stay there.
    if mode == "evacuate":
        moving = [s for s in services if s["runs_on"] == home]
        candidates = [e for e in edges if e != home]
    else:
        moving = [s for s in services if s["runs_on"] not in (None, home)]
        candidates = [home]
    load = {e: {"memory": 0, "ports": set(), "addresses": {}} for e in edges}
    for s in services:
        if s["runs_on"] in load and s not in moving:
            load[s["runs_on"]]["ports"].update(s["ports"])
            if s["address"]:
                load[s["runs_on"]]["addresses"][s["address"]] = s["name"]
    for s in moving:  # its source keeps its ports and address until it has moved
        if s["runs_on"] not in edges:
            raise PlanError(f"{s['name']} runs on {s['runs_on']!r}, not an edge host")

    # Placement: the largest first (they are the hardest to fit), each to the edge its users are near
    # if it can take it, else to the edge with the most memory left.
    moves = []
    index = {s["name"]: i for i, s in enumerate(services)}
    for s in sorted(moving, key=lambda s: (-s["memory"], index[s["name"]])):
        src = edges[s["runs_on"]]
        reasons = {e: _why_not(s, e, edges[e], src, load[e]) for e in candidates}
        fit = [e for e in candidates if reasons[e] is None]
        if not fit:
            why = "; ".join(f"{e}: {r}" for e, r in reasons.items()) or "no other edge host"
            stays.append({"service": s["name"], "runs_on": s["runs_on"], "reason": why})
            continue

        def room(e):
            m = edges[e]["mem_available"]
            return math.inf if m is None else m - load[e]["memory"]
        target = s["near"] if s["near"] in fit else max(fit, key=lambda e: (room(e), -candidates.index(e)))
        load[target]["memory"] += s["memory"]
        load[target]["ports"].update(s["ports"])
        if s["address"]:
            load[target]["addresses"][s["address"]] = s["name"]
        moves.append({
            "service": s["name"], "source": s["runs_on"], "target": target, "bytes": s["memory"],
            "solo_s": round(max(s["memory"], 1) / edges[s["runs_on"]]["link_Bps"], 2),
            "user_facing": s["user_facing"], "near": s["near"], "index": index[s["name"]],
            "pull": bool(s["image_id"] and s["image_id"] not in edges[target]["images"]),
        })

    return moves, stays


def plan(request: dict, stays: list[dict] | None = None) -> dict:
    """The plan for ``request`` (see the module docstring); ``stays``: services already known to stay."""
    if not isinstance(request, dict):
        raise PlanError("the request must be a mapping")
    raw_edges = request.get("edges")
    if not isinstance(raw_edges, dict) or not raw_edges:
        raise PlanError("edges must name the edge hosts")
    edges = {str(n): _edge(str(n), e) for n, e in raw_edges.items()}
    home = request.get("edge")
    if home not in edges:
        raise PlanError(f"edge={home!r} is not an edge host: {sorted(edges)}")
    mode = request.get("mode", "evacuate")
    if mode not in ("evacuate", "return"):
        raise PlanError(f"mode must be evacuate or return, not {mode!r}")
    rule = request.get("order") or "shortest"
    order_key(rule)
    per_source = _int(request.get("per_source", DEFAULT_PER_SOURCE), "per_source", 1)
    per_target = _int(request.get("per_target", DEFAULT_PER_TARGET), "per_target", 1)
    services = [_service(s) for s in request.get("services") or []]
    names = [s["name"] for s in services]
    if len(set(names)) != len(names):
        raise PlanError("a service is named twice: " + ", ".join(sorted({n for n in names if names.count(n) > 1})))

    moves, stays = _place(services, edges, home, mode, list(stays or []))
    index = {s["name"]: i for i, s in enumerate(services)}
    link_Bps = {e: edges[e]["link_Bps"] for e in edges}
    lanes, totals = _schedule(moves, rule, per_source, per_target, link_Bps)
    # The same moves in the naive orders, for the printed comparison (the rule must beat them).
    compare = {r: _schedule(moves, r, per_source, per_target, link_Bps)[1]["sum_completion_s"]
               for r in ORDERS}
    ordered = sorted((m for ln in lanes for m in ln), key=lambda m: (m["start_s"], m["index"]))
    for i, ln in enumerate(lanes):
        for m in ln:
            m["lane"] = i
    for m in ordered:
        for k in ("index", "end_s"):
            m.pop(k, None)
        m["start_s"] = round(m["start_s"], 2)
    return {
        "edge": home, "mode": mode, "order": rule, "per_source": per_source, "per_target": per_target,
        "moves": ordered,
        "lanes": [[m["service"] for m in ln] for ln in lanes],
        "stays": sorted(stays, key=lambda s: index.get(s["service"], -1)),
        "makespan_s": totals["makespan_s"], "sum_completion_s": totals["sum_completion_s"],
        "sum_solo_s": round(sum(m["solo_s"] for m in ordered), 2),
        "sum_completion_by_order": compare,
    }


def plan_lines(p: dict) -> list[str]:
    """The plan as a person reads it (printed before anything freezes)."""
    verb = "evacuate" if p["mode"] == "evacuate" else "return to"
    out = [f"{verb} {p['edge']}: {len(p['moves'])} move(s), {len(p['stays'])} stay(s); order {p['order']}, "
           f"at most {p['per_source']} per source link and {p['per_target']} per target"]
    for m in p["moves"]:
        out.append(f"  lane {m['lane']} +{m['start_s']:>6.1f}s  {m['service']}: {m['source']} -> {m['target']}"
                   f"  {_mb(m['bytes'])}, ~{m['expected_s']} s at {m['share']:.0%} of the link"
                   + ("  (image pulled)" if m["pull"] else "") + ("  (users near)" if m["near"] == m["target"] else ""))
    for s in p["stays"]:
        out.append(f"  STAYS {s['service']} on {s['runs_on']}: {s['reason']}")
    if p["moves"]:
        comp = ", ".join(f"{r} {v} s" for r, v in p["sum_completion_by_order"].items())
        out.append(f"expected makespan {p['makespan_s']} s (solo sum {p['sum_solo_s']} s); "
                   f"sum of completion times: {comp}")
    elif not p["stays"]:
        out.append(f"  nothing to move: no catalog service runs {'on' if p['mode'] == 'evacuate' else 'away from'} "
                   f"{p['edge']}")
    return out


def request_from_facts(ask: dict) -> tuple[dict, list[dict]]:
    """The planner's request from what evacuate.yml gathered.

    ``ask``: ``edge``, ``mode``, ``order``, ``per_source``, ``per_target``; ``catalog`` (edgemig_services);
    ``seen`` (edge -> edge_load_info's result registered on that edge, null when it did not run there;
    a failed or unreachable one counts as null); ``interfaces``
    (edge -> its edgemig_address_interface, '' when unset) and ``links`` (edge -> edgemig_link_mbit);
    ``near`` (service -> edge its users are near, optional: the catalog's ``near`` otherwise);
    ``only`` (service names to consider, optional: the return's record).
    A service running on several edges is not moved (recover.yml first): it is returned apart, as a stay.
    """
    if not isinstance(ask, dict):
        raise PlanError("the request must be a mapping")
    catalog = ask.get("catalog") or {}
    seen = ask.get("seen") or {}
    interfaces = ask.get("interfaces") or {}
    links = ask.get("links") or {}
    if not isinstance(interfaces, dict) or not isinstance(links, dict):
        raise PlanError("interfaces and links must be mappings of edge -> value")
    near = ask.get("near") or {}
    if not isinstance(catalog, dict) or not isinstance(seen, dict) or not isinstance(near, dict):
        raise PlanError("catalog, seen and near must be mappings")
    only = ask.get("only")
    # An edge that failed or could not be reached answered nothing (its registered result says so).
    seen = {e: (None if not isinstance(r, dict) or r.get("unreachable") or r.get("failed") else r)
            for e, r in seen.items()}
    edges = {}
    for e in interfaces or seen:
        facts = seen.get(e)
        facts = facts if isinstance(facts, dict) else None
        edges[e] = {
            "reachable": facts is not None,
            "mem_available": (facts or {}).get("mem_available"),
            "cpu": (facts or {}).get("cpu"),
            "images": (facts or {}).get("images") or [],
            "ports_in_use": (facts or {}).get("ports_in_use") or [],
            "address_interface": bool(interfaces.get(e)),
            "link_mbit": links.get(e),
        }
    services, doubled = [], []
    for name, spec in catalog.items():
        if only is not None and name not in only:
            continue
        spec = spec if isinstance(spec, dict) else {}
        on = [e for e in edges
              if (((seen.get(e) or {}).get("containers") or {}).get(name) or {}).get("running")]
        if not on:
            continue
        if len(on) > 1:
            doubled.append({"service": name, "runs_on": ",".join(on),
                            "reason": f"runs on {', '.join(on)}: run playbooks/recover.yml -e svc={name} first"})
            continue
        c = seen[on[0]]["containers"][name]
        services.append({
            "name": name, "runs_on": on[0], "memory": c.get("memory") or 0, "image_id": c.get("image_id") or "",
            "pullable": bool(spec.get("pullable", False)),
            "ports": [p["host"] for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("host")],
            "address": spec.get("address"),
            "near": near.get(name, spec.get("near")),
            "user_facing": bool(spec.get("user_facing", False)),
        })
    req = {k: ask[k] for k in ("edge", "mode", "order", "per_source", "per_target") if ask.get(k) not in (None, "")}
    req.update(edges=edges, services=services)
    return req, doubled
