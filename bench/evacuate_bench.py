# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Evacuation benchmark (issue 28, `make bench-evacuate`): 8 services off edge1, side by side with their solo moves.

In one run, on the three-edge lab, for each rate of edge1's link (tc tbf on edge1's own egress, so the
moves to edge2 and edge3 share it as they would share an edge's uplink):

1. the plan (``evacuate.yml -e edge=edge1 --check``) names each service's target;
2. each service alone, edge1 -> its planned target, as ``migrate.yml -e svc=<name> -e target=<edge>``
   (timed: its solo time), then moved back untimed;
3. the whole edge at once, ``evacuate.yml -e edge=edge1 -e evacuate_order=<order>`` (its makespan), for
   the chosen order (``shortest``, the default) and the two naive ones (``catalog``, ``largest``); each
   followed by the return (``-e return=true``, timed, through edge1's unshaped ingress).

Throughout, a client per service asks it at its stable address every 50 ms in its own protocol (HTTP,
MariaDB's greeting, Redis PING, PostgreSQL's SSLRequest, MQTT CONNECT): a move's client downtime is the
longest gap between good answers during it, and a service's completion time in an evacuation is its first
good answer after that gap, counted from the playbook's start. Two MariaDB instances run under a writer
each (one row per COMMIT); every acknowledged row must be there at the end.

Controller cost: the CPU of ansible-playbook and every process it forked (getrusage of the waited
children) and the peak of their summed PSS (sampled from /proc every 0.25 s), for a solo migration and
for each evacuation; docs/evacuation.md turns them into a model for a fleet.

Times are whole playbook runs (Ansible's start-up and tasks included, as an operator waits for them).
The second MariaDB is the benchmark's own (``mysql2``: the catalog's mysql at another address, port and
volume), given to every playbook run of the benchmark as an extra-vars file; the lab's catalog is
untouched. Catalog services outside the benchmark's set are taken off the lab first.

    python bench/evacuate_bench.py [--rates 100,20] [--orders shortest,catalog,largest]
    python bench/evacuate_report.py docs/benchmarks-evacuate.json   # the docs section again, from its JSON
"""
from __future__ import annotations

import argparse
import copy
import fcntl
import http.client
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lab"))
import labutil  # noqa: E402
import migration_bench  # noqa: E402  (its Poller)
import svcclients  # noqa: E402
from evacuate_report import section, verdicts, write_docs  # noqa: E402

ROOT = labutil.ROOT
LOCK = "/run/edgemig-lab.lock"
SERVICES = ("apache", "mysql", "mysql2", "tomcat", "redis", "postgres", "pyapp", "mosquitto")
ORDERS = ("shortest", "catalog", "largest")
SOURCE = "edge1"
WRITER_RATE = 50.0  # rows/s per MariaDB


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bench_catalog() -> dict:
    """The lab's catalog plus a second MariaDB (its own address, host port and volume)."""
    cat = labutil.catalog()
    second = copy.deepcopy(cat["mysql"])
    second["address"] = "10.213.0.106"
    second["ports"] = [{"container": 3306, "host": 3307, "proto": "tcp"}]
    second["volumes"] = [{"name": "mysql2-data", "path": "/var/lib/mysql"}]
    second["health"] = {**second["health"], "port": 3307}
    second["uptime_probe"] = {**second["uptime_probe"], "port": 3307}
    cat["mysql2"] = second
    return cat


# ----------------------------------------------------------------------------- clients

def answers(spec: dict, timeout: float) -> bool:
    """One question in the service's own protocol, at its stable address: did the service answer?
    (A TCP connect alone is not an answer: a frozen service's kernel still completes handshakes.)"""
    probe, addr = spec["uptime_probe"], spec["address"]
    kind, port = probe["type"], probe["port"]
    try:
        if kind == "mqtt":
            client = svcclients.MQTT(addr, port, f"evac-probe-{threading.get_ident()}", timeout=timeout)
            client.close()
            return True
        with socket.create_connection((addr, port), timeout=timeout) as s:
            s.settimeout(timeout)
            if kind == "http":
                conn = http.client.HTTPConnection(addr, port, timeout=timeout)
                conn.sock = s
                conn.request("GET", spec["health"].get("path", "/") if spec["health"]["type"] == "http" else "/")
                return conn.getresponse().status < 400
            if kind == "sql":  # MariaDB's greeting packet
                return len(s.recv(64)) > 4
            if kind == "redis":
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
            if kind == "postgres":  # SSLRequest: the postmaster answers 'N' or 'S'
                s.sendall(struct.pack("!II", 8, 80877103))
                return s.recv(1) in (b"N", b"S")
    except (OSError, http.client.HTTPException, ConnectionError):
        return False
    raise ValueError(f"no probe for {kind}")


class Client(migration_bench.Poller):
    """migration_bench's poller asking in the service's own protocol, every 50 ms."""

    def __init__(self, svc: str, spec: dict):
        super().__init__(svc, spec, interval=0.05, timeout=1.0)
        self.spec = spec

    def _probe(self) -> None:
        if answers(self.spec, self.timeout):
            t = time.monotonic()
            with self._lock:
                self.good.append(t)


# ----------------------------------------------------------------------------- the controller's cost

def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, st in migration_bench._all_stats().items():
        children.setdefault(st["ppid"], []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_playbook(name: str, extra: list[str], timeout: int = 3600) -> dict:
    """ansible-playbook as labutil runs it, with its wall time, the CPU of it and everything it forked,
    and the peak of their summed PSS and of their number."""
    cmd = labutil.ansible_cmd(name, *extra)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=labutil.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, stdin=subprocess.DEVNULL)
    peak = {"pss": 0, "procs": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            pids = descendants(proc.pid)
            peak["pss"] = max(peak["pss"], sum(pss(p) for p in pids))
            peak["procs"] = max(peak["procs"], len(pids))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _unused = proc.communicate(timeout=timeout)
    wall = time.monotonic() - t0
    done.set()
    sampler.join()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-6000:]}")
    return {"t0": t0, "wall_s": round(wall, 2), "controller_cpu_s": round(cpu, 2),
            "controller_pss_mb": round(peak["pss"] / 1e6, 1), "controller_procs": peak["procs"], "out": out}


