# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""End-to-end migration benchmark on the two-edge lab (issue 5, the paper's section VI).

    make bench [QUICK=1] [BENCH_ARGS="--rates 10,100 --repeats 1 ..."]
    python3 bench/migration_bench.py --help

Real migrations of the catalog services between lab edge1 and edge2, the link
shaped with tc tbf on the host-side veths (optionally random loss with an nft
netdev ingress rule, optionally a rate schedule changed while the migration
runs). Methods, all in the same run:

  uncompressed   migrate.yml, policy fixed:none:0, serial, no dedup (the paper's
                 "traditional uncompressed" baseline: checkpoint, copy, restore)
  podman         Podman-style export (harness): checkpoint, one zstd tar archive of
                 checkpoint + layer diff (+ volumes), scp edge-to-edge, create the
                 container, unpack, restore, move the address - all serial
  paper / model  migrate.yml with the paper's controller / our model controller
  lz4:N          migrate.yml, fixed lz4 level N (the paper's Fig. 9)
  serial:<pol>   migrate.yml, policy <pol>, edgemig_pipelined=false (Fig. 5)

Per case: playbook wall time, the module's stage durations, client-visible
downtime (a client polls the stable address every 20 ms), stream bytes and
edge-to-edge link bytes, ratio, link utilisation, CPU and peak RSS of sender
and receiver processes and of each edge, and (--ab) throughput / requests per
second of an ``ab -c 100`` load on apache's 512 KiB /big.html during a
migration (Fig. 6/7).

Pre-copy cells (issue 11, ``--cells svc:rate,...``, ``make bench-precopy``) put warm
pre-copy and stop-and-copy side by side; ``mysql-sysbench`` runs sysbench
oltp_read_write through the migration and ``mysql-big`` first grows MariaDB's
data volume to ``--big-volume-mib`` (CELL_VARIANTS).

The whole run holds the lab lock (/run/edgemig-lab.lock) unless
EDGEMIG_LAB_LOCK_HELD=1 says the caller holds it (the pytest wrapper); every
tc qdisc / nft table it adds is removed on exit.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import fcntl
import http.client
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "lab"))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))

import labutil  # noqa: E402  (playbook(), docker(), running_on(), catalog())

from ansible_collections.edgemig.migration.plugins.module_utils.receiver.receiver import clear_dir  # noqa: E402

