# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The floor under the restore and the checkpoint (issue 26): each piece of Docker's, containerd's
and runc's work around CRIU's own, and Podman beside it, in one run (make bench-floor).

Ours: a container of the lab's apache image on one lab edge (its own name, published on a
port of its own, the service itself is not touched), checkpointed by
``checkpoint.create`` (the edge_checkpoint / migration driver's call: CRIU through
containerd into the dump tmpfs) and restored into the same container by
``switchover.restore_and_switch`` (the receiver's call on a target: checks, pages set
aside, ``docker start --checkpoint``, health check), N times.

Podman: Debian's podman (make deps-podman) with the same runc and CRIU, the same image
(``docker save`` from the edge, ``podman load``), ``--network none``: ``podman container
checkpoint`` / ``restore`` in place, and ``--export`` / ``--import`` (the container removed
between the two, as a migration would), N times each, with ``--print-stats``.

How the time is attributed (no process is slowed down to watch it):
- the kernel's exec and exit events (bench/exec_trace.py, CLOCK_MONOTONIC like ours):
  when ctr, containerd's shim, runc, criu, the prestart hook (``/proc/<dockerd>/exe
  libnetwork-setkey``), docker-proxy, iptables ran;
- CRIU's own logs (dump.log in the dump's work dir, restore.log in the task's dir) with
  their time stamps: how long each notification to runc took (``setup-namespaces``: runc
  runs Docker's prestart hook; ``network-unlock``), stats-dump / stats-restore;
- our own clock around the Docker API's start call (a wrapper, nothing else changed).

    python3 bench/floor_bench.py [--runs 5] [--edge edge2] [--kinds bridge,bridge+lock,none,holder]
                                 [--no-podman] [--json docs/benchmarks-floor.json]

Needs root and the lab up; run it under the lab lock (make bench-floor does).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "lab"))
from collection_path import ensure_collection_path  # noqa: E402

ensure_collection_path()

import labutil  # noqa: E402
from exec_trace import ExecTrace  # noqa: E402

from ansible_collections.edgemig.migration.plugins.module_utils.docker import checkpoint, switchover, tmpfs_restore  # noqa: E402
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPI  # noqa: E402

NAME = "floor-apache"
HOLDER = "floor-netns"
PODMAN_NAME = "floor-podman"
HOST_PORT = 14004  # inside the edge's namespace only; never the service's 4004
_STAMP = re.compile(r"^\((\d+\.\d+)\)\s?(.*)$")


# ------------------------------------------------------------------ CRIU's logs
def criu_log(path: str) -> list[tuple[float, str]]:
    out = []
    try:
        with open(path, errors="replace") as fh:
            for line in fh:
                m = _STAMP.match(line)
                if m:
                    out.append((float(m[1]), m[2]))
    except OSError:
        pass
    return out


def rpc_gaps(lines: list[tuple[float, str]]) -> dict:
    """How long CRIU waited on each notification to runc (``Running <x> scripts``, then ``RPC``):
    from the notification to the next line any CRIU process logged. Plus the last stamp (``total``)."""
    out: dict = {}
    for i, (ts, text) in enumerate(lines):
        m = re.match(r"Running (\S+) scripts", text)
        if m and i + 2 < len(lines) and lines[i + 1][1].strip() == "RPC":
            out[m[1]] = round(out.get(m[1], 0.0) + lines[i + 2][0] - ts, 6)
    if lines:
        out["total"] = lines[-1][0]
    return out


# ------------------------------------------------------------------ the processes seen
def hook_file(path: str) -> bool:
    return bool(re.fullmatch(r"/proc/\d+/exe", path))


def kind_of(rec: dict) -> str | None:
    name = os.path.basename(rec["file"])
    if hook_file(rec["file"]):
        return "hook"
    for kind in ("containerd-shim-runc-v2", "runc", "criu", "ctr", "docker-proxy", "conmon", "podman"):
        if name == kind:
            return kind
    if name.startswith(("iptables", "ip6tables", "xtables", "nft")):
        return "iptables"
    return None


def spans(procs: list[dict], t0: float, t1: float) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for rec in procs:
        kind = kind_of(rec)
        if kind and t0 - 0.001 <= rec["exec"] <= t1 + 0.001:
            out.setdefault(kind, []).append(rec)
    return out