# ----------------------------------------------------------------------------- the lab

def shape(rate_mbit: float | None) -> None:
    """tbf on edge1's own egress (its eth0): every move off edge1 shares it."""
    base = ["ip", "netns", "exec", SOURCE, "tc", "qdisc"]
    if not rate_mbit:
        subprocess.run(base + ["del", "dev", "eth0", "root"], capture_output=True, check=False)
        return
    subprocess.run(base + ["replace", "dev", "eth0", "root", *migration_bench.Link._tbf(rate_mbit)], check=True)


class Bench:
    def __init__(self, services: list[str], vars_file: str):
        self.services = services
        self.catalog = bench_catalog()
        self.vars = ["-e", f"@{vars_file}"]
        with open(vars_file, "w") as fh:
            json.dump({"edgemig_services": self.catalog}, fh)

    def play(self, name: str, *extra: str) -> dict:
        return run_playbook(name, [*self.vars, *extra])

    def place_all_on_source(self) -> None:
        for other_svc in sorted(set(self.catalog) - set(self.services)):
            for edge in labutil.EDGES:
                labutil.docker(edge, "rm", "-f", other_svc, check=False)
                address = self.catalog[other_svc].get("address")
                if address:
                    subprocess.run(["ip", "-n", edge, "addr", "del", f"{address}/32", "dev", "eth0"],
                                   capture_output=True, check=False)
        for svc in self.services:
            where = labutil.running_on(svc)
            if where != [SOURCE]:
                log(f"{svc}: on {where or 'no edge'}; placing it on {SOURCE}")
                if not where:
                    self.play("deploy.yml", "-e", f"svc={svc}", "-e", f"host={SOURCE}")
                if labutil.running_on(svc) != [SOURCE]:
                    self.play("migrate.yml", "-e", f"svc={svc}", "-e", f"target={SOURCE}")
            assert labutil.running_on(svc) == [SOURCE], svc
            labutil.wait_answering(self.catalog[svc], timeout=120)

    def planned_targets(self, rate: float) -> dict[str, str]:
        out = self.play("evacuate.yml", "-e", f"edge={SOURCE}", "-e", f"edgemig_link_mbit={rate}", "--check")["out"]
        targets = {}
        for svc in self.services:
            marker = f" {svc}: {SOURCE} -> "
            line = next((ln for ln in out.splitlines() if marker in ln), None)
            assert line, f"{svc} not in the plan:\n{out[-4000:]}"
            targets[svc] = line.split(marker, 1)[1].split()[0].strip('",')
        return targets


def writers_start(bench: Bench) -> dict:
    """migration_bench's writer on each MariaDB, on its table (made here without its fill)."""
    ws = {}
    for db in ("mysql", "mysql2"):
        if db not in bench.services:
            continue
        spec = bench.catalog[db]
        labutil.sql(spec, f"CREATE TABLE IF NOT EXISTS {migration_bench.WRITER_TABLE} (id BIGINT AUTO_INCREMENT "
                          "PRIMARY KEY, v CHAR(32) NOT NULL, KEY (v))", commit=True)
        ws[db] = migration_bench.Writers(spec, WRITER_RATE).start()
    return ws


def writers_check(ws: dict) -> dict:
    """Every acknowledged row of each writer, looked for in its table (migration_bench.Writers.check)."""
    out = {}
    for db, w in ws.items():
        w.stop()
        out[db] = w.check()
    return out


def gap(client: Client, t0: float, t1: float) -> dict:
    d = client.downtime(t0, t1)
    res = {"downtime_s": d["downtime_s"]}
    if d.get("first_good_after") is not None:
        res["completion_s"] = round(d["first_good_after"] - t0, 2)
    return res