LAB_LOCK = "/run/edgemig-lab.lock"
EDGES = ("edge1", "edge2")
EDGE_IP = labutil.EDGE_IP
HOST_VETH = {"edge1": "emig-e1h", "edge2": "emig-e2h"}
NFT_COUNT = "edgemig_bench_count"
NFT_LOSS = "edgemig_bench_loss"
SSH_KEY = "/var/lib/edgemig-lab/ssh/id_ed25519"
KNOWN_HOSTS = "/var/lib/edgemig-lab/ssh/known_hosts"
PROBE_PATH = {"apache": "/index.html", "tomcat": "/app/health.txt"}
METHOD_LABEL = {
    "uncompressed": "uncompressed serial",
    "podman": "Podman-style export (zstd tar + scp)",
    "paper": "pipeline + paper controller",
    "model": "pipeline + model controller, stop-and-copy",
    "precopy": "pipeline + model controller + warm pre-copy (issue 11)",
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


def CODE_VERSION() -> str:
    """The commit the case ran with (+dirty when the collection's code had uncommitted changes)."""
    head = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    dirty = run(["git", "-C", ROOT, "status", "--porcelain", "--", "plugins", "playbooks", "roles"],
                check=False).stdout.strip()
    return head + ("+dirty" if dirty else "")


def median(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


# ----------------------------------------------------------------------------- network namespaces

_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(edge: str, fn, *args):
    """Run ``fn`` in a thread that entered the edge's network namespace (setns is per thread)."""
    out: dict = {}

    def body():
        fd = os.open(f"/var/run/netns/{edge}", os.O_RDONLY)
        try:
            if _libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        try:
            out["r"] = fn(*args)
        except BaseException as exc:  # re-raised in the caller
            out["e"] = exc

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out.get("r")


# ----------------------------------------------------------------------------- link shaping, loss, counters

class Link:
    """tbf on both host-side veths, nft loss on their ingress, nft edge-to-edge byte counters."""

    def __init__(self):
        self.rate = None
        self.loss = 0.0
        self.offloads: dict = {}
        self._count_ok = False

    @staticmethod
    def _tbf(rate_mbit: float) -> list[str]:
        rate_bps = rate_mbit * 1e6
        burst = max(32 * 1024, int(rate_bps / 8 * 0.004))
        return ["tbf", "rate", f"{rate_mbit}mbit", "burst", str(burst), "latency", "100ms"]

    def shape(self, rate_mbit: float | None, change: bool = False) -> None:
        for dev in HOST_VETH.values():
            if not rate_mbit:
                run(["tc", "qdisc", "del", "dev", dev, "root"], check=False)
            else:
                verb = "change" if change and self.rate else "replace"
                run(["tc", "qdisc", verb, "dev", dev, "root", *self._tbf(rate_mbit)])
        self.rate = rate_mbit or None

    def set_loss(self, loss: float) -> None:
        run(["nft", "delete", "table", "netdev", NFT_LOSS], check=False)
        if loss <= 0:
            self._offloads(restore=True)
            self.loss = 0.0
            return
        self._offloads(restore=False)
        per_mille = max(1, round(loss * 1000))
        rules = [f"table netdev {NFT_LOSS} {{"]
        for edge, dev in HOST_VETH.items():
            rules.append(f'  chain in_{edge} {{ type filter hook ingress device "{dev}" priority 0; '
                         f"numgen random mod 1000 < {per_mille} drop; }}")
        rules.append("}")
        run(["nft", "-f", "-"], input="\n".join(rules))
        self.loss = loss

    def _offloads(self, restore: bool) -> None:
        """Per-frame loss needs TSO/GSO off on the namespaces' eth0 (PLATFORM.md)."""
        for edge in EDGES:
            if restore:
                for feat, state in self.offloads.pop(edge, {}).items():
                    run(["ip", "netns", "exec", edge, "ethtool", "-K", "eth0", feat, state], check=False)
                continue
            if edge not in self.offloads:
                cur = run(["ip", "netns", "exec", edge, "ethtool", "-k", "eth0"], check=False).stdout
                saved = {}
                for feat, name in (("tso", "tcp-segmentation-offload"), ("gso", "generic-segmentation-offload")):
                    m = re.search(rf"^{name}: (on|off)", cur, re.M)
                    if m:
                        saved[feat] = m.group(1)
                self.offloads[edge] = saved
            run(["ip", "netns", "exec", edge, "ethtool", "-K", "eth0", "tso", "off", "gso", "off"], check=False)

    def counters_up(self) -> None:
        run(["nft", "delete", "table", "bridge", NFT_COUNT], check=False)
        a, b = EDGE_IP["edge1"], EDGE_IP["edge2"]
        rules = (f"table bridge {NFT_COUNT} {{\n chain edgecount {{\n"
                 f"  type filter hook forward priority 0; policy accept;\n"
                 f"  ip saddr {a} ip daddr {b} counter comment \"e1e2\"\n"
                 f"  ip saddr {b} ip daddr {a} counter comment \"e2e1\"\n }}\n}}\n")
        self._count_ok = run(["nft", "-f", "-"], input=rules, check=False).returncode == 0

    def edge_bytes(self) -> dict:
        """Cumulative bytes of frames bridged edge1->edge2 and edge2->edge1."""
        if not self._count_ok:
            return {}
        out = run(["nft", "-j", "list", "table", "bridge", NFT_COUNT], check=False).stdout
        res = {}
        try:
            for item in json.loads(out)["nftables"]:
                rule = item.get("rule")
                if not rule:
                    continue
                label = rule.get("comment")
                for expr in rule.get("expr", []):
                    if "counter" in expr and label:
                        res[label] = expr["counter"]["bytes"]
        except (ValueError, KeyError):
            return {}
        return res

    def cleanup(self) -> None:
        self.shape(None)
        self.set_loss(0)
        run(["nft", "delete", "table", "bridge", NFT_COUNT], check=False)


# ----------------------------------------------------------------------------- client-visible downtime

class Poller:
    """A client that asks the service at its stable address every 20 ms (each probe its own thread)."""

    def __init__(self, svc: str, spec: dict, interval: float = 0.02, timeout: float = 1.0):
        self.svc, self.addr = svc, spec["address"]
        self.port = spec["ports"][0]["host"]
        self.kind = "http" if svc in PROBE_PATH else "tcp"
        self.interval, self.timeout = interval, timeout
        self.good: list[float] = []
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=96, thread_name_prefix="poll")
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _probe(self) -> None:
        try:
            if self.kind == "http":
                conn = http.client.HTTPConnection(self.addr, self.port, timeout=self.timeout)
                try:
                    conn.request("GET", PROBE_PATH[self.svc])
                    resp = conn.getresponse()
                    resp.read()
                    ok = resp.status < 400
                finally:
                    conn.close()
            else:  # MariaDB: a good answer is the server's greeting packet
                with socket.create_connection((self.addr, self.port), timeout=self.timeout) as s:
                    s.settimeout(self.timeout)
                    ok = len(s.recv(64)) > 4
        except (OSError, http.client.HTTPException):
            ok = False
        if ok:
            t = time.monotonic()
            with self._lock:
                self.good.append(t)

    def _loop(self) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set():
            self._pool.submit(self._probe)
            self.sent += 1
            nxt += self.interval
            time.sleep(max(0.0, nxt - time.monotonic()))

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def downtime(self, t_start: float, t_end: float) -> dict:
        """Longest gap between consecutive good answers that overlaps [t_start, t_end]."""
        with self._lock:
            good = sorted(self.good)
        best = None
        for a, b in zip(good, good[1:]):
            if b >= t_start and a <= t_end and (best is None or b - a > best[1] - best[0]):
                best = (a, b)
        if best is None:
            return {"downtime_s": None, "probes": self.sent, "good": len(good)}
        return {"downtime_s": round(best[1] - best[0], 4), "last_good_before": best[0],
                "first_good_after": best[1], "probes": self.sent, "good": len(good)}


# ----------------------------------------------------------------------------- CPU and memory

CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    # rest[1]=ppid, [11..14]=utime stime cutime cstime, [21]=rss pages
    return {"ppid": int(rest[1]), "cpu": sum(int(x) for x in rest[11:13]) / CLK,
            "ccpu": sum(int(x) for x in rest[13:15]) / CLK, "rss": int(rest[21]) * PAGE,
            "comm": data[data.index("(") + 1:data.rindex(")")]}


def _all_stats() -> dict:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st:
                out[int(name)] = st
    return out


def _descendants(stats: dict, root: int) -> list[int]:
    kids: dict = {}
    for pid, st in stats.items():
        kids.setdefault(st["ppid"], []).append(pid)
    out, todo = [], [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def _pidfile(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def edge_cpu(edge: str) -> dict:
    """Cumulative CPU seconds on an edge: everything its sshd ran (incl. reaped children), and dockerd+containerd."""
    stats = _all_stats()
    res = {}
    sshd = _pidfile(f"/run/edgemig-lab/{edge}/sshd.pid")
    if sshd and sshd in stats:
        total = stats[sshd]["ccpu"] + sum(stats[p]["cpu"] + stats[p]["ccpu"] for p in _descendants(stats, sshd))
        res["ssh_s"] = total
    dockerd = _pidfile(f"/run/edgemig-lab/{edge}/docker.pid")
    if dockerd and dockerd in stats:
        daemons = [dockerd] + [p for p in _descendants(stats, dockerd) if stats[p]["comm"] == "containerd"]
        res["docker_s"] = sum(stats[p]["cpu"] for p in daemons)
    return res


class Sampler(threading.Thread):
    """Every 50 ms: CPU and RSS of the sender (the module process on the source while a receiver
    runs), the receiver, and any harness-started process tagged with a side; peak RSS per side."""

    def __init__(self, src: str, dst: str, interval: float = 0.05):
        super().__init__(daemon=True)
        self.src, self.dst, self.interval = src, dst, interval
        self.stop_ev = threading.Event()
        self.roots = {e: _pidfile(f"/run/edgemig-lab/{e}/sshd.pid") for e in (src, dst)}
        self.tagged: dict[int, str] = {}
        self.role: dict[int, str] = {}
        self.cpu: dict[int, float] = {}
        self.rss: dict[str, int] = {"sender": 0, "receiver": 0, "source": 0, "target": 0}
        self._cmd: dict[int, str] = {}
        self.cpu0: dict[int, float] = {}
        self.everything = False  # podman: every process of an edge's sshd belongs to the copy

    def tag(self, pid: int, side: str) -> None:
        self.tagged[pid] = side

    def _cmdline(self, pid: int) -> str:
        if pid not in self._cmd:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    self._cmd[pid] = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                self._cmd[pid] = ""
        return self._cmd[pid]

    def tick(self) -> None:
        stats = _all_stats()
        side_of: dict[int, str] = {}
        for edge, side in ((self.src, "source"), (self.dst, "target")):
            if self.roots.get(edge) in stats:
                for p in _descendants(stats, self.roots[edge]):
                    side_of[p] = side
        for pid, side in list(self.tagged.items()):
            if pid in stats:
                side_of[pid] = side
                for p in _descendants(stats, pid):
                    side_of[p] = side
        receiver_alive = False
        tagged = set()
        for pid in list(self.tagged):
            if pid in stats:
                tagged.add(pid)
                tagged.update(_descendants(stats, pid))
        for pid, side in side_of.items():
            cmd = self._cmdline(pid)
            if side == "target" and ("--then-restore" in cmd or "_Edgemig" in cmd):
                self.role[pid] = "receiver"
                receiver_alive = True
        for pid, side in side_of.items():
            st = stats[pid]
            self.rss[side] = max(self.rss[side], st["rss"])
            if pid not in self.role and (pid in tagged or self.everything):
                self.role[pid] = "sender" if side == "source" else "receiver"
            if receiver_alive and side == "source" and st["comm"].startswith("python") and pid not in self.role:
                self.role[pid] = "sender"
            if pid in self.role:
                self.cpu0.setdefault(pid, st["cpu"] + st["ccpu"] if self.everything else 0.0)
                self.cpu[pid] = st["cpu"] + st["ccpu"] - self.cpu0[pid]
                role = self.role[pid]
                self.rss[role] = max(self.rss[role], st["rss"])

    def run(self) -> None:
        while not self.stop_ev.wait(self.interval):
            self.tick()

    def result(self) -> dict:
        cpu = {"sender": 0.0, "receiver": 0.0}
        for pid, role in self.role.items():
            cpu[role] += self.cpu.get(pid, 0.0)
        return {"sender_cpu_s": round(cpu["sender"], 3), "receiver_cpu_s": round(cpu["receiver"], 3),
                "sender_rss_peak_mb": round(self.rss["sender"] / 1e6, 1),
                "receiver_rss_peak_mb": round(self.rss["receiver"] / 1e6, 1),
                "source_rss_peak_mb": round(self.rss["source"] / 1e6, 1),
                "target_rss_peak_mb": round(self.rss["target"] / 1e6, 1)}


# ----------------------------------------------------------------------------- load generator (Fig. 6/7)

class AbLoad:
    """``ab -c 100`` on apache's /big.html in back-to-back 1-second slices (``-t 1``), like the paper's
    "multiple return instructions": each slice reports its requests/s and transfer rate. One long ab
    aborts for good ("apr_pollset_poll: The timeout specified has expired") when its connections to the
    frozen source hang; a slice that aborts is recorded as a slice with no answers and the next one starts."""

    def __init__(self, url: str, seconds: int, concurrency: int = 100):
        self.url, self.seconds, self.c = url, seconds, concurrency
        self.slices: list[dict] = []
        self.t_wall0 = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set() and time.time() - self.t_wall0 < self.seconds:
            t0 = time.time()
            proc = subprocess.run(["ab", "-q", "-r", "-c", str(self.c), "-t", "1", "-n", "5000000", "-s", "2",
                                   self.url], capture_output=True, text=True, check=False)
            t1 = time.time()
            sl = {"t0": round(t0 - self.t_wall0, 3), "t1": round(t1 - self.t_wall0, 3), "exit": proc.returncode}
            for key, pat in (("requests", r"Complete requests:\s+(\d+)"), ("failed", r"Failed requests:\s+(\d+)"),
                             ("rps", r"Requests per second:\s+([\d.]+)"),
                             ("kBps", r"Transfer rate:\s+([\d.]+)")):
                m = re.search(pat, proc.stdout)
                sl[key] = float(m.group(1)) if m else 0.0
            if proc.returncode != 0:
                sl["error"] = proc.stderr.strip()[-120:]
            self.slices.append(sl)

    def start(self) -> None:
        self.t_wall0 = time.time()
        self._thread.start()

    def finish(self, size_bytes: int) -> dict:
        self._thread.join(timeout=self.seconds + 30)
        self._stop.set()
        series = []
        for sl in self.slices:
            dur = max(sl["t1"] - sl["t0"], 1e-3)
            series.append({"t": round((sl["t0"] + sl["t1"]) / 2, 2), "t0": sl["t0"], "t1": sl["t1"],
                           "qps": round(sl["requests"] / dur, 1), "mbit": round(sl["kBps"] * 8 / 1000, 1),
                           "ok": sl["exit"] == 0})
        total = sum(sl["requests"] for sl in self.slices)
        span = (self.slices[-1]["t1"] - self.slices[0]["t0"]) if self.slices else 0
        return {"requests": total, "failed": sum(sl["failed"] for sl in self.slices),
                "aborted_slices": sum(1 for sl in self.slices if sl["exit"] != 0),
                "rps": round(total / span, 1) if span else None,
                "transfer_kBps": round(sum(sl["kBps"] * (sl["t1"] - sl["t0"]) for sl in self.slices) / span, 1)
                if span else None, "series": series, "slices": self.slices}


# ----------------------------------------------------------------------------- methods

def other(edge: str) -> str:
    return "edge2" if edge == "edge1" else "edge1"


def ensure_running(svc: str) -> str:
    where = labutil.running_on(svc)
    if len(where) == 1:
        # A container left from before an image rebuild cannot move: its image is not on the other edge.
        image = labutil.docker(where[0], "inspect", "-f", "{{.Image}}", svc, check=False).stdout.strip()
        if image and labutil.docker(other(where[0]), "image", "inspect", image, check=False).returncode == 0:
            return where[0]
        log(f"{svc}: its image {image[:19]} is not on {other(where[0])}: redeploying it from the catalog")
        for edge in EDGES:
            labutil.docker(edge, "rm", "-f", svc, check=False)
    log(f"{svc}: running on {where or 'no edge'}; deploying on edge1")
    labutil.playbook("deploy.yml", "-e", f"svc={svc}", "-e", "host=edge1", timeout=600)
    return labutil.running_on(svc)[0]


def method_vars(method: str) -> list[str]:
    """migrate.yml variables of a method. Every method but ``precopy`` is stop-and-copy, said
    explicitly (pre-copy is the playbook's default since issue 11), so old and new runs compare."""
    stop_and_copy = "edgemig_precopy=false"
    if method == "precopy":  # the model controller with warm rounds before the freeze
        return ["edgemig_policy=model", "edgemig_precopy=true"]
    if method == "uncompressed":
        return ["edgemig_policy=fixed:none:0", "edgemig_pipelined=false", "edgemig_dedup=false", stop_and_copy]
    if method in ("model", "paper"):
        return [f"edgemig_policy={method}", stop_and_copy]
    if method.startswith("lz4:"):
        return [f"edgemig_policy=fixed:lz4:{int(method[4:])}", stop_and_copy]
    if method.startswith("serial:") or method.startswith("pipelined:"):
        kind, _unused, policy = method.partition(":")
        pol = policy if policy in ("model", "paper") else f"fixed:{policy}"
        return [f"edgemig_policy={pol}", f"edgemig_pipelined={'false' if kind == 'serial' else 'true'}", stop_and_copy]
    raise ValueError(f"unknown method {method!r}")


def via_playbook(svc: str, src: str, dst: str, method: str, report_dir: str) -> dict:
    extra = ["-e", f"svc={svc}", "-e", f"target={dst}", "-e", f"edgemig_report_dir={report_dir}"]
    for v in method_vars(method):
        extra += ["-e", v]
    rep_file = os.path.join(report_dir, f"migrate-{svc}-latest.json")
    if os.path.exists(rep_file):
        os.unlink(rep_file)
    t0 = time.monotonic()
    proc = labutil.playbook("migrate.yml", *extra, check=False, timeout=1800)
    wall = time.monotonic() - t0
    if proc.returncode != 0 or not os.path.exists(rep_file):
        tail = (proc.stdout[-2500:] + proc.stderr[-800:]).strip()
        # ansible-core 2.19 says it on one line; a YAML ``msg: |-`` block would give only its marker.
        errors = re.findall(r"\[ERROR\]: (.*)", tail)
        msgs = [m for m in re.findall(r"msg: (.*)", tail) if m.strip() not in ("|-", "|", ">-", ">")]
        return {"ok": False, "wall_s": round(wall, 3),
                "error": errors[-1] if errors else msgs[-1] if msgs else tail[-600:]}
    with open(rep_file) as fh:
        rep = json.load(fh)
    st = rep["transfer"]
    stages = {k: float(v) for k, v in rep["stages_s"].items()}
    return {"ok": True, "wall_s": round(wall, 3), "stages": stages,
            "module_downtime_s": float(rep["downtime_s"]), "bytes_raw": int(st["bytes_raw"]),
            "bytes_wire": int(st["bytes_wire"]), "ratio": float(st["ratio"]), "sizes": rep["sizes"],
            "compress_cpu_s": round(float(st.get("compress_cpu_s", 0.0)), 3), "codecs": st.get("codecs"),
            "pipelined": st.get("pipelined"), "controller": {k: v for k, v in (st.get("controller") or {}).items()
                                                             if k not in ("estimates", "predicted_Bps")},
            "stream_s": st.get("seconds"), "timeline": rep.get("timeline") or [],
            "precopy": rep.get("precopy") or {}, "checkpoint_via": rep.get("checkpoint_via")}


class Podman:
    """Podman-style ``container checkpoint --export`` / ``restore --import``, serial, honest:
    checkpoint, one zstd tar of checkpoint + layer diff + volumes on the source, scp over the
    (shaped) edge-to-edge link, then on the target create the container, unpack, restore, move
    the address. Every step runs after the previous one ended."""

    def __init__(self, sampler_hook=None):
        from ansible_collections.edgemig.migration.plugins.module_utils.docker import checkpoint, container_spec
        from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPI
        from ansible_collections.edgemig.migration.plugins.module_utils.docker.health import wait_healthy
        from ansible_collections.edgemig.migration.plugins.module_utils.docker.switchover import set_address
        self.ck, self.cs, self.DockerAPI = checkpoint, container_spec, DockerAPI
        from ansible_collections.edgemig.migration.plugins.module_utils.docker.tmpfs_restore import (
            start_from_checkpoint,
        )
        self.wait_healthy, self.set_address = wait_healthy, set_address
        self.start_from_checkpoint = start_from_checkpoint
        self.hook = sampler_hook

    def _child(self, cmd: list[str], side: str) -> None:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if self.hook:
            self.hook(proc.pid, side)
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])}...: {err.decode(errors='replace').strip()[-400:]}")

    def migrate(self, svc: str, spec: dict, src: str, dst: str) -> dict:
        api_s = self.DockerAPI(f"unix:///run/edgemig-lab/{src}/docker.sock")
        api_d = self.DockerAPI(f"unix:///run/edgemig-lab/{dst}/docker.sock")
        dump_s = f"/var/lib/edgemig-lab/{src}/dumps"
        dump_d = f"/var/lib/edgemig-lab/{dst}/dumps"
        stages: dict = {}
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        inspect = api_s.inspect_container(svc)
        body = self.cs.from_inspect(inspect)
        # 1. checkpoint (freeze + dump), the address leaves the source
        ck = self.ck.create(api_s, svc, dump_s, "edgemig")
        in_netns(src, self.set_address, "eth0", spec["address"], False)
        stages["checkpoint_s"] = round(time.monotonic() - t0, 4)
        archive = os.path.join(ck["work_dir"], "export.tar.zst")
        try:
            # 2. export: one compressed archive
            t = time.monotonic()
            cmd = ["tar", "--xattrs", "--xattrs-include=*", "--acls", "-I", "zstd -3 -T0 -q", "-cf", archive,
                   "-C", os.path.dirname(ck["checkpoint_dir"]), os.path.basename(ck["checkpoint_dir"])]
            if ck["upper_dir"]:
                cmd += ["-C", os.path.dirname(ck["upper_dir"]), os.path.basename(ck["upper_dir"])]
            for vol in ck["volumes"]:
                cmd += ["-C", os.path.dirname(os.path.dirname(vol["path"])),
                        os.path.join(os.path.basename(os.path.dirname(vol["path"])), os.path.basename(vol["path"]))]
            self._child(cmd, "source")
            stages["export_s"] = round(time.monotonic() - t, 4)
            archive_bytes = os.path.getsize(archive)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            # 3. copy over the edge-to-edge link (scp from inside the source namespace)
            t = time.monotonic()
            remote = os.path.join(dump_d, f"bench-import-{os.getpid()}.tar.zst")
            self._child(["nsenter", f"--net=/var/run/netns/{src}", "scp", "-q", "-i", SSH_KEY,
                         "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "StrictHostKeyChecking=yes",
                         "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "BatchMode=yes",
                         archive, f"root@{EDGE_IP[dst]}:{remote}"], "source")
            stages["copy_s"] = round(time.monotonic() - t, 4)
            ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
        finally:
            shutil.rmtree(ck["work_dir"], ignore_errors=True)
        try:
            # 4. import: create the container, unpack checkpoint, layer and volumes into it
            t = time.monotonic()
            old = api_d.inspect_container(svc)
            if old is not None:
                api_d.remove_container(svc, force=True)
            cid = api_d.create_container(svc, body)
            new = api_d.inspect_container(cid)
            data_root = api_d.info()["DockerRootDir"]
            tmp = tempfile.mkdtemp(prefix="bench-import-", dir=data_root)
            self._child(["tar", "--xattrs", "--xattrs-include=*", "--acls", "-I", "zstd -d -q", "-xf", remote,
                         "-C", tmp], "target")
            moves = []
            if ck["upper_dir"]:
                moves.append((os.path.join(tmp, os.path.basename(ck["upper_dir"])), self.cs.upper_dir(new)))
            tvols = {v["name"]: v["path"] for v in self.cs.volumes(new)}
            for vol in ck["volumes"]:
                moves.append((os.path.join(tmp, os.path.basename(os.path.dirname(vol["path"])),
                                           os.path.basename(vol["path"])), tvols[vol["name"]]))
            for src_dir, dest in moves:
                self._clear(dest)
                self._child(["cp", "-a", "--", f"{src_dir}/.", dest], "target")
            stages["import_s"] = round(time.monotonic() - t, 4)
            ru3 = resource.getrusage(resource.RUSAGE_CHILDREN)
            # 5. restore (the images where the import unpacked them), health, address
            t = time.monotonic()
            self.start_from_checkpoint(api_d, cid, os.path.join(tmp, "edgemig"))
            shutil.rmtree(tmp, ignore_errors=True)
            stages["restore_s"] = round(time.monotonic() - t, 4)
            ok, health_s, reason = in_netns(dst, self.wait_healthy, spec.get("health"), api_d, cid)
            stages["health_s"] = round(health_s, 4)
            if not ok:
                raise RuntimeError(f"restored {svc} is not healthy: {reason}")
            t = time.monotonic()
            in_netns(dst, self.set_address, "eth0", spec["address"], True)
            stages["switch_s"] = round(time.monotonic() - t, 4)
            stages["downtime_s"] = round(time.monotonic() - t0, 4)
        except Exception:
            # roll back: the service back on the source from a fresh start, the address with it
            try:
                api_d.remove_container(svc, force=True)
            except Exception:  # noqa: BLE001
                pass
            api_s.start_container(svc, allow_running=True)
            in_netns(src, self.set_address, "eth0", spec["address"], True)
            raise
        finally:
            try:
                os.unlink(remote)
            except OSError:
                pass
        api_s.remove_container(svc, force=True)
        wall = time.monotonic() - t0

        def cpu(a, b):
            return (b.ru_utime + b.ru_stime) - (a.ru_utime + a.ru_stime)
        sizes = ck["sizes"]
        return {"ok": True, "wall_s": round(wall, 3), "stages": stages, "module_downtime_s": stages["downtime_s"],
                "bytes_raw": sizes["total"], "bytes_wire": archive_bytes,
                "ratio": round(archive_bytes / sizes["total"], 4) if sizes["total"] else 1.0, "sizes": sizes,
                "compress_cpu_s": round(cpu(ru0, ru1), 3), "scp_client_cpu_s": round(cpu(ru1, ru2), 3),
                "unpack_cpu_s": round(cpu(ru2, ru3), 3), "pipelined": False, "timeline": []}

    def _clear(self, path: str) -> None:
        clear_dir(path)


