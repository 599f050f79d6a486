# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The services edge users run (issue 29), each moved edge1 -> edge2 -> edge1 under its own load.

For each service: deploy it fresh on edge1, start its load from the controller
through the service's stable address, run `ansible-playbook playbooks/migrate.yml
-e svc=<name>` twice as a user types it (the target is the other edge), then:

* no acknowledged write is lost: every Redis RPUSH the server answered, every
  PostgreSQL row whose COMMIT returned, every MQTT QoS 1 message the broker
  PUBACKed reached the persistent-session subscriber;
* restored, not restarted: Redis' run_id, PostgreSQL's pg_postmaster_start_time(),
  the app's boot id and worker pids are unchanged; Mosquitto's $SYS uptime and
  nginx's connection serial kept counting across the move;
* through nginx, apache answers after each move (its upstream is apache's
  catalog address, which follows apache).

Clients reconnect and retry after the reset a migration gives open connections
(issue 25); a write counts only once the server acknowledged it. Each hop's
downtime (the migration report's downtime_s) is written to
reports/services-downtime.json for docs/benchmarks.md.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid

import pytest
import svcclients
from labutil import (  # noqa: E402 (lab/ is on sys.path via conftest)
    EDGES,
    ROOT,
    catalog,
    criu_images_on_disk,
    docker,
    http_get,
    lab_is_up,
    other,
    playbook,
    report,
    running_on,
    uptime,
    wait_answering,
    wait_for,
)

pytestmark = pytest.mark.lab
CATALOG = catalog()
RUN = uuid.uuid4().hex[:8]   # this run's writes, told apart from a volume's older ones
DOWNTIMES = os.path.join(ROOT, "reports", "services-downtime.json")


@pytest.fixture(scope="module", autouse=True)
def lab():
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"
    if os.path.exists(DOWNTIMES):   # this run's numbers only: a service it does not reach reads "not measured"
        os.unlink(DOWNTIMES)


class Load(threading.Thread):
    """A client loop: connect, do one acknowledged step, repeat; on any error close,
    count it and reconnect. ``acked`` holds what the server confirmed."""

    pace = 0.01

    def __init__(self, spec: dict, name: str):
        super().__init__(daemon=True, name=name)
        self.spec = spec
        self.addr = spec["address"]
        self.port = spec["ports"][0]["host"]
        self.acked: list = []
        self.errors = 0
        self.last_error = ""
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def connect(self):
        return None

    def step(self, conn) -> None:
        raise NotImplementedError

    @staticmethod
    def close(conn) -> None:
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def ack(self, item) -> None:
        with self.lock:
            self.acked.append(item)

    def snapshot(self) -> list:
        with self.lock:
            return list(self.acked)

    def run(self) -> None:
        conn = None
        while not self.halt.is_set():
            try:
                if conn is None:
                    conn = self.connect()
                self.step(conn)
                time.sleep(self.pace)
            except Exception as exc:  # a reset by the move, a refused connect while switching over
                self.errors += 1
                self.last_error = repr(exc)
                self.close(conn)
                conn = None
                time.sleep(0.05)
        self.close(conn)

    def finish(self) -> list:
        self.halt.set()
        self.join(timeout=30)
        assert not self.is_alive(), f"{self.name} did not stop"
        return self.snapshot()


class RedisWriter(Load):
    def connect(self):
        return svcclients.Redis(self.addr, self.port)

    def step(self, conn) -> None:
        value = f"{RUN}-{uuid.uuid4().hex[:12]}"
        conn.call("RPUSH", f"edgemig:{RUN}", value)   # the integer reply: on the AOF and acknowledged
        self.ack(value)


class PgWriter(Load):
    """pgbench-like: one INSERT + COMMIT per row; a row counts once COMMIT returned."""

    def connect(self):
        return svcclients.pg_connect(self.spec)

    def step(self, conn) -> None:
        value = f"{RUN}-{uuid.uuid4().hex[:12]}"
        conn.execute("INSERT INTO edgemig_load (v) VALUES (%s)", (value,))
        conn.commit()
        self.ack(value)


class HttpClient(Load):
    """GET ``path``, one connection per request; ``acked`` holds (time, body) of the 200s."""

    path = "/"
    pace = 0.03

    def step(self, conn) -> None:
        status, body = http_get(self.addr, self.port, self.path, timeout=5)
        if status != 200:
            raise OSError(f"HTTP {status}")
        self.ack((time.monotonic(), body))


class MqttPublisher(Load):
    pace = 0.02

    def connect(self):
        return svcclients.MQTT(self.addr, self.port, f"edgemig-pub-{RUN}-{self.name}", clean=True)

    def step(self, conn) -> None:
        payload = f"{RUN}-{uuid.uuid4().hex[:12]}".encode()
        conn.publish(f"edgemig/load/{self.name}", payload, qos=1)   # returns on PUBACK
        self.ack(payload)


class MqttSubscriber(Load):
    """A persistent session (clean_session=0, QoS 1): what the broker queued for it
    while it was away arrives when it reconnects with the same client id."""

    pace = 0.0

    def __init__(self, spec: dict, name: str):
        super().__init__(spec, name)
        self.sessions_present: list[bool] = []
        self.last_ping = 0.0

    def connect(self):
        conn = svcclients.MQTT(self.addr, self.port, f"edgemig-sub-{RUN}", clean=False, timeout=1.0)
        self.sessions_present.append(conn.session_present)
        conn.subscribe("edgemig/load/#", qos=1)
        return conn

    def step(self, conn) -> None:
        if time.monotonic() - self.last_ping > 10:
            conn.ping()
            self.last_ping = time.monotonic()
        try:
            got = conn.receive()
        except TimeoutError:
            return
        if got and got[0].startswith("edgemig/load/"):
            self.ack(got[1])


# ----------------------------------------------------------------------------- per-service parts

def redis_identity(spec: dict) -> dict:
    with svcclients.Redis(spec["address"], spec["ports"][0]["host"]) as r:
        info = r.info("server")
    return {"run_id": info["run_id"], "process_id": info["process_id"]}


def pg_identity(spec: dict) -> dict:
    with svcclients.pg_connect(spec) as conn:
        return {"postmaster_start": str(conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0])}


def pyapp_identity(spec: dict) -> dict:
    """The boot id (made once in the master, inherited by the workers) and how many gunicorn
    processes run (master + workers: a worker that died and was respawned would count the same,
    but its counter would start again, which test_pyapp checks)."""
    body = http_get(spec["address"], spec["ports"][0]["host"], "/")[1]
    edge = running_on("pyapp")[0]
    procs = docker(edge, "exec", "pyapp", "sh", "-c", "grep -l 'gunicor[n]' /proc/[0-9]*/cmdline | wc -l").stdout
    return {"boot_id": dict(re.findall(r"(\w+)=(\S+)", body))["boot_id"], "processes": int(procs.strip())}


def no_identity(spec: dict) -> dict:
    return {}


IDENTITY = {"redis": redis_identity, "postgres": pg_identity, "pyapp": pyapp_identity,
            "nginx": no_identity, "mosquitto": no_identity}


def fresh_on_edge1(svc: str) -> dict:
    spec = CATALOG[svc]
    for edge in EDGES:
        docker(edge, "rm", "-f", svc, check=False)
        for vol in spec.get("volumes") or []:
            docker(edge, "volume", "rm", "-f", vol["name"], check=False)
    playbook("deploy.yml", "-e", f"svc={svc}", "-e", "host=edge1")
    assert running_on(svc) == ["edge1"]
    wait_answering(spec, timeout=60)
    return spec


def record(svc: str, key: str, value) -> None:
    """``reports/services-downtime.json``[svc][key] = value (bench/services_table.py reads it)."""
    data = {}
    if os.path.exists(DOWNTIMES):
        with open(DOWNTIMES) as fh:
            data = json.load(fh)
    data.setdefault(svc, {})[key] = value
    os.makedirs(os.path.dirname(DOWNTIMES), exist_ok=True)
    with open(DOWNTIMES, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)


def record_hop(svc: str, hop: int, rep: dict, extra: dict) -> None:
    record(svc, f"hop{hop}", {
        "source": rep["source"], "target": rep["target"], "downtime_s": float(rep["downtime_s"]),
        "bytes_raw": int(rep["bytes_raw"]), "bytes_wire": int(rep["bytes_wire"]),
        "checkpoint_s": rep["stages_s"].get("checkpoint_s"), "restore_s": rep["stages_s"].get("restore_s"),
        "precopy_rounds": len((rep.get("precopy") or {}).get("rounds") or []), **extra})


def hops(svc: str, spec: dict, on_hop=None) -> None:
    """edge1 -> edge2 -> edge1 as users type it; after each: restored, not restarted."""
    ident = IDENTITY[svc]
    since = time.time() - 1
    for hop in range(2):
        time.sleep(3)   # the load runs a while before each move
        src = running_on(svc)[0]
        want = ident(spec)
        t0 = time.monotonic()
        before = uptime(spec)
        proc = playbook("migrate.yml", "-e", f"svc={svc}")
        assert running_on(svc) == [other(src)], proc.stdout[-3000:]
        after = wait_answering(spec)
        elapsed = time.monotonic() - t0
        rep = report(svc)
        assert rep["source"] == src and rep["runs_on"] == other(src)
        assert ident(spec) == want, f"{svc}: identity changed over the move: restarted, not restored"
        if svc == "nginx":
            # the connection serial counts on (a restart starts it at 1; warm-up made it large)
            assert after > before, f"nginx connection serial fell from {before} to {after}"
        else:
            # the service's own clock kept running through the move (2 s: $SYS granularity, rounding)
            assert after >= before + elapsed - float(rep["downtime_s"]) - 2.0, \
                f"{svc} uptime {before} -> {after} over {elapsed:.1f} s: restarted, not restored"
        extra = on_hop(hop) if on_hop else {}
        record_hop(svc, hop, rep, {"probe_before": before, "probe_after": after, **extra})
    # issue 13 for this service too: its CRIU images were restored from the dump tmpfs, never on disk
    found = criu_images_on_disk(since)
    assert found == [], f"{svc}: CRIU images on persistent storage: {found[:20]}"


def moved_under(svc: str, load: type[Load], prepare=None) -> tuple[dict, list]:
    """Deploy ``svc`` fresh, run ``load`` through both moves; (spec, what the server acknowledged)."""
    spec = fresh_on_edge1(svc)
    if prepare:
        prepare(spec)
    client = load(spec, f"{svc}-load")
    client.start()
    hops(svc, spec)
    return spec, client.finish()


# ----------------------------------------------------------------------------- the tests

def test_redis_aof_under_writes():
    spec, acked = moved_under("redis", RedisWriter)
    with svcclients.Redis(spec["address"], spec["ports"][0]["host"]) as r:
        stored = {v.decode() for v in r.call("LRANGE", f"edgemig:{RUN}", 0, -1)}
        persistence = r.info("persistence")
    lost = [v for v in acked if v not in stored]
    record("redis", "writes", {"acknowledged": len(acked), "lost": len(lost)})
    assert len(acked) > 100 and not lost, f"{len(lost)} of {len(acked)} acknowledged RPUSHes lost: {lost[:5]}"
    assert persistence["aof_enabled"] == "1" and persistence["aof_last_write_status"] == "ok", persistence
    # the AOF is on the volume that moved with the service
    aof = docker("edge1", "exec", "redis", "sh", "-c", f"cat /data/appendonlydir/*.incr.aof | grep -c '^{RUN}-'").stdout
    assert int(aof.strip()) >= len(acked), f"the AOF holds {aof.strip()} of {len(acked)} acknowledged writes"


def pg_table(spec: dict) -> None:
    with svcclients.pg_connect(spec) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS edgemig_load (id bigserial PRIMARY KEY, v text NOT NULL)")
        conn.commit()


def test_postgres_committed_rows_survive():
    spec, acked = moved_under("postgres", PgWriter, pg_table)
    with svcclients.pg_connect(spec) as conn:
        stored = {r[0] for r in conn.execute("SELECT v FROM edgemig_load WHERE v LIKE %s", (f"{RUN}-%",))}
    lost = [v for v in acked if v not in stored]
    record("postgres", "writes", {"acknowledged": len(acked), "lost": len(lost)})
    assert len(acked) > 100 and not lost, f"{len(lost)} of {len(acked)} committed rows lost: {lost[:5]}"


def test_nginx_proxies_to_apache_across_moves():
    apache = CATALOG["apache"]
    if not running_on("apache"):
        playbook("deploy.yml", "-e", "svc=apache", "-e", "host=edge1")
    wait_answering(apache)
    spec = fresh_on_edge1("nginx")
    # a large connection serial first, so a restart (serial from 1) cannot pass for a restore
    for _unused in range(1500):
        http_get(spec["address"], spec["ports"][0]["host"], "/edgemig-health")
    client = HttpClient(spec, "nginx-client")
    client.start()

    def through(hop: int) -> dict:
        t = time.monotonic()
        wait_for(lambda: any(ts > t and "edgemig apache" in body for ts, body in client.snapshot()), 30,
                 what="apache's page through the moved nginx")
        return {}

    hops("nginx", spec, through)
    # and after apache itself moves: nginx reaches it at its catalog address
    t = time.monotonic()
    playbook("migrate.yml", "-e", "svc=apache")
    wait_for(lambda: any(ts > t and "edgemig apache" in body for ts, body in client.snapshot()), 30,
             what="apache's page through nginx after apache moved")
    ok = client.finish()
    assert len(ok) > 100 and all("edgemig apache" in body for _ts, body in ok)


def test_mosquitto_sessions_and_retained():
    spec = fresh_on_edge1("mosquitto")
    retained = f"{RUN}-retained".encode()
    c = svcclients.MQTT(spec["address"], spec["ports"][0]["host"], f"edgemig-ret-{RUN}")
    c.publish("edgemig/retained", retained, qos=1, retain=True)
    c.close()
    sub = MqttSubscriber(spec, "mqtt-sub")
    sub.start()
    wait_for(lambda: sub.sessions_present, 10, what="the subscriber's first connection")
    pubs = [MqttPublisher(spec, f"p{i}") for i in range(2)]
    for p in pubs:
        p.start()
    hops("mosquitto", spec)
    acked = [m for p in pubs for m in p.finish()]
    # the subscriber gets what the broker acknowledged, queued in its session if it was away
    wait_for(lambda: not set(acked) - set(sub.snapshot()), 60, what="every acknowledged message at the subscriber")
    got = sub.finish()
    record("mosquitto", "writes", {"acknowledged": len(acked), "lost": len(set(acked) - set(got))})
    assert len(acked) > 100 and not set(acked) - set(got)
    # every reconnect after a move found its session (subscription and queue) on the broker
    assert len(sub.sessions_present) > 1 and all(sub.sessions_present[1:]), sub.sessions_present
    # the retained message survived both moves
    c = svcclients.MQTT(spec["address"], spec["ports"][0]["host"], f"edgemig-ret2-{RUN}", timeout=5)
    try:
        c.subscribe("edgemig/retained", qos=1)
        msg = None
        while msg is None:
            msg = c.receive()
        assert msg == ("edgemig/retained", retained, True)
    finally:
        c.close()


def test_pyapp_workers_keep_their_memory():
    spec, seen = moved_under("pyapp", HttpClient)
    per_worker: dict[str, list[int]] = {}
    boots = set()
    for _ts, body in seen:
        fields = dict(re.findall(r"(\w+)=(\S+)", body))
        boots.add(fields["boot_id"])
        per_worker.setdefault(fields["worker"], []).append(int(fields["counter"]))
    assert len(boots) == 1, f"more than one boot id: the app restarted ({boots})"
    assert IDENTITY["pyapp"](spec)["processes"] == 1 + int(spec["env"]["EDGEMIG_WORKERS"])
    for worker, counters in per_worker.items():
        # each worker's in-memory counter only grew, past every answer this client saw from it
        assert counters == sorted(set(counters)), f"worker {worker}'s counter went back: {counters[:20]}"
        assert counters[-1] >= len(counters)
    assert len(seen) > 100
