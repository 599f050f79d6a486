# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stream benchmark of issue 3: real CRIU dumps, edge1 -> edge2, tc-shaped link.

    flock /run/edgemig-lab.lock python3 bench/stream_bench.py            # full (< 30 min)
    flock /run/edgemig-lab.lock python3 bench/stream_bench.py --quick    # smoke (< 3 min)

Dumps come from bench/capture_dumps.py (``.cache/dumps/<svc>/{checkpoint,
layer,volume/*}``; captured first if missing). Every run goes through the
real path: ``ssh_stream.SshStream`` runs in a driver process started with
``nsenter --net=/var/run/netns/edge1`` (so the TCP connection leaves edge1's
eth0 and crosses the bridge), to edge2's sshd, into a scratch directory
under ``/var/lib/edgemig-lab/edge2/dumps/bench-*`` (cleared by the receiver
on every run, removed at the end).

Shaping: tc tbf on the host-side veths, egress of ``emig-e2h`` (the data
direction edge1 -> edge2) and of ``emig-e1h`` (the ACK direction), same rate.
``burst`` = max(128 KiB, 4 ms of the rate) (must hold a 64 KiB GSO packet),
``limit`` = max(256 KiB, 50 ms of the rate). The schedule changes the rate
with ``tc qdisc change`` from a timer started when the sender starts.

Sizing (how the whole run stays under 30 minutes): at 5 Mbit/s each dump is
cut to its first 16 MiB of stream (files in stream order, the last one
truncated on a page boundary), at 20 Mbit/s to 32 MiB; at 100 and 1000
Mbit/s and in the schedule the whole dump is sent. apache (4.4 MB) is always
whole. Runs under REPEAT_BELOW_S (4 s) are noisy on a shared 2-core machine:
they are repeated (--repeats, default 3), interleaved with the other settings,
and the median run is reported.

Timing: ``seconds`` is the sender's wall time from its first frame to the
receiver's final confirmation (everything verified and written); the SSH
handshake and receiver bootstrap (``connect_s``, ~0.3 s) are not included
since they are paid before the service is frozen in a migration.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "lab"))

import labutil  # noqa: E402  (the tc rate schedule)

DUMPS = os.path.join(ROOT, ".cache", "dumps")
SLICES = os.path.join(ROOT, ".cache", "dumps", "slices")
SYNTH = "/dev/shm/edgemig-bench-synth"
LAB = "/var/lib/edgemig-lab"
KEY = f"{LAB}/ssh/id_ed25519"
KNOWN = f"{LAB}/ssh/known_hosts"
DEST_BASE = f"{LAB}/edge2/dumps"
# The bench installs receivers of its own (the lab key is not a migration key, so
# it runs the launcher as a plain command): one plain, one under the RXMEM wrapper.
RX_DIR = f"{DEST_BASE}/bench-receiver"
RX_MEM_DIR = f"{DEST_BASE}/bench-receiver-mem"
TARGET = "10.213.0.12"
IFACES = ("emig-e2h", "emig-e1h")
MIB = 1 << 20

FIXED = (["fixed:none:0"] + [f"fixed:lz4:{i}" for i in range(1, 10)]
         + [f"fixed:zstd:{i}" for i in (-1, 1, 3, 6)])
SERIAL_AT = "fixed:lz4:4"  # pipelined vs serial at the paper's default level
SLICE_MIB = {5: 16, 20: 32}
RATES = [5, 20, 100, 1000]
# (seconds after the sender starts, Mbit/s). Sized so compressed runs of the
# whole mysql/tomcat dumps (1-3 s) cross both changes: a slow start where the
# densest codec wins, then a fast phase where the CPU is the limit.
SCHEDULE = [(0.0, 10), (1.0, 1000), (2.0, 20)]
# Pause between open() (handshake, receiver start, link probe) and the stream.
IDLE_BEFORE_STREAM_S = 0.5
# Runs shorter than this are repeated (REPEATS in all) and reported as medians.
REPEATS = 3
REPEAT_BELOW_S = 4.0


def _collection_path() -> None:
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from collection_path import ensure_collection_path

    ensure_collection_path()


# ------------------------------------------------------------------ driver
def driver() -> int:
    """Runs inside edge1's network namespace: one JSON job per stdin line."""
    _collection_path()
    from ansible_collections.edgemig.migration.plugins.module_utils.sender import ssh_stream

    out = sys.stdout
    for line in sys.stdin:
        job = json.loads(line)
        try:
            # Open (SSH handshake, receiver start, link probe) first, as a
            # migration does before the freeze; "start" marks the first frame
            # of the stream (schedule timers count from it).
            with ssh_stream.SshStream(job["ticket"], host=TARGET, key_file=KEY, known_hosts=KNOWN,
                                      receiver_dir=job.get("receiver_dir", RX_DIR),
                                      link_probe=job.get("link_probe", True)) as conn:
                # A migration freezes and dumps between open() and stream()
                # (0.3-1.2 s): let tbf's token bucket refill as it would
                # there, so runs with and without the probe (which drains
                # it) start alike.
                time.sleep(IDLE_BEFORE_STREAM_S)
                print(json.dumps({"event": "start", "id": job["id"]}), file=out, flush=True)
                res = conn.stream([tuple(r) for r in job["src"]], policy=job["policy"],
                                  pipelined=job.get("pipelined", True), dedup=job.get("dedup", True),
                                  timeout=600)
            res["sender_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            msg = {"event": "result", "id": job["id"], "result": res}
        except Exception as exc:  # reported, the benchmark goes on
            msg = {"event": "result", "id": job["id"], "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(msg), file=out, flush=True)
    return 0


RXMEM = r'''#!%s
# Runs the receiver as a child and records its peak RSS (ru_maxrss, KiB).
import resource, subprocess, sys
rc = subprocess.call([sys.executable] + sys.argv[1:])
with open(%r, "w") as fh:
    fh.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
'''


class Driver:
    def __init__(self, env: dict | None = None):
        self.p = subprocess.Popen(
            ["nsenter", "--net=/var/run/netns/edge1", sys.executable, os.path.abspath(__file__), "--driver"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env=dict(os.environ, **(env or {})))
        self.n = 0

    def run(self, job: dict, on_start=None) -> dict:
        self.n += 1
        # The target's side of the stream is a ticket, as the prepare stage writes it on a
        # real target (edge2's file system is this one in the lab).
        from ansible_collections.edgemig.migration.plugins.module_utils.receiver import ticket
        tid = ticket.issue(DEST_BASE, roots=job["dest"], clear=list(job["dest"]), create=list(job["dest"]))
        job = dict(job, id=self.n, ticket=tid)
        self.p.stdin.write(json.dumps(job) + "\n")
        self.p.stdin.flush()
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit("benchmark driver died")
            msg = json.loads(line)
            if msg["event"] == "start" and on_start:
                on_start()
            elif msg["event"] == "result":
                return msg

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


# ------------------------------------------------------------------ shaping
def tc(*args, check=True):
    r = subprocess.run(["tc", *args], capture_output=True, text=True, check=False)
    if check and r.returncode:
        raise SystemExit(f"tc {' '.join(args)}: {r.stderr.strip()}")


def tbf_args(mbit: float) -> list[str]:
    rate = mbit * 1e6 / 8
    burst = max(128 * 1024, int(rate * 0.004))
    limit = max(256 * 1024, int(rate * 0.05))
    return ["tbf", "rate", f"{mbit}mbit", "burst", str(burst), "limit", str(limit)]


def shape(mbit: float | None) -> None:
    for dev in IFACES:
        if mbit is None:
            tc("qdisc", "del", "dev", dev, "root", check=False)
        else:
            tc("qdisc", "replace", "dev", dev, "root", *tbf_args(mbit))


def change(mbit: float) -> None:
    for dev in IFACES:
        tc("qdisc", "change", "dev", dev, "root", *tbf_args(mbit))


# ------------------------------------------------------------------ data
def roots_of(base: str) -> list[tuple[str, str]]:
    roots = []
    for part in ("checkpoint", "layer"):
        if os.path.isdir(os.path.join(base, part)):
            roots.append((part, os.path.join(base, part)))
    vol = os.path.join(base, "volume")
    if os.path.isdir(vol):
        for name in sorted(os.listdir(vol)):
            roots.append((f"volume/{name}", os.path.join(vol, name)))
    return roots


def tree_bytes(roots) -> int:
    from ansible_collections.edgemig.migration.plugins.module_utils.sender.tree_reader import walk_roots
    return sum(st.st_size for _unused, _unused, full, st in walk_roots(roots) if os.path.isfile(full)
               and not os.path.islink(full))


def make_slice(svc: str, mib: int) -> str:
    """First ``mib`` MiB of the dump's stream, as a tree of the same shape."""
    from ansible_collections.edgemig.migration.plugins.module_utils.sender.tree_reader import walk_roots
    out = os.path.join(SLICES, f"{svc}-{mib}m")
    if os.path.exists(os.path.join(out, "DONE")):
        return out
    shutil.rmtree(out, ignore_errors=True)
    base = os.path.join(DUMPS, svc)
    left = mib * MIB
    for name, top in roots_of(base):
        dst_top = os.path.join(out, name)
        os.makedirs(dst_top, exist_ok=True)
        for _unused, rel, full, st in walk_roots([(name, top)]):
            if rel == ".":
                continue
            dst = os.path.join(dst_top, rel)
            if os.path.islink(full):
                os.symlink(os.readlink(full), dst)
            elif os.path.isdir(full):
                os.makedirs(dst, exist_ok=True)
            elif os.path.isfile(full):
                n = min(st.st_size, left)
                if os.path.basename(full).startswith("pages-"):
                    n -= n % 4096
                with open(full, "rb") as fi, open(dst, "wb") as fo:
                    fo.write(fi.read(n))
                left -= n
            # fifos / sockets / devices in an upper dir: not needed for a slice
    open(os.path.join(out, "DONE"), "w").close()
    return out


def make_synth(gib: float = 1.0) -> str:
    """A page-like 1 GiB dump in tmpfs: 15 % zero pages, 20 % duplicates,
    the rest real page content of the captured dumps, tiled."""
    path = os.path.join(SYNTH, "checkpoint", "pages-1.img")
    size = int(gib * (1 << 30))
    if os.path.exists(path) and os.path.getsize(path) == size:
        return SYNTH
    os.makedirs(os.path.dirname(path), exist_ok=True)
    src = []
    for svc in ("tomcat", "mysql", "apache"):
        d = os.path.join(DUMPS, svc, "checkpoint")
        if os.path.isdir(d):
            for f in sorted(os.listdir(d)):
                if f.startswith("pages-"):
                    with open(os.path.join(d, f), "rb") as fh:
                        src.append(fh.read())
    real = b"".join(src)
    real = real[:len(real) - len(real) % 4096] or os.urandom(1 << 20)
    npages = size // 4096
    import random
    rnd = random.Random(42)
    zero = bytes(4096)
    rp = len(real) // 4096
    with open(path, "wb") as fh:
        cursor = 0
        buf = []
        for i in range(npages):
            x = rnd.random()
            if x < 0.15:
                buf.append(zero)
            elif x < 0.35:
                k = rnd.randrange(rp)
                buf.append(real[k * 4096:(k + 1) * 4096])
            else:
                # a real page with a per-position twist so tiling is not one big duplicate
                k = cursor % rp
                cursor += 1
                page = bytearray(real[k * 4096:(k + 1) * 4096])
                page[0:8] = i.to_bytes(8, "little")
                buf.append(bytes(page))
            if len(buf) == 4096:
                fh.write(b"".join(buf))
                buf = []
        fh.write(b"".join(buf))
    return SYNTH


# ------------------------------------------------------------------ runs
def dest_for(roots, tag: str) -> dict:
    base = os.path.join(DEST_BASE, f"bench-{tag}")
    return {name: os.path.join(base, name.replace("/", "_")) for name, _unused in roots}


def settings(quick: bool) -> list[dict]:
    if quick:
        fixed = ["fixed:none:0", "fixed:lz4:1", "fixed:lz4:4", "fixed:zstd:1", "fixed:zstd:3"]
    else:
        fixed = FIXED
    # The baseline is truly uncompressed: no codec and no page dedup (dedup
    # alone halves apache's bytes; its effect is the "model nodedup" row).
    out = [{"label": p, "policy": p, "dedup": p != "fixed:none:0"} for p in fixed]
    out += [{"label": "paper", "policy": "paper"}, {"label": "model", "policy": "model"}]
    out.append({"label": f"{SERIAL_AT} serial", "policy": SERIAL_AT, "pipelined": False})
    out.append({"label": "model nodedup", "policy": "model", "dedup": False})
    # The link probe's effect: the model starting from its initial guess.
    out.append({"label": "model noprobe", "policy": "model", "link_probe": False})
    return out


def row_of(label: str, res: dict, rate_mbit: float | None) -> dict:
    if "error" in res:
        return {"setting": label, "error": res["error"]}
    r = res["result"]
    secs = r["seconds"]
    util = (r["bytes_wire"] * 8 / (rate_mbit * 1e6 * secs)) if rate_mbit else None
    row = {"setting": label, "seconds": secs, "bytes_raw": r["bytes_raw"], "bytes_wire": r["bytes_wire"],
           "ratio": r["ratio"], "util": round(util, 4) if util is not None else None,
           "raw_MBps": round(r["bytes_raw"] / secs / 1e6, 2), "connect_s": r.get("connect_s"),
           "first_byte_s": r.get("first_byte_s"), "link_probe": r.get("link_probe"),
           "cpu_share": round(r["compress_cpu_s"] / (r["workers"] * secs), 3),
           "codecs": r.get("codecs"), "zero_pages": r.get("zero_pages"), "dup_pages": r.get("dup_pages"),
           "controller": {k: v for k, v in (r.get("controller") or {}).items()
                          if k in ("policy", "codec", "level", "switches", "net_rate_Bps", "seeded_Bps",
                                   "sample_overhead")}}
    if label in ("model", "paper") or rate_mbit is None:
        row["timeline"] = [{k: p.get(k) for k in ("t", "codec", "level", "raw_Bps", "wire_Bps", "rtt_ms",
                                                  "goodput_Bps")} for p in r.get("timeline", [])]
    return row


def run_one(drv: Driver, roots, dest, s: dict, rate, schedule=None) -> dict:
    job = {"src": roots, "dest": dest, "policy": s["policy"],
           "pipelined": s.get("pipelined", True), "dedup": s.get("dedup", True),
           "link_probe": s.get("link_probe", True)}
    sched = None
    if schedule:
        shape(schedule[0][1])
        # Offsets count from the stream's first frame (the driver's "start" event).
        sched = labutil.RateSchedule(change, schedule[1:])
    res = drv.run(job, on_start=sched.start if sched else None)
    if sched:
        sched.stop()
    mean_rate = None
    if schedule and "result" in res:
        secs = res["result"]["seconds"]
        # time-weighted mean link rate over the run, for utilisation
        bits, prev_t, prev_r = 0.0, 0.0, schedule[0][1]
        for at, mbit in schedule[1:] + [(float("inf"), None)]:
            end = min(at, secs)
            if end > prev_t:
                bits += (end - prev_t) * prev_r
            prev_t, prev_r = at, mbit
            if at >= secs:
                break
        mean_rate = bits / secs
    return row_of(s["label"], res, mean_rate if schedule else rate)


def run_matrix(drv: Driver, roots, tag: str, rate, sets, schedule=None,
               repeats: int = 1, repeat_below_s: float = REPEAT_BELOW_S) -> list[dict]:
    """Every setting once, then (interleaved, so slow drifts of the machine's
    load hit all settings alike) up to ``repeats - 1`` more passes over the
    settings whose first run took under ``repeat_below_s``; each row is the
    run with the median time, ``runs_s`` lists them all."""
    dest = dest_for(roots, tag)
    runs: list[list[dict]] = []
    for s in sets:
        row = run_one(drv, roots, dest, s, rate, schedule)
        runs.append([row])
        print(fmt_row(row), flush=True)
    for _unused in range(repeats - 1):
        for i, s in enumerate(sets):
            first = runs[i][0]
            if "error" in first or first["seconds"] >= repeat_below_s:
                continue
            row = run_one(drv, roots, dest, s, rate, schedule)
            runs[i].append(row)
            print(fmt_row(row), flush=True)
    rows = []
    for rs in runs:
        ok = sorted((r for r in rs if "error" not in r), key=lambda r: r["seconds"])
        if not ok:
            rows.append(rs[0])
            continue
        row = dict(ok[(len(ok) - 1) // 2])  # the median run (lower median for even counts)
        row["runs_s"] = [r["seconds"] for r in rs if "error" not in r]
        errors = [r["error"] for r in rs if "error" in r]
        if errors:
            row["errors"] = errors
        rows.append(row)
    return rows


def fmt_row(r: dict, base: float | None = None) -> str:
    if "error" in r:
        return f"  {r['setting']:<22} ERROR {r['error'][:200]}"
    x = f"{r['seconds'] / base:6.3f}" if base else "     -"
    u = f"{r['util'] * 100:5.1f}%" if r.get("util") is not None else "    -"
    ctl = r.get("controller") or {}
    extra = ""
    if ctl.get("policy") in ("model", "paper"):
        extra = f" end={ctl.get('codec')}:{ctl.get('level')}"
        if ctl.get("switches") is not None:
            extra += f" sw={ctl['switches']}"
    return (f"  {r['setting']:<22} {r['seconds']:8.2f}s {x}x {r['bytes_wire'] / 1e6:9.2f}MB "
            f"{r['ratio']:6.3f} {u} {r['raw_MBps']:7.1f}MB/s cpu={r['cpu_share']:.2f}{extra}")


def evaluate(block: dict) -> dict:
    """Targets of issue 3 for one (dump, rate) block."""
    rows = {r["setting"]: r for r in block["rows"] if "error" not in r}
    none = rows.get("fixed:none:0")
    fixed = {k: v for k, v in rows.items() if k.startswith("fixed:") and not k.endswith("serial")}
    flags = {}
    if not fixed or none is None:
        return flags
    best_k = min(fixed, key=lambda k: fixed[k]["seconds"])
    best = fixed[best_k]["seconds"]
    base = none["seconds"]
    flags["oracle"] = f"{best_k} {best:.2f}s"
    for pol in ("model", "paper"):
        if pol in rows:
            m = rows[pol]["seconds"]
            flags[f"{pol}_vs_oracle"] = round(m / best - 1, 4)
            flags[f"{pol}_x_none"] = round(m / base, 4)
    if "model" in rows:
        m = rows["model"]["seconds"]
        if block.get("schedule"):
            flags["model_beats_every_fixed"] = m < best
        else:
            flags["model_within_5pct"] = m <= best * 1.05
            rate = block["rate_mbit"]
            if block["dump"] in ("mysql", "tomcat") and rate <= 100:
                flags["model_below_0.25x"] = m / base < 0.25
            if rate >= 1000:
                flags["model_below_0.40x"] = m / base < 0.40
            flags["model_not_slower_than_none"] = m <= base
    ser = rows.get(f"{SERIAL_AT} serial")
    pip = rows.get(SERIAL_AT)
    if ser and pip:
        flags["pipeline_saving"] = round(1 - pip["seconds"] / ser["seconds"], 4)
    if "model nodedup" in rows and "model" in rows:
        flags["dedup_saving"] = round(1 - rows["model"]["seconds"] / rows["model nodedup"]["seconds"], 4)
        flags["dedup_wire_saving"] = round(1 - rows["model"]["bytes_wire"] / rows["model nodedup"]["bytes_wire"], 4)
    # link busy when the network is the bottleneck: runs of >= 2 s at <= 100
    # Mbit/s whose compression used under half the workers' time
    if not block.get("schedule") and block["rate_mbit"] <= 100:
        nb = [r for r in rows.values() if r["seconds"] >= 2.0 and r["cpu_share"] < 0.5 and r.get("util")]
        if nb:
            flags["netbound_util_min"] = round(min(r["util"] for r in nb), 4)
            flags["netbound_util_median"] = round(sorted(r["util"] for r in nb)[len(nb) // 2], 4)
            flags["netbound_util_over_90"] = sum(1 for r in nb if r["util"] > 0.9) / len(nb)
    return flags


def print_block(block: dict) -> None:
    rows = block["rows"]
    none = next((r for r in rows if r["setting"] == "fixed:none:0" and "error" not in r), None)
    base = none["seconds"] if none else None
    print(f"\n== {block['title']}")
    print(f"  {'setting':<22} {'time':>9} {'x-none':>7} {'wire':>11} {'ratio':>6} {'link':>6} {'raw rate':>11}")
    for r in rows:
        print(fmt_row(r, base))
    for k, v in block["flags"].items():
        print(f"  -> {k}: {v}")


def memory_test(gib: float) -> dict:
    synth = make_synth(gib)
    roots = roots_of(synth)
    marker = os.path.join(SYNTH, "rx-maxrss")
    wrapper = os.path.join(SYNTH, "rxmem.py")
    with open(wrapper, "w") as fh:
        fh.write(RXMEM % (sys.executable, marker))
    os.chmod(wrapper, 0o755)
    from ansible_collections.edgemig.migration.plugins.module_utils.receiver import receiver_install
    receiver_install.install_receiver(RX_MEM_DIR, wrapper, [DEST_BASE], DEST_BASE)
    out = {"dump_bytes": tree_bytes(roots), "runs": []}
    # glibc keeps freed 1 MiB chunk buffers in per-thread arenas once its
    # dynamic mmap threshold has grown; MALLOC_MMAP_THRESHOLD_ pins it so
    # chunk buffers go back to the OS (measured both ways).
    for policy, env in (("model", None), ("fixed:none:0", None),
                        ("model", {"MALLOC_MMAP_THRESHOLD_": "131072"}),
                        ("fixed:none:0", {"MALLOC_MMAP_THRESHOLD_": "131072"})):
        if os.path.exists(marker):
            os.unlink(marker)
        drv = Driver(env)  # a fresh sender process: its ru_maxrss is this run's
        try:
            res = drv.run({"src": roots, "dest": dest_for(roots, "mem"), "policy": policy,
                           "receiver_dir": RX_MEM_DIR})
        finally:
            drv.close()
        rx = int(open(marker).read()) if os.path.exists(marker) else None
        if "error" in res:
            out["runs"].append({"policy": policy, "env": env, "error": res["error"]})
        else:
            r = res["result"]
            out["runs"].append({"policy": policy, "env": env, "seconds": r["seconds"], "ratio": r["ratio"],
                                "sender_peak_MiB": round(r["sender_maxrss_kib"] / 1024, 1),
                                "receiver_peak_MiB": round(rx / 1024, 1) if rx else None})
        print(f"  memory {policy}: {out['runs'][-1]}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="one dump, two rates, few settings (< 3 min)")
    ap.add_argument("--dumps", default="apache,mysql,tomcat")
    ap.add_argument("--rates", default=",".join(map(str, RATES)))
    ap.add_argument("--no-schedule", action="store_true")
    ap.add_argument("--repeats", type=int, default=REPEATS,
                    help=f"runs per setting for settings whose first run took < {REPEAT_BELOW_S:g} s (median reported)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-gib", type=float, default=1.0)
    ap.add_argument("--memory-only", action="store_true",
                    help="only the memory test; merged into the existing JSON/markdown")
    ap.add_argument("--json", default=os.path.join(ROOT, "docs", "stream-benchmark.json"))
    ap.add_argument("--md", default=os.path.join(ROOT, "docs", "stream-benchmark.md"))
    args = ap.parse_args()
    if args.driver:
        return driver()
    _collection_path()
    from ansible_collections.edgemig.migration.plugins.module_utils.receiver import receiver_install
    receiver_install.install_receiver(RX_DIR, sys.executable, [DEST_BASE], DEST_BASE)
    if args.quick:
        args.dumps, args.rates = "tomcat", "20,1000"
        args.no_schedule = args.no_memory = True
        args.repeats = 1
        if args.json.endswith("stream-benchmark.json"):
            args.json = os.path.join(ROOT, ".cache", "stream-benchmark-quick.json")
            args.md = os.path.join(ROOT, ".cache", "stream-benchmark-quick.md")
    dumps = [d for d in args.dumps.split(",") if d]
    rates = [float(r) if "." in r else int(r) for r in args.rates.split(",") if r]
    missing = [d for d in dumps if not os.path.exists(os.path.join(DUMPS, d, "DONE"))]
    if missing:
        subprocess.run([sys.executable, os.path.join(HERE, "capture_dumps.py"), *missing], check=True)
    if args.memory_only:
        with open(args.json) as fh:
            report = json.load(fh)
        try:
            report["memory"] = memory_test(args.memory_gib)
        finally:
            shutil.rmtree(os.path.join(DEST_BASE, "bench-mem"), ignore_errors=True)
        report["memory"]["command"] = "python3 bench/stream_bench.py " + " ".join(sys.argv[1:])
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        write_md(report, args.md)
        return 0
    sets = settings(args.quick)
    t_start = time.monotonic()
    report = {"command": "python3 bench/stream_bench.py " + " ".join(sys.argv[1:]),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": {"cpus": os.cpu_count()},
              "tbf": {"ifaces": IFACES, "burst": "max(128KiB, 4ms)", "limit": "max(256KiB, 50ms)"},
              "slices_mib": SLICE_MIB, "schedule": SCHEDULE, "repeats": args.repeats,
              "repeat_below_s": REPEAT_BELOW_S, "blocks": []}
    drv = Driver()
    try:
        for rate in rates:
            shape(rate)
            for d in dumps:
                mib = SLICE_MIB.get(rate)
                full = roots_of(os.path.join(DUMPS, d))
                if mib and tree_bytes(full) > mib * MIB:
                    roots, size_note = roots_of(make_slice(d, mib)), f"first {mib} MiB"
                else:
                    roots, size_note = full, "whole dump"
                nbytes = tree_bytes(roots)
                title = f"{d} @ {rate} Mbit/s ({size_note}, {nbytes / 1e6:.1f} MB)"
                print(f"\n== {title}", flush=True)
                rows = run_matrix(drv, roots, "s", rate, sets, repeats=args.repeats)
                block = {"dump": d, "rate_mbit": rate, "bytes": nbytes, "size": size_note,
                         "title": title, "rows": rows}
                block["flags"] = evaluate(block)
                report["blocks"].append(block)
                print_block(block)
        if not args.no_schedule:
            sched_txt = " -> ".join(f"{m} Mbit/s@{t:g}s" for t, m in SCHEDULE)
            for d in [x for x in dumps if x != "apache"]:
                roots = roots_of(os.path.join(DUMPS, d))
                nbytes = tree_bytes(roots)
                title = f"{d} schedule {sched_txt} (whole dump, {nbytes / 1e6:.1f} MB)"
                print(f"\n== {title}", flush=True)
                rows = run_matrix(drv, roots, "s", None, sets, schedule=SCHEDULE, repeats=args.repeats)
                block = {"dump": d, "rate_mbit": None, "schedule": SCHEDULE, "bytes": nbytes,
                         "size": "whole dump", "title": title, "rows": rows}
                block["flags"] = evaluate(block)
                report["blocks"].append(block)
                print_block(block)
        shape(None)
        if not args.no_memory:
            print("\n== peak memory, synthetic page-like dump (unshaped link)", flush=True)
            report["memory"] = memory_test(args.memory_gib)
    finally:
        shape(None)
        drv.close()
        shutil.rmtree(os.path.join(DEST_BASE, "bench-s"), ignore_errors=True)
        shutil.rmtree(os.path.join(DEST_BASE, "bench-mem"), ignore_errors=True)
    report["total_s"] = round(time.monotonic() - t_start, 1)
    print(f"\ntotal {report['total_s']} s")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(report, fh, indent=1)
    write_md(report, args.md)
    print(f"wrote {args.json} and {args.md}")
    return 0


def write_md(report: dict, path: str) -> None:
    L = ["# Stream benchmark (issue 3)", "",
         "Generated by `bench/stream_bench.py` (see its docstring for the method). Command:", "",
         "```", f"flock /run/edgemig-lab.lock {report['command']}", "```", "",
         f"Started {report['started']}, {report['host']['cpus']} CPUs, total {report['total_s']} s. "
         f"Shaping: tc tbf on {', '.join(report['tbf']['ifaces'])} (burst {report['tbf']['burst']}, "
         f"limit {report['tbf']['limit']}). Slices: " +
         ", ".join(f"{k} Mbit/s -> first {v} MiB" for k, v in report["slices_mib"].items()) +
         "; otherwise whole dumps. "
         f"Settings whose first run took under {report.get('repeat_below_s', 0):g} s ran "
         f"{report.get('repeats', 1)} times, interleaved with the other settings; their row is the "
         "median run.", "",
         "Columns: time = sender start to receiver's verified end; x-none = time / uncompressed time; "
         "link = wire bytes / (rate x time) (schedule: time-weighted mean rate); "
         "cpu = compression CPU / (workers x time).", ""]
    for b in report["blocks"]:
        L += [f"## {b['title']}", "",
              "| setting | time s | x-none | wire MB | ratio | link | raw MB/s | cpu |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
        none = next((r for r in b["rows"] if r["setting"] == "fixed:none:0" and "error" not in r), None)
        for r in b["rows"]:
            if "error" in r:
                L.append(f"| {r['setting']} | error: {r['error'][:120]} |||||||")
                continue
            x = f"{r['seconds'] / none['seconds']:.3f}" if none else "-"
            u = f"{r['util'] * 100:.1f}%" if r.get("util") is not None else "-"
            name = r["setting"]
            ctl = r.get("controller") or {}
            if ctl.get("policy") in ("model", "paper"):
                name += f" (ends {ctl.get('codec')}:{ctl.get('level')})"
            L.append(f"| {name} | {r['seconds']:.2f} | {x} | {r['bytes_wire'] / 1e6:.2f} | {r['ratio']:.3f} "
                     f"| {u} | {r['raw_MBps']:.1f} | {r['cpu_share']:.2f} |")
        L += ["", "Targets: " + "; ".join(f"{k} = {v}" for k, v in b["flags"].items()), ""]
    if report.get("memory"):
        m = report["memory"]
        L += ["## Peak memory (synthetic page-like dump, unshaped)", "",
              f"{m['dump_bytes'] / (1 << 30):.2f} GiB: 15 % zero pages, 20 % duplicates, rest real page "
              "content of the captured dumps tiled. Sender = ru_maxrss of a fresh driver process; receiver "
              "= ru_maxrss of the receiver process (a wrapper on edge2 records it).", "",
              "| policy | sender env | time s | ratio | sender peak MiB | receiver peak MiB |",
              "|---|---|---:|---:|---:|---:|"]
        for r in m["runs"]:
            if "error" in r:
                L.append(f"| {r['policy']} | {r.get('env') or '-'} | error: {r['error'][:120]} ||||")
            else:
                L.append(f"| {r['policy']} | {r.get('env') or '-'} | {r['seconds']:.2f} | {r['ratio']:.3f} | {r['sender_peak_MiB']} "
                         f"| {r['receiver_peak_MiB']} |")
        L.append("")
    L.append("<!-- analysis -->")
    old = ""
    if os.path.exists(path):
        old = open(path).read()
    if "<!-- analysis -->" in old:
        L.append(old.split("<!-- analysis -->", 1)[1].lstrip("\n"))
    with open(path, "w") as fh:
        fh.write("\n".join(L) + "\n")


if __name__ == "__main__":
    sys.exit(main())