# ----------------------------------------------------------------------------- MariaDB under a writer

FILL_TABLE = "bench_fill"
WRITER_TABLE = "bench_writer"


def mysql_prepare(spec: dict, rows: int) -> dict:
    """Fill MariaDB to ``rows`` rows once (batched INSERTs; rows already there are reused), create the
    writer's table (emptied), and read the whole fill table so its pages sit in the buffer pool."""
    import pymysql
    probe = spec["uptime_probe"]
    labutil.wait_answering(spec, timeout=120)
    conn = pymysql.connect(host=spec["address"], port=probe["port"], user=probe["user"], password=probe["password"],
                           database=probe.get("database"), connect_timeout=5, read_timeout=120, autocommit=False)
    t0 = time.monotonic()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {FILL_TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, "
                        "k INT NOT NULL, pad VARCHAR(64) NOT NULL, KEY (k))")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {WRITER_TABLE} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                        "v CHAR(32) NOT NULL, KEY (v))")
            # Every case's writer starts on an empty table: its random-key index otherwise grows by the
            # rows of every earlier case (250k after one matrix), and each insert then dirties a page of
            # a larger index - a heavier load for the cells that come later (docs/benchmarks.md notes).
            cur.execute(f"TRUNCATE TABLE {WRITER_TABLE}")
            conn.commit()
            cur.execute(f"SELECT COUNT(*) FROM {FILL_TABLE}")
            have = int(cur.fetchone()[0])
            inserted = 0
            while have + inserted < rows:
                n = min(5000, rows - have - inserted)
                cur.executemany(f"INSERT INTO {FILL_TABLE} (k, pad) VALUES (%s, %s)",
                                [(have + inserted + i, os.urandom(16).hex() + os.urandom(16).hex()) for i in range(n)])
                conn.commit()
                inserted += n
            cur.execute(f"SELECT COUNT(*), SUM(LENGTH(pad)) FROM {FILL_TABLE}")
            count, _unused = cur.fetchone()
    finally:
        conn.close()
    if inserted:
        log(f"mysql: {inserted} rows inserted into {FILL_TABLE} ({time.monotonic() - t0:.1f} s)")
    return {"fill_rows": int(count), "fill_inserted": inserted}