def longest(recs: list[dict] | None) -> dict | None:
    done = [r for r in recs or [] if r["exit"] is not None]
    return max(done, key=lambda r: r["exit"] - r["exec"]) if done else None


def busy(recs: list[dict] | None) -> float:
    return round(sum((r["exit"] or r["exec"]) - r["exec"] for r in recs or []), 4)


# ------------------------------------------------------------------ ours
class StartClock:
    """Our clock around DockerAPI.start_container (the only call wrapped; the path is unchanged)."""

    def __init__(self):
        self.calls: list[tuple[float, float]] = []
        self.real = DockerAPI.start_container

    def __enter__(self):
        clock = self

        def timed(api, *args, **kwargs):
            t0 = time.monotonic()
            try:
                return clock.real(api, *args, **kwargs)
            finally:
                clock.calls.append((t0, time.monotonic()))
        DockerAPI.start_container = timed
        return self

    def __exit__(self, *exc):
        DockerAPI.start_container = self.real


def edge_api(edge: str) -> tuple[DockerAPI, str]:
    host = f"unix:///run/edgemig-lab/{edge}/docker.sock"
    return DockerAPI(host), host


def fresh_container(api: DockerAPI, image: str, network: str) -> str:
    """``NAME`` from ``image``: bridge with a published port (as deploy makes the service), ``none``,
    or ``holder`` (joins the network namespace of a container made beforehand)."""
    api.remove_container(NAME)
    api.remove_container(HOLDER)  # a holder kind's, with the port
    host_config: dict = {"NetworkMode": network}
    if network == "bridge":
        host_config["PortBindings"] = {"80/tcp": [{"HostPort": str(HOST_PORT)}]}
    elif network == "holder":
        ports = {"80/tcp": [{"HostPort": str(HOST_PORT)}]}
        hid = api.create_container(HOLDER, {"Image": image, "Entrypoint": ["sleep", "infinity"],
                                            "ExposedPorts": {"80/tcp": {}}, "HostConfig": {"PortBindings": ports}})
        api.start_container(hid)
        host_config = {"NetworkMode": f"container:{hid}"}
    body = {"Image": image, "HostConfig": host_config}
    if network != "holder":
        body["ExposedPorts"] = {"80/tcp": {}}
    cid = api.create_container(NAME, body)
    api.start_container(cid)
    return cid