def report_downtime(svc: str) -> float | None:
    try:
        return float(labutil.report(svc)["downtime_s"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def one_rate(bench: Bench, clients: dict, rate: float, orders: list[str]) -> dict:
    log(f"edge1's link at {rate} Mbit/s")
    shape(rate)
    link = ["-e", f"edgemig_link_mbit={rate}"]
    try:
        targets = bench.planned_targets(rate)
        log(f"planned targets: {targets}")
        solo = {}
        for svc in bench.services:
            r = bench.play("migrate.yml", "-e", f"svc={svc}", "-e", f"target={targets[svc]}")
            t1 = time.monotonic()
            assert labutil.running_on(svc) == [targets[svc]], svc
            solo[svc] = {"target": targets[svc], "wall_s": r["wall_s"], **gap(clients[svc], r["t0"], t1),
                         "report_downtime_s": report_downtime(svc), "controller_cpu_s": r["controller_cpu_s"],
                         "controller_pss_mb": r["controller_pss_mb"]}
            log(f"solo {svc} -> {targets[svc]}: {solo[svc]}")
            bench.play("migrate.yml", "-e", f"svc={svc}", "-e", f"target={SOURCE}")
            labutil.wait_answering(bench.catalog[svc], timeout=60)
        evacuations = {}
        for order in orders:
            rule, _unused, lanes = order.partition("@")  # shortest@4: 4 lanes (per source and per target)
            limits = ["-e", f"evacuate_per_source={lanes}", "-e", f"evacuate_per_target={lanes}"] if lanes else []
            r = bench.play("evacuate.yml", "-e", f"edge={SOURCE}", "-e", f"evacuate_order={rule}", *link, *limits)
            t1 = time.monotonic()
            per = {}
            for svc in bench.services:
                where = labutil.running_on(svc)
                per[svc] = {"runs_on": where, **gap(clients[svc], r["t0"], t1), "report_downtime_s": report_downtime(svc)}
            plan = [ln.strip() for ln in r["out"].splitlines() if " lane " in ln and "->" in ln]
            back = bench.play("evacuate.yml", "-e", f"edge={SOURCE}", "-e", "return=true")
            for svc in bench.services:
                assert labutil.running_on(svc) == [SOURCE], (svc, labutil.running_on(svc))
                labutil.wait_answering(bench.catalog[svc], timeout=60)
            completions = [v.get("completion_s") for v in per.values()]
            evacuations[order] = {
                "makespan_s": r["wall_s"], "controller_cpu_s": r["controller_cpu_s"],
                "controller_pss_mb": r["controller_pss_mb"], "controller_procs": r["controller_procs"],
                "sum_completion_s": round(sum(completions), 2) if None not in completions else None,
                "services": per, "plan": plan, "return_s": back["wall_s"]}
            log(f"evacuation ({order}): makespan {r['wall_s']} s, sum of completions "
                f"{evacuations[order]['sum_completion_s']} s, return {back['wall_s']} s")
    finally:
        shape(None)
    return {"rate_mbit": rate, "solo": solo, "evacuations": evacuations,
            "sum_solo_s": round(sum(v["wall_s"] for v in solo.values()), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", default=",".join(SERVICES))
    ap.add_argument("--rates", default="100,20", help="edge1's link, Mbit/s (tbf on its egress)")
    ap.add_argument("--orders", default=",".join(ORDERS),
                    help="evacuate_order values, each run once per rate; <order>@<n>: with n lanes (default 2)")
    ap.add_argument("--out", default=os.path.join(ROOT, "reports", "evacuate-bench.json"))
    ap.add_argument("--docs", action="store_true", help="also write docs/benchmarks.md's section and its JSON")
    args = ap.parse_args()
    services = [s for s in args.services.split(",") if s]
    orders = [o for o in args.orders.split(",") if o]
    os.makedirs(os.path.join(ROOT, "reports"), exist_ok=True)
    bench = Bench(services, os.path.join(ROOT, "reports", "evacuate-bench-vars.json"))
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.strip()
    with open(LOCK, "w") as lock:
        log(f"waiting for {LOCK} ...")
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert labutil.lab_is_up(), "the lab is not up: make provision"
        shape(None)
        bench.place_all_on_source()
        clients = {svc: Client(svc, bench.catalog[svc]).start() for svc in services}
        ws = writers_start(bench)
        cells = []
        try:
            time.sleep(2.0)
            for rate in (float(r) for r in args.rates.split(",") if r):
                cells.append(one_rate(bench, clients, rate, orders))
        finally:
            for c in clients.values():
                c.stop()
            rows = writers_check(ws)
    run = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
           "host": f"{os.cpu_count()} CPUs, kernel {os.uname().release}", "services": services, "writer_rate": WRITER_RATE, "rates": cells,
           "writers": rows}
    run["verdicts"] = verdicts(run)
    with open(args.out, "w") as fh:
        json.dump(run, fh, indent=1)
    if args.docs:
        with open(os.path.join(ROOT, "docs", "benchmarks-evacuate.json"), "w") as fh:
            json.dump(run, fh, indent=1)
        write_docs(run)
    print(section(run))
    print(json.dumps(run["verdicts"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