BULK_TABLE = "bench_bulk"
BULK_ROW_HEX = 2000   # per row: 1000 random bytes as hex, so the data compresses about as well as text


def volume_bytes(edge: str, volume: str) -> int:
    """Bytes in a named volume on ``edge`` (the lab's edges share the controller's file system)."""
    mp = labutil.docker(edge, "volume", "inspect", "-f", "{{.Mountpoint}}", volume).stdout.strip()
    return int(run(["du", "-sb", mp]).stdout.split()[0])


def mysql_grow_volume(spec: dict, edge: str, mib: int) -> dict:
    """Add rows to ``bench_bulk`` until MariaDB's data volume holds ``mib`` MiB (kept between cases)."""
    import pymysql
    volume = spec["volumes"][0]["name"]
    want = mib << 20
    have = volume_bytes(edge, volume)
    t0 = time.monotonic()
    rows = 0
    if have < want:
        probe = spec["uptime_probe"]
        labutil.wait_answering(spec, timeout=120)
        conn = pymysql.connect(host=spec["address"], port=probe["port"], user=probe["user"], password=probe["password"],
                               database=probe.get("database"), connect_timeout=5, read_timeout=300)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE TABLE IF NOT EXISTS {BULK_TABLE} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                            "pad TEXT NOT NULL)")
                while have < want:
                    for _unused in range(25):  # ~25 MB between two looks at the volume
                        cur.executemany(f"INSERT INTO {BULK_TABLE} (pad) VALUES (%s)",
                                        [(os.urandom(BULK_ROW_HEX // 2).hex(),) for _unused in range(500)])
                        conn.commit()
                        rows += 500
                    have = volume_bytes(edge, volume)
        finally:
            conn.close()
        log(f"mysql: {rows} rows added to {BULK_TABLE}, volume {have / 2**20:.0f} MiB "
            f"({time.monotonic() - t0:.1f} s)")
    return {"volume_mib": round(have / 2**20), "rows_added": rows, "target_mib": mib}


def mysql_drop_bulk(spec: dict) -> None:
    try:
        labutil.sql(spec, f"DROP TABLE IF EXISTS {BULK_TABLE}", commit=True)
    except Exception as exc:  # noqa: BLE001 - the lab may be half down after a failure
        log(f"could not drop {BULK_TABLE}: {exc}")


class Sysbench:
    """``sysbench oltp_read_write`` against MariaDB through the service address, for the whole migration.

    Errors are ignored (``--mysql-ignore-errors=all``): sysbench's OLTP scripts then reconnect after a
    lost connection, and sysbench is started again if it gave up (:meth:`_run`), so the load goes on on
    the target. Transactions per second come from its 1 s reports.
    """
    TABLES, TABLE_SIZE = 4, 25000

    def __init__(self, spec: dict, threads: int):
        probe = spec["uptime_probe"]
        self.threads = threads
        self.base = ["sysbench", "oltp_read_write", f"--mysql-host={spec['address']}", f"--mysql-port={probe['port']}",
                     f"--mysql-user={probe['user']}", f"--mysql-password={probe['password']}",
                     f"--mysql-db={probe.get('database')}", f"--tables={self.TABLES}", f"--table-size={self.TABLE_SIZE}"]
        self.proc: subprocess.Popen | None = None
        self.lines: list[tuple[float, str]] = []

    def prepare(self) -> Sysbench:
        if not shutil.which("sysbench"):
            log("installing Debian's sysbench")
            run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "sysbench"],
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if run(self.base + ["run", "--time=1", "--threads=1"], check=False).returncode != 0:
            run(self.base + ["cleanup"], check=False)
            run(self.base + ["prepare"])
        return self

    def start(self) -> None:
        self.stopping = threading.Event()
        self.restarts = 0
        self.runner = threading.Thread(target=self._run, daemon=True)
        self.runner.start()

    def _run(self) -> None:
        """Run sysbench until :meth:`finish`; start it again when it exits before that. Its reconnect
        after a lost connection is one attempt: while the service is frozen that attempt is refused,
        the thread dies, and once all have, sysbench exits. A user's application retries; so do we."""
        while not self.stopping.is_set():
            self.proc = subprocess.Popen(self.base + [f"--threads={self.threads}", "--time=0", "--report-interval=1",
                                                      "--mysql-ignore-errors=all", "run"],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in self.proc.stdout:
                self.lines.append((time.monotonic(), line.rstrip()))
            self.proc.wait()
            if not self.stopping.is_set():
                self.restarts += 1
                self.stopping.wait(0.2)

    def finish(self, t_start: float, t_end: float) -> dict:
        self.stopping.set()
        deadline = time.monotonic() + 10
        while self.runner.is_alive() and time.monotonic() < deadline:
            self.proc.terminate()  # the one running, even if it started just as we stopped
            self.runner.join(timeout=0.5)
        if self.proc.poll() is None:
            self.proc.kill()
        tps = [(t, float(m.group(1))) for t, line in self.lines if (m := re.search(r"tps: ([\d.]+)", line))]
        before = [v for t, v in tps if t <= t_start]
        after = [v for t, v in tps if t > t_end]
        return {"threads": self.threads, "restarts": self.restarts, "ran_through": bool(after) and max(after) > 0,
                "tps_before": round(median(before[-3:]) or 0, 1), "tps_after": round(median(after) or 0, 1)}


class Writers:
    """``n`` labutil.Writer threads (one row at a time each, through the service address) at ``rate`` rows/s
    together; acknowledged rows, gaps and rates over all of them."""

    def __init__(self, spec: dict, rate: float, n: int = 1):
        self.spec = spec
        self.ws = [labutil.Writer(spec, table=WRITER_TABLE, rate=rate / n, name=f"bench-writer-{i}") for i in range(n)]

    def start(self) -> Writers:
        for w in self.ws:
            w.start()
        return self

    def stop(self) -> None:
        for w in self.ws:
            w.stop.set()
        for w in self.ws:
            w.join(timeout=10)

    def times(self) -> list[float]:
        out = []
        for w in self.ws:
            with w.lock:
                out += w.commit_times
        return sorted(out)

    def rate(self, t0: float, t1: float) -> float:
        return sum(1 for t in self.times() if t0 <= t <= t1) / max(t1 - t0, 1e-3)

    def longest_gap(self, t0: float, t1: float) -> float:
        times = [t0] + [t for t in self.times() if t0 <= t <= t1] + [t1]
        return max(b - a for a, b in zip(times, times[1:]))

    def check(self) -> dict:
        """Every acknowledged row must be in the table."""
        acked = []
        for w in self.ws:
            with w.lock:
                acked += w.acked
        present = {r[0] for r in labutil.sql(self.spec, f"SELECT v FROM {WRITER_TABLE}")}
        lost = [v for v in acked if v not in present]
        return {"acked_rows": len(acked), "lost_rows": len(lost), "lost_sample": lost[:5],
                "errors": sum(w.errors for w in self.ws)}


# ----------------------------------------------------------------------------- one case

def one_case(ctx: dict, svc: str, method: str, rate, rep: int, ab_seconds: int = 0,
             schedule: list | None = None, loss: float = 0.0, writer: bool = False, variant: str = "") -> dict:
    spec = ctx["catalog"][svc]
    link: Link = ctx["link"]
    src = ensure_running(svc)
    dst = other(src)
    writers = fill = load = None
    extra: dict = {}
    if writer or variant:
        link.shape(None)  # fill and warm the buffer pool at full speed
    if variant == "big":
        extra["big_volume"] = mysql_grow_volume(spec, src, ctx["big_volume_mib"])
    if variant == "sysbench":
        load = Sysbench(spec, ctx["sysbench_threads"]).prepare()
    if writer:
        fill = mysql_prepare(spec, ctx["fill_rows"])
        writers = Writers(spec, ctx["writer_rate"], ctx["writers"]).start()
    if load:
        load.start()
        time.sleep(3.0)  # its steady rate, measured before the migration
    link.shape(rate if not schedule else schedule[0][1])
    link.set_loss(loss)
    if method != "podman":
        # A stopped leftover of the service on the target (after a rollback) is removed by migrate.yml.
        pass
    else:
        left = labutil.docker(dst, "inspect", svc, check=False)
        if left.returncode == 0:
            labutil.docker(dst, "rm", "-f", svc, check=False)
    poller = Poller(svc, spec).start()
    time.sleep(0.5)
    if writers:
        time.sleep(2.5)  # the writer's steady rate, measured before the migration
    ab = None
    if ab_seconds:
        ab = AbLoad(f"http://{spec['address']}:{spec['ports'][0]['host']}/big.html", ab_seconds)
        ab.start()
        time.sleep(3.0)
    cpu0 = {e: edge_cpu(e) for e in (src, dst)}
    bytes0 = link.edge_bytes()
    sampler = Sampler(src, dst)
    sampler.everything = method == "podman"
    sampler.start()
    sched = None
    if schedule:
        anchor = None if method == "podman" else f"/var/lib/edgemig-lab/{src}/dumps"
        # Offsets count from the freeze: the checkpoint's dump dir (<svc>-*) appearing in the
        # source's dump tmpfs; podman has none and counts from the start.
        sched = labutil.RateSchedule(lambda r: link.shape(r, change=True), schedule[1:],
                                     anchor_dir=anchor, prefix=f"{svc}-")
    t_start = time.monotonic()
    wall_start = time.time()
    if sched:
        sched.start()
    try:
        if method == "podman":
            res = Podman(sampler.tag).migrate(svc, spec, src, dst)
        else:
            res = via_playbook(svc, src, dst, method, ctx["report_dir"])
    except Exception as exc:  # noqa: BLE001 - a failed case is a result, not a crash
        res = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "wall_s": round(time.monotonic() - t_start, 3)}
    t_end = time.monotonic()
    if sched:
        sched.stop()
    sampler.stop_ev.set()
    sampler.join()
    sampler.tick()
    time.sleep(0.6)  # let the first answers after the switch-over arrive
    poller.stop()
    if writers:
        try:
            labutil.wait_answering(spec, timeout=60)
        except AssertionError as exc:
            log(f"mysql does not answer after the migration: {exc}")
        time.sleep(1.0)  # the writer reconnects and commits again
        t_after = time.monotonic()
        writers.stop()
        w = {"target_rate": ctx["writer_rate"], "threads": ctx["writers"],
             "rate_before_s": round(writers.rate(t_start - 2.5, t_start), 1),
             "rate_during_s": round(writers.rate(t_start, t_end), 1),
             "longest_gap_s": round(writers.longest_gap(t_start, t_after), 3), **fill}
        try:
            w.update(writers.check())
            w["fill_rows_after"] = int(labutil.sql(spec, f"SELECT COUNT(*) FROM {FILL_TABLE}")[0][0])
        except Exception as exc:  # noqa: BLE001 - recorded, the case fails below
            w["check_error"] = f"{type(exc).__name__}: {exc}"
    if load:
        extra["sysbench"] = load.finish(t_start, t_end)
    ab_res = ab.finish(512 * 1024) if ab else None
    cpu1 = {e: edge_cpu(e) for e in (src, dst)}
    bytes1 = link.edge_bytes()
    key = "e1e2" if src == "edge1" else "e2e1"
    back = "e2e1" if src == "edge1" else "e1e2"
    res["code"] = CODE_VERSION()
    res.update({"service": svc, "method": method, "rate_mbit": rate or 0, "repeat": rep, "loss": loss,
                "source": src, "target": dst, "started": wall_start, **extra})
    if variant:
        res["cell"] = f"{svc}-{variant}"
    res["client"] = poller.downtime(t_start, t_end)
    if writers:
        res["writer"] = w
        if w.get("lost_rows") or "check_error" in w:
            res["ok"] = False
            res["error"] = (f"{w['lost_rows']} acknowledged rows lost" if w.get("lost_rows")
                            else f"row check failed: {w['check_error']}")
    res["client_downtime_s"] = res["client"]["downtime_s"]
    if bytes0 and bytes1:
        res["link_bytes"] = bytes1.get(key, 0) - bytes0.get(key, 0)
        res["link_bytes_back"] = bytes1.get(back, 0) - bytes0.get(back, 0)
    res["cpu"] = {side: {k: round(cpu1[e].get(k, 0) - cpu0[e].get(k, 0), 3) for k in ("ssh_s", "docker_s")}
                  for side, e in (("source", src), ("target", dst))}
    res["proc"] = sampler.result()
    if res.get("ok"):
        xfer = res["stages"].get("copy_s") or res["stages"].get("transfer_s")
        res["xfer_s"] = xfer
        if rate and xfer:
            res["link_util"] = round(res["bytes_wire"] * 8 / xfer / (rate * 1e6), 3)
        res["goodput_mbit"] = round(res["bytes_wire"] * 8 / xfer / 1e6, 2) if xfer else None
    if ab_res:
        res["ab"] = ab_res
        res["ab_migration_window"] = [round(wall_start - ab.t_wall0, 2), round(wall_start - ab.t_wall0 + (t_end - t_start), 2)]
    if sched:
        res["schedule"] = [{"t": 0.0, "rate_mbit": schedule[0][1]}] + sched.applied
        res["schedule_anchor"] = {"freeze_after_s": sched.anchored_after_s} if sched.anchor_dir else "start"
    status = "ok" if res.get("ok") else f"FAILED: {res.get('error')}"
    log(f"{svc:6s} {method:14s} rate={rate or 'unshaped'!s:>8} rep={rep} loss={loss} "
        f"wall={res.get('wall_s')}s downtime(client)={res['client_downtime_s']}s "
        f"ratio={res.get('ratio')} {status}")
    if res.get("precopy", {}).get("rounds"):
        pc = res["precopy"]
        per_round = ", ".join("%.1f/%.1f MB %ss" % (r["bytes_raw"] / 1e6, r["bytes_wire"] / 1e6, r["seconds"])
                              for r in pc["rounds"])
        log(f"  precopy: {len(pc['rounds'])} rounds ({per_round}), {pc.get('reason')}; final {pc.get('final')}")
    if writers:
        log(f"  writer: {w}")
    for key in ("big_volume", "sysbench"):
        if key in extra:
            log(f"  {key}: {extra[key]}")
    if not res.get("ok"):
        ensure_running(svc)
    return res


# ----------------------------------------------------------------------------- plan

def plan(args) -> list[dict]:
    cases = []
    rates = [float(r) for r in args.rates.split(",")]

    def add(svc, method, rate, reps, **kw):
        for r in range(reps):
            cases.append(dict(svc=svc, method=method, rate=rate or 0, rep=r, **kw))

    for svc in [x for x in args.services.split(",") if x]:
        svc_rates = rates if svc == "apache" or not args.big_rates else [float(r) for r in args.big_rates.split(",")]
        for rate in svc_rates:
            for method in args.methods.split(","):
                reps = args.repeats if svc == "apache" else args.big_repeats
                add(svc, method, rate, reps, group="fig8")
        if args.unshaped and svc == "apache":
            for method in args.methods.split(","):
                add(svc, method, 0, args.repeats, group="fig8")
    if args.target_repeats > 1:  # the downtime targets: more repeats of apache with the default
        for rate in (0, 10.0):
            add("apache", "model", rate, args.target_repeats - 1, group="targets")
    if args.lz4_levels:
        for svc in args.lz4_services.split(","):
            for rate in [float(r) for r in args.lz4_rates.split(",")]:
                for lv in range(1, 10):
                    add(svc, f"lz4:{lv}", rate, 1, group="fig9")
    if args.serial_rates:
        for svc in args.serial_services.split(","):
            for rate in [float(r) for r in args.serial_rates.split(",")]:
                for m in (f"serial:{args.serial_policy}", f"pipelined:{args.serial_policy}"):
                    add(svc, m, rate, 1, group="fig5")
    if args.ab:
        for m in args.ab_methods.split(","):
            add("apache", m, float(args.ab_rate), 1, group="ab", ab=True)
    if args.schedule:
        steps = []
        for part in args.schedule.split(","):
            t, _unused, r = part.partition(":")
            steps.append((float(t), float(r)))
        for m in args.schedule_methods.split(","):
            add(args.schedule_service, m, steps[0][1], 1, group="schedule", schedule=steps)
    if args.cells:  # pre-copy vs stop-and-copy (issue 11): methods interleaved per repeat
        for cell in args.cells.split(","):
            name, _unused, rate = cell.partition(":")
            svc, _unused, variant = name.partition("-")
            if variant and (svc, variant) not in CELL_VARIANTS:
                raise SystemExit(f"--cells: unknown cell {name!r} (variants: "
                                 f"{', '.join(f'{s}-{v}' for s, v in CELL_VARIANTS)})")
            reps = args.cell_apache_repeats if svc == "apache" and args.cell_apache_repeats else args.cell_repeats
            for r in range(reps):
                for m in args.cell_methods.split(","):
                    cases.append(dict(svc=svc, method=m, rate=float(rate or 0), rep=args.first_repeat + r, group="precopy",
                                      writer=args.writer and svc == "mysql", variant=variant))
    if args.loss:
        for svc in args.loss_services.split(","):
            for m in args.loss_methods.split(","):
                add(svc, m, float(args.loss_rate), 1, group="loss", loss=args.loss)
    return cases


# Cells beyond the plain service (``--cells mysql-big:20``): what each adds to the MariaDB cell.
CELL_VARIANTS = {
    ("mysql", "big"): "data volume grown to --big-volume-mib (rows added to bench_bulk) before the migration",
    ("mysql", "sysbench"): "sysbench oltp_read_write (--sysbench-threads) running through the migration",
}


def expected_wall(results: list[dict], svc: str, method: str, rate) -> float:
    same = [r["wall_s"] for r in results if r.get("ok") and r["service"] == svc and r["method"] == method
            and r["rate_mbit"] == rate]
    return median(same) or 15.0


def stop_at(text: str) -> float:
    """HH:MM UTC today as epoch seconds."""
    hh, _unused, mm = text.partition(":")
    now = time.gmtime()
    return float(time.mktime((now.tm_year, now.tm_mon, now.tm_mday, int(hh), int(mm), 0, 0, 0, 0))
                 - time.mktime(time.gmtime(0)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke: apache, unshaped + 10 Mbit/s, model vs uncompressed, 1 repeat")
    ap.add_argument("--services", default="apache,mysql,tomcat")
    ap.add_argument("--methods", default="uncompressed,podman,paper,model")
    ap.add_argument("--rates", default="5,10,20,50,100,1000", help="Mbit/s (tbf), apache")
    ap.add_argument("--big-rates", default="", help="rates for mysql/tomcat (default: --rates)")
    ap.add_argument("--unshaped", action="store_true", help="also apache without any qdisc")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big-repeats", type=int, default=None, help="repeats for mysql/tomcat (default: --repeats)")
    ap.add_argument("--target-repeats", type=int, default=0,
                    help="total repeats of apache/model unshaped and at 10 Mbit/s (downtime targets)")
    ap.add_argument("--lz4-levels", action="store_true", help="fixed lz4 1..9 (Fig. 9)")
    ap.add_argument("--lz4-services", default="mysql")
    ap.add_argument("--lz4-rates", default="20,100,1000")
    ap.add_argument("--serial-rates", default="", help="serial vs pipelined at these rates (Fig. 5)")
    ap.add_argument("--serial-services", default="mysql")
    ap.add_argument("--serial-policy", default="lz4:1", help="model | paper | <codec>:<level>")
    ap.add_argument("--ab", action="store_true", help="ab -c 100 load during an apache migration (Fig. 6/7)")
    ap.add_argument("--ab-rate", default="10")
    ap.add_argument("--ab-seconds", type=int, default=0, help="ab run length (default: from the case's wall time)")
    ap.add_argument("--ab-methods", default="model,uncompressed")
    ap.add_argument("--schedule", default="", help="rate schedule 't:rate,...' (s:Mbit/s), e.g. 0:100,4:10,10:50")
    ap.add_argument("--schedule-service", default="mysql")
    ap.add_argument("--schedule-methods", default="model,paper")
    ap.add_argument("--loss", type=float, default=0.0, help="random loss fraction (nft), e.g. 0.01")
    ap.add_argument("--loss-rate", default="100")
    ap.add_argument("--loss-services", default="apache,mysql")
    ap.add_argument("--loss-methods", default="model,uncompressed")
    ap.add_argument("--cells", default="",
                    help="pre-copy vs stop-and-copy cells service:rate (0 = unshaped), e.g. mysql:10,tomcat:10,apache:0")
    ap.add_argument("--cell-methods", default="precopy,model")
    ap.add_argument("--cell-repeats", type=int, default=1)
    ap.add_argument("--cell-apache-repeats", type=int, default=0, help="repeats of apache cells (default --cell-repeats)")
    ap.add_argument("--first-repeat", type=int, default=0, help="number the cells' repeats from here (with --merge)")
    ap.add_argument("--writer", action="store_true",
                    help="mysql cells: fill to --fill-rows once, a writer commits during every migration, rows checked")
    ap.add_argument("--writer-rate", type=float, default=250.0, help="rows/s of the writer(s) together")
    ap.add_argument("--writers", type=int, default=1, help="writer threads (one connection, one row at a time each)")
    ap.add_argument("--fill-rows", type=int, default=200000)
    ap.add_argument("--big-volume-mib", type=int, default=1024,
                    help="mysql-big cells: add rows until MariaDB's data volume holds this much (MiB)")
    ap.add_argument("--sysbench-threads", type=int, default=6, help="mysql-sysbench cells: oltp_read_write threads")
    ap.add_argument("--stop-at", type=stop_at, default=None,
                    help="HH:MM (UTC): leave out the cases that would end after it (listed in the JSON as skipped)")
    ap.add_argument("--json", default=None, help="raw results (default docs/benchmarks.json; quick: reports/bench-quick.json)")
    ap.add_argument("--doc", default=None, help="report (default docs/benchmarks.md; quick: none)")
    ap.add_argument("--merge", default=None,
                    help="add the results of an earlier run (JSON) before this run's, e.g. to complete a run")
    ap.add_argument("--from-json", default=None, help="only (re)write the report and plots from a results file")
    args = ap.parse_args(argv)
    if args.big_repeats is None:
        args.big_repeats = args.repeats
    if args.quick:
        args.services, args.methods, args.rates, args.repeats, args.big_repeats = "apache", "uncompressed,model", "10", 1, 1
        args.target_repeats = 0
        args.unshaped, args.lz4_levels, args.serial_rates, args.ab, args.schedule, args.loss = True, False, "", False, "", 0.0
        # one pre-copy cell: apache unshaped, warm pre-copy vs stop-and-copy
        args.cells, args.cell_methods, args.cell_repeats, args.cell_apache_repeats = "apache:0", "precopy,model", 1, 0
        args.writer = False
    return args


def main() -> int:
    args = parse_args()
    only_precopy = bool(args.cells) and all(c["group"] == "precopy" for c in plan(args))
    json_path = args.json or os.path.join(ROOT, "reports/bench-quick.json" if args.quick else
                                          "docs/benchmarks-precopy.json" if only_precopy else "docs/benchmarks.json")
    doc_path = args.doc or (None if args.quick else os.path.join(ROOT, "docs", "benchmarks.md"))
    command = "make bench" + (" QUICK=1" if args.quick else "") + (
        f" BENCH_ARGS=\"{' '.join(shlex.quote(a) for a in sys.argv[1:] if a != '--quick')}\"" if len(sys.argv) > 1 and sys.argv[1:] != ["--quick"] else "")

    if only_precopy:  # make bench-precopy: the exact command line
        command = "python3 bench/migration_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.from_json:
        with open(args.from_json) as fh:
            data = json.load(fh)
        if doc_path:
            import bench_report
            bench_report.write_any(data, doc_path)
        return 0

    lock_fh = None
    if os.environ.get("EDGEMIG_LAB_LOCK_HELD") != "1":
        lock_fh = open(LAB_LOCK, "w")
        log(f"waiting for the lab lock {LAB_LOCK}")
        fcntl.flock(lock_fh, fcntl.LOCK_EX)
    assert labutil.lab_is_up(), "the lab is not up: make provision"
    catalog = labutil.catalog()
    link = Link()
    report_dir = tempfile.mkdtemp(prefix="edgemig-bench-")
    ctx = {"catalog": catalog, "link": link, "report_dir": report_dir, "fill_rows": args.fill_rows,
           "writer_rate": args.writer_rate, "writers": args.writers, "big_volume_mib": args.big_volume_mib,
           "sysbench_threads": args.sysbench_threads}
    before = {svc: labutil.running_on(svc) for svc in catalog}
    results: list[dict] = []
    cases = plan(args)
    log(f"{len(cases)} migrations planned")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    t_run = time.monotonic()
    skipped: list[dict] = []
    try:
        link.cleanup()
        link.counters_up()
        for i, c in enumerate(cases):
            if args.stop_at and time.time() + 1.5 * expected_wall(results, c["svc"], c["method"], c["rate"]) > args.stop_at:
                skipped = [dict(x) for x in cases[i:]]
                log(f"--stop-at: {len(skipped)} cases left out, they would end after the deadline")
                break
            ab_s = 0
            if c.get("ab"):
                ab_s = args.ab_seconds or int(3 + expected_wall(results, "apache", c["method"], c["rate"]) * 1.3 + 6)
            log(f"case {i + 1}/{len(cases)} ({c['group']})")
            res = one_case(ctx, c["svc"], c["method"], c["rate"], c["rep"], ab_seconds=ab_s,
                           schedule=c.get("schedule"), loss=c.get("loss", 0.0), writer=c.get("writer", False),
                           variant=c.get("variant", ""))
            res["group"] = c["group"]
            results.append(res)
            with open(json_path + ".partial", "w") as fh:  # survives an interrupted run
                json.dump({"command": command, "argv": sys.argv[1:], "results": results}, fh)
    finally:
        link.cleanup()
        shutil.rmtree(report_dir, ignore_errors=True)
        if any(c.get("variant") == "big" for c in cases):  # give the volume back its size
            mysql_drop_bulk(catalog["mysql"])
        for svc, where in before.items():
            if not where:   # the bench deployed it: take it away again
                for edge in EDGES:
                    labutil.docker(edge, "rm", "-f", svc, check=False)
        if lock_fh:
            lock_fh.close()
    elapsed = time.monotonic() - t_run
    if args.merge:
        with open(args.merge) as fh:
            prev = json.load(fh)
        results = prev["results"] + results
        skipped = prev.get("skipped", []) + skipped
        elapsed += prev.get("elapsed_s", 0)
        command = prev["command"] + " ; then " + command
    data = {"command": command, "argv": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "elapsed_s": round(elapsed, 1), "host": {"cpus": os.cpu_count(), "kernel": os.uname().release},
            "quick": args.quick, "results": results, "skipped": skipped}
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    with open(json_path, "w") as fh:
        json.dump(data, fh, indent=1)
    if os.path.exists(json_path + ".partial"):
        os.unlink(json_path + ".partial")
    log(f"results: {json_path} ({len(results)} migrations, {elapsed:.0f} s)")
    if doc_path:
        sys.path.insert(0, HERE)
        import bench_report
        bench_report.write_any(data, doc_path)
        log(f"report: {doc_path}")
    failed = [r for r in results if not r.get("ok")]
    for r in failed:
        log(f"FAILED: {r['service']} {r['method']} rate={r['rate_mbit']}: {r.get('error')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