def wait_state(api: DockerAPI, cid: str, running: bool, timeout: float = 20.0) -> float:
    t0 = time.monotonic()
    while bool((api.inspect_container(cid) or {}).get("State", {}).get("Running")) != running:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{cid[:12]} not {'running' if running else 'stopped'} after {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - t0


def docker_events(api: DockerAPI, cid: str, since: float, until: float) -> list[dict]:
    raw = api.request("GET", "/events", params={"since": f"{since:.3f}", "until": f"{until:.3f}",
                                                "filters": json.dumps({"container": [cid]})}, raw=True)
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


def ours_once(api: DockerAPI, host: str, tr: ExecTrace, cid: str, dump_dir: str, held_dir: str,
              health: dict | None, warm: bool) -> dict:
    row: dict = {}
    # As the receiver does: Docker's client and data root asked before the freeze (``warm``), or not.
    ready = switchover.DockerReady({"docker_host": host}) if warm else None
    if ready is not None:
        ready.join()
    wall0 = time.time() - time.monotonic()  # wall = monotonic + wall0
    tr.take()
    t0 = time.monotonic()
    made = checkpoint.create(api, NAME, dump_dir, "floor", exit_container=True, held_dir=held_dir)
    t1 = time.monotonic()
    procs = tr.take()
    row["checkpoint_s"] = round(t1 - t0, 4)
    row.update({k: v for k, v in made["durations"].items() if k != "checkpoint_s"})
    s = spans(procs, t0, t1)
    ctr, runc, criu = longest(s.get("ctr")), longest(s.get("runc")), longest(s.get("criu"))
    if ctr and runc and criu:
        row["ck_ours_before_ctr_s"] = round(ctr["exec"] - t0, 4)
        row["ck_containerd_before_runc_s"] = round(runc["exec"] - ctr["exec"], 4)
        row["ck_runc_before_criu_s"] = round(criu["exec"] - runc["exec"], 4)
        row["ck_criu_s"] = round(criu["exit"] - criu["exec"], 4)
        row["ck_runc_after_criu_s"] = round(runc["exit"] - criu["exit"], 4)
        row["ck_containerd_after_runc_s"] = round(ctr["exit"] - runc["exit"], 4)
        row["ck_ours_after_ctr_s"] = round(t1 - ctr["exit"], 4)
        row["ck_runc_calls"] = len(s.get("runc", []))
    row["ck_iptables_s"] = busy(s.get("iptables"))
    row["ck_iptables_n"] = len(s.get("iptables", []))
    dump_log = criu_log(os.path.join(made["work_dir"], checkpoint.CRIU_WORK, "dump.log"))
    row.update({f"ck_criu_rpc_{k}_s": v for k, v in rpc_gaps(dump_log).items()})
    row["docker_sees_exit_s"] = round(wait_state(api, cid, False), 4)  # after ctr returned; not on the path

    spec = {"docker_host": host, "name": NAME, "container_id": cid, "checkpoint_dir": made["checkpoint_dir"],
            "health": health}
    tr.take()
    with StartClock() as clock:
        r0 = time.monotonic()
        out = switchover.restore_and_switch(spec, ready=ready)
    procs = tr.take()
    checkpoint.give_back(api, NAME, made["restart_policy"], held_dir, cid)
    shutil.rmtree(made["work_dir"], ignore_errors=True)
    row["restore_s"] = out["restore_s"]
    row["health_s"] = out["health_s"]
    row["criu_restore_s"] = (out.get("criu_restore") or {}).get("restore_s")
    call0, call1 = clock.calls[-1]
    row["rs_ours_before_start_s"] = round(call0 - r0, 4)
    row["rs_start_call_s"] = round(call1 - call0, 4)
    row["rs_ours_after_start_s"] = round(r0 + out["restore_s"] - call1, 4)
    s = spans(procs, call0, call1)
    runc, criu, hook = longest(s.get("runc")), longest(s.get("criu")), longest(s.get("hook"))
    shim = (s.get("containerd-shim-runc-v2") or [None])[0]
    if runc and criu:
        row["rs_docker_containerd_before_runc_s"] = round(runc["exec"] - call0, 4)
        if shim:
            row["rs_before_shim_s"] = round(shim["exec"] - call0, 4)
            row["rs_shim_to_runc_s"] = round(runc["exec"] - shim["exec"], 4)
        row["rs_runc_before_criu_s"] = round(criu["exec"] - runc["exec"], 4)
        row["rs_criu_s"] = round(criu["exit"] - criu["exec"], 4)
        row["rs_runc_after_criu_s"] = round(runc["exit"] - criu["exit"], 4)
        row["rs_containerd_dockerd_after_runc_s"] = round(call1 - runc["exit"], 4)
        row["rs_runc_calls"] = len(s.get("runc", []))
    row["rs_hook_s"] = round(hook["exit"] - hook["exec"], 4) if hook else 0.0
    row["rs_docker_proxy_n"] = len(s.get("docker-proxy", []))
    row["rs_iptables_s"] = busy(s.get("iptables"))
    row["rs_iptables_n"] = len(s.get("iptables", []))
    task = tmpfs_restore.TASK_DIRS[0].format(docker_root=api.info()["DockerRootDir"], id=cid)
    row.update({f"rs_criu_rpc_{k}_s": v for k, v in rpc_gaps(criu_log(os.path.join(task, "restore.log"))).items()})
    events = docker_events(api, cid, wall0 + r0 - 1, time.time() + 0.5)
    start = [e for e in events if e.get("status") == "start" or e.get("Action") == "start"]
    if start:
        row["rs_start_event_after_call_s"] = round(start[-1]["timeNano"] / 1e9 - (wall0 + call1), 4)
    state = api.inspect_container(cid)["State"]
    row["ok"] = bool(state.get("Running")) and state.get("Status") == "running" and bool(start)
    return row


# ------------------------------------------------------------------ CRIU's network lock, as runc.conf says
RUNC_CONF = "/etc/criu/runc.conf"
LOCK_SKIP = "network-lock skip"


class RuncConf:
    """runc.conf as found, or with CRIU's network lock on (``lock``) or skipped (``skip``) for one run;
    the file as found is put back at the end (it is the lab's: make provision writes it)."""

    def __init__(self):
        with open(RUNC_CONF) as fh:
            self.original = fh.read()

    def use(self, mode: str | None) -> None:
        lines = [ln for ln in self.original.splitlines() if ln.strip().lstrip("-") != LOCK_SKIP]
        if mode == "skip":
            lines.append(LOCK_SKIP)
        text = self.original if mode is None else "\n".join(lines) + "\n"
        with open(RUNC_CONF, "w") as fh:
            fh.write(text)

    def restore(self) -> None:
        self.use(None)


# ------------------------------------------------------------------ Podman
def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {proc.stderr.strip()[-500:]}")
    return proc


def podman_image(api_host: str, image: str) -> None:
    if podman("image", "exists", image, check=False).returncode == 0:
        return
    with tempfile.TemporaryDirectory() as tmp:
        tar = os.path.join(tmp, "image.tar")
        subprocess.run([labutil.DOCKER, "-H", api_host, "save", "-o", tar, image], check=True)
        podman("load", "-i", tar)


def podman_fresh(image: str) -> None:
    podman("rm", "-f", "-t", "0", PODMAN_NAME, check=False)
    # Limits of our own: podman's defaults (nofile 1048576, nproc) are refused on this host
    # ("error setting rlimit type 7: operation not permitted").
    podman("run", "-d", "--name", PODMAN_NAME, "--network", "none", "--ulimit", "nofile=1024:1024",
           "--ulimit", "nproc=4096:4096", image)
    time.sleep(1.0)


def podman_running() -> bool:
    return podman("inspect", "-f", "{{.State.Running}}", PODMAN_NAME, check=False).stdout.strip() == "true"


def podman_stats(text: str) -> dict:
    """``--print-stats``: podman's whole call, the runtime's (runc, with CRIU) and CRIU's, in seconds
    (podman says microseconds)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    out = {}
    for key, value in doc.items():
        if isinstance(value, (int, float)) and key.endswith("_duration"):
            out[key.replace("_duration", "_s")] = round(value / 1e6, 4)
    for stats in doc.get("container_statistics") or []:
        for key, value in stats.items():
            if isinstance(value, (int, float)) and key.endswith("_duration"):
                out[key.replace("_duration", "_s")] = round(value / 1e6, 4)
        for key, value in (stats.get("criu_statistics") or {}).items():
            if key.endswith("_time"):
                out[f"criu_{key[:-5]}_s"] = round(value / 1e6, 4)
    return out


def podman_once(mode: str, tmp: str) -> dict:
    row: dict = {}
    export = os.path.join(tmp, "floor.tar")
    ck = ["container", "checkpoint", "--print-stats"]
    rs = ["container", "restore", "--print-stats"]
    if mode == "export":
        ck += ["--export", export, "--compress", "none"]
        rs += ["--import", export]
    t0 = time.monotonic()
    out = podman(*ck, PODMAN_NAME)
    row["checkpoint_s"] = round(time.monotonic() - t0, 4)
    row.update({f"ck_{k}": v for k, v in podman_stats(out.stdout).items()})
    if mode == "export":
        podman("rm", PODMAN_NAME)
        t0 = time.monotonic()
        out = podman(*rs)
    else:
        t0 = time.monotonic()
        out = podman(*rs, PODMAN_NAME)
    row["restore_s"] = round(time.monotonic() - t0, 4)
    row.update({f"rs_{k}": v for k, v in podman_stats(out.stdout).items()})
    row["ok"] = podman_running()
    if os.path.exists(export):
        os.unlink(export)
    return row


# ------------------------------------------------------------------ summary
def summarize(rows: list[dict]) -> dict:
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {}
    for key in keys:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if values:
            out[key] = {"median": round(statistics.median(values), 4), "min": min(values), "max": max(values)}
    out["ok"] = f"{sum(1 for r in rows if r.get('ok'))}/{len(rows)}"
    return out


def print_table(results: dict) -> None:
    names = list(results)
    keys: list[str] = []
    for name in names:
        keys += [k for k in results[name]["summary"] if k != "ok" and k not in keys]
    width = max(len(k) for k in keys) + 2
    print("\n" + "".ljust(width) + "".join(n.rjust(26) for n in names))
    print("ok".ljust(width) + "".join(results[n]["summary"]["ok"].rjust(26) for n in names))
    for key in keys:
        cells = []
        for name in names:
            s = results[name]["summary"].get(key)
            cells.append((f"{s['median']:.3f} [{s['min']:.3f}-{s['max']:.3f}]" if s else "-").rjust(26))
        print(key.ljust(width) + "".join(cells))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--edge", default="edge2", choices=labutil.EDGES)
    ap.add_argument("--kinds", default="bridge+lock+cold,bridge+lock,bridge+skip",
                    help="ours, comma list of <network>[+lock|+skip][+cold]: network bridge (as deploy makes the "
                         "service), none, holder (a network namespace held by another container: no prestart "
                         "hook); +lock / +skip: CRIU's network lock on / skipped for this kind (else runc.conf as "
                         "it is); +cold: Docker's client and data root asked after the commit (as before issue 26)")
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--json", help="write every run and the summary here")
    args = ap.parse_args(argv)
    netns = f"/var/run/netns/{args.edge}"
    if os.stat("/proc/self/ns/net").st_ino != os.stat(netns).st_ino:
        # The receiver runs in the edge's network namespace: so does this (its health checks reach
        # the container's address there, and nothing else).
        os.execvp("nsenter", ["nsenter", f"--net={netns}", sys.executable, os.path.abspath(__file__),
                              *(sys.argv[1:] if argv is None else argv)])

    spec = labutil.catalog()["apache"]
    image = spec["image"]
    api, host = edge_api(args.edge)
    dump_dir = os.path.join(labutil.dump_dir(args.edge), "floor")
    held_dir = tempfile.mkdtemp(prefix="edgemig-floor-held-")
    results: dict = {}
    conf = RuncConf()
    with ExecTrace() as tr, tempfile.TemporaryDirectory(prefix="edgemig-floor-", dir="/dev/shm") as tmp:
        try:
            if not args.no_podman:
                podman_image(host, image)
            # Interleaved, one run of each kind per round: a noisy neighbour hits them alike.
            kinds = [f"docker-{k}" for k in args.kinds.split(",") if k]
            if not args.no_podman:
                kinds += ["podman-inplace", "podman-export"]
            for kind in kinds:
                results[kind] = {"runs": []}
            for i in range(args.runs):
                for kind in kinds:
                    if kind.startswith("docker-"):
                        network, *flags = kind.split("-", 1)[1].split("+")
                        conf.use("lock" if "lock" in flags else "skip" if "skip" in flags else None)
                        cid = fresh_container(api, image, network)
                        time.sleep(1.0)
                        # The catalog's check where the container has an address of its own (the
                        # receiver's, through the container's IP); none else (Running is checked).
                        health = ({"type": "http", "port": HOST_PORT, "path": spec["health"].get("path", "/"),
                                   "timeout": 10} if network == "bridge" else None)
                        try:
                            row = ours_once(api, host, tr, cid, dump_dir, held_dir, health, warm="cold" not in flags)
                        except Exception as exc:  # one kind failing (e.g. holder) leaves the others measured
                            row = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:400]}
                    else:
                        try:
                            podman_fresh(image)
                            row = podman_once(kind.split("-", 1)[1], tmp)
                        except Exception as exc:
                            row = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:400]}
                    row["run"] = i + 1
                    print(json.dumps({"kind": kind, **row}), flush=True)
                    results[kind]["runs"].append(row)
        finally:
            conf.restore()
            api.remove_container(NAME)
            api.remove_container(HOLDER)
            if not args.no_podman:
                podman("rm", "-f", "-t", "0", PODMAN_NAME, check=False)
            shutil.rmtree(dump_dir, ignore_errors=True)
            shutil.rmtree(held_dir, ignore_errors=True)
    for res in results.values():
        res["summary"] = summarize(res["runs"])
    print_table(results)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"edge": args.edge, "image": image, "runs": args.runs, "results": results}, fh, indent=1)
    return 0 if all(r.get("ok") for res in results.values() for r in res["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
