# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Endurance runs (issues 6 and 12, ``make soak``): migrate MariaDB back and forth while a writer commits rows.

A writer thread commits one row at a time through the service address
(PyMySQL, autocommit off, one INSERT + COMMIT per row) and remembers every
row whose COMMIT was acknowledged. After each migration, the invariants:

* one_copy: the service runs on exactly one edge (both daemons asked);
* address: the service address is on exactly one edge, the one it runs on;
* rows: every acknowledged row is in the table;
* leftovers: no ``<svc>-*`` dump dir, no ``.edgemig-state/<svc>.json``
  record on either edge, no receiver process.

With --chaos (``make soak CHAOS=1``: --chaos --count 100) about half of the
migrations get a fault drawn from bench/chaos.py, injected at a drawn point of
the migration; recover.yml runs where the playbook could not converge (always
after a killed controller). A run whose invariants fail is recorded, the lab
is converged with recover.yml and the soak goes on; the exit status is then 1.

Reports the writer's longest gap per migration (client-visible downtime), the
migration report's ``downtime_s`` and, with --chaos, counts by fault class and
phase; writes reports/soak-latest.json (--chaos: reports/soak-chaos-latest.json)
and, with --doc, the block between the soak (chaos) markers of docs/reliability.md.

    python3 bench/soak.py [--count 50] [--doc docs/reliability.md]
    python3 bench/soak.py --chaos --count 100 [--seed N] [--faults kill-receiver,link-drop] [--fault-ratio 0.5]
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lab"))
import chaos  # noqa: E402 (bench/ is on sys.path when run as a script)
import doc_section  # noqa: E402
import soak_report  # noqa: E402
from labutil import (  # noqa: E402
    EDGES,
    STALL_TIMEOUT,
    Writer,
    address_on,
    catalog,
    finish,
    leftover_dumps,
    module_pids,
    nft_clear,
    other,
    playbook,
    receiver_pids,
    running_on,
    sql,
    start_playbook,
    state_phase,
    wait_answering,
)

LOCK = "/run/edgemig-lab.lock"
PLAYBOOK_TIMEOUT_S = 900
# How long the invariants may take to settle after a migration: the address moves with the
# switch-over; a receiver left in doubt exits on its own timeout and the dump dirs go with it.
ADDRESS_SETTLE_S = 15
LEFTOVERS_SETTLE_S = 60
# How long the migration's processes may take to end after the playbook: after a killed
# controller the module on the source goes on with the migration or the rollback by itself.
QUIET_S, QUIET_KILLED_S = 90, 180
WRITER_RESUME_S = 1.0  # after a migration: let the writer reconnect and commit again
RECOVER_RETRY_S = 5.0  # recover.yml once more after this, when an edge was still busy


# ------------------------------------------------------------------ invariants
def poll(fn, ok, timeout: float, step: float = 0.2):
    """``fn()``'s value once ``ok(value)``, or its last value after ``timeout`` s (no exception:
    the caller records what it saw)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if ok(value) or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def verdict(ok: bool, detail: str) -> dict:
    return {"ok": bool(ok), "detail": detail}


def leftovers(svc: str) -> dict:
    """What a finished migration must not leave: dump dirs, migration records, a receiver."""
    records = {e: state_phase(e, svc) for e in EDGES if state_phase(e, svc)}
    left = {"dump_dirs": leftover_dumps(svc), "records": records, "receiver": receiver_pids(svc)}
    return {k: v for k, v in left.items() if v}


def check_rows(spec: dict, writer: Writer, lost: set) -> dict:
    """Every acknowledged row in the table. Only rows newly found missing fail this run: one loss
    would otherwise fail every later run too (``lost`` keeps the ones already reported)."""
    try:
        wait_answering(spec, timeout=90)
        acked = writer.snapshot()  # before the SELECT: every row in it was committed before the read
        present = {r[0] for r in sql(spec, f"SELECT v FROM {writer.table}")}
    except Exception as exc:
        return verdict(False, f"could not read the table: {type(exc).__name__}: {exc}")
    missing = [v for v in acked if v not in present]
    new = [v for v in missing if v not in lost]
    lost.update(new)
    detail = f"{len(acked) - len(missing)} of {len(acked)} acknowledged rows present"
    if missing:
        detail += f"; {len(new)} newly missing (e.g. {new[:3]}), {len(missing) - len(new)} missing before"
    return verdict(not new, detail)


def check_invariants(svc: str, spec: dict, writer: Writer, lost: set) -> dict:
    """The four invariants, each ``{"ok": ..., "detail": what was seen}``."""
    where = running_on(svc)
    out = {"one_copy": verdict(len(where) == 1, f"running on {where or 'no edge'}")}

    def address_ok(on: list[str]) -> bool:
        return len(on) == 1 and (len(where) != 1 or on == where)

    on = poll(lambda: address_on(spec["address"]), address_ok, ADDRESS_SETTLE_S)
    out["address"] = verdict(address_ok(on), f"{spec['address']} on {on or 'no edge'}")
    out["rows"] = check_rows(spec, writer, lost)
    left = poll(lambda: leftovers(svc), lambda v: not v, LEFTOVERS_SETTLE_S, step=0.5)
    out["leftovers"] = verdict(not left, f"left: {left}" if left else "nothing left")
    return out


# ------------------------------------------------------------------ one migration
def report_downtime(svc: str, since_wall: float) -> float | None:
    """``downtime_s`` of the migration report, if this run wrote it (a failed run writes none)."""
    path = os.path.join(ROOT, "reports", f"migrate-{svc}-latest.json")
    try:
        if os.stat(path).st_mtime < since_wall:
            return None
        with open(path) as fh:
            return float(json.load(fh)["downtime_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def settle(svc: str, controller_killed: bool) -> dict:
    """Wait until nothing of the migration still moves: no receiver, no edge_migrate module.

    After a killed controller the module on the source finishes the migration
    or the rollback by itself (SIGHUP ignored): recover.yml must not race it.
    """
    t0 = time.monotonic()
    quiet = poll(lambda: not receiver_pids(svc) and not module_pids("edge_migrate"), bool,
                 QUIET_KILLED_S if controller_killed else QUIET_S, step=0.5)
    return {"s": round(time.monotonic() - t0, 1), "quiet": quiet}


def run_recover(svc: str, why: str, attempts: int = 2) -> dict:
    """recover.yml, once more after a pause if it could not finish (an edge still busy)."""
    t0 = time.monotonic()
    attempt = 1
    proc = playbook("recover.yml", "-e", f"svc={svc}", check=False, timeout=600)
    while proc.returncode != 0 and attempt < attempts:
        time.sleep(RECOVER_RETRY_S)
        attempt += 1
        proc = playbook("recover.yml", "-e", f"svc={svc}", check=False, timeout=600)
    out = {"why": why, "rc": proc.returncode, "attempts": attempt, "s": round(time.monotonic() - t0, 1)}
    if proc.returncode != 0:
        out["tail"] = (proc.stdout[-2000:] + proc.stderr[-500:]).strip()
    return out


def run_playbook(proc: subprocess.Popen) -> str:
    """The playbook's output; Ctrl-C reaches it as from a terminal, and it is waited for (the
    lab lock must not be released while it still moves the service)."""
    try:
        return finish(proc, timeout=PLAYBOOK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return finish(proc, timeout=60) + f"\n[soak] killed after {PLAYBOOK_TIMEOUT_S} s"
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGINT)
        finish(proc, timeout=PLAYBOOK_TIMEOUT_S)
        raise


def migrate_once(draw: chaos.Draw, svc: str, spec: dict, writer: Writer, lost: set,
                 windows: chaos.Windows | None, stall_timeout: int) -> dict:
    """One migration to the other edge, its fault (chaos), recovery where needed, and the invariants."""
    src = running_on(svc)[0]
    dst = other(src)
    fault = chaos.FAULTS[draw.fault] if draw.fault else None
    extra = chaos.playbook_vars(fault, stall_timeout) if windows is not None else []
    t0, wall0 = time.monotonic(), time.time()
    proc = start_playbook("migrate.yml", "-e", f"svc={svc}", "-e", f"target={dst}", *extra)
    # Chaos only: the watch's pgrep every 0.1 s costs CPU the plain soak's figures should not pay.
    watch = injection = None
    if windows is not None:
        watch = chaos.ReceiverWatch(svc, proc)
        watch.start()
    if fault is not None:
        injection = chaos.Injection(fault, draw, proc, svc, src, dst, windows.of(fault), watch, t0, wall0)
        injection.start()
    try:
        out = run_playbook(proc)
    except KeyboardInterrupt:
        if injection is not None:
            injection.abort()
        raise
    playbook_s = round(time.monotonic() - t0, 2)
    if watch is not None:
        watch.halt.set()
    killed = injection is not None and injection.controller_killed
    run = {"n": draw.n, "from": src, "to": dst, "fault": draw.fault,
           "draw": {"at": draw.at, "hold_s": draw.hold_s} if fault else None,
           "rc": proc.returncode, "playbook_s": playbook_s, "receiver_s": watch.lifetime() if watch else None}
    run["settle"] = settle(svc, killed)
    if injection is not None:
        injection.join()  # a cut link is healed by now
        run["injection"] = injection.record
    elif windows is not None and proc.returncode == 0:
        windows.learn(watch.lifetime(), playbook_s)  # a clean run: how long the windows are
    records = {e: state_phase(e, svc) for e in EDGES if state_phase(e, svc)}
    why = chaos.recover_needed(killed, proc.returncode, records, running_on(svc))
    run["recover"] = run_recover(svc, why) if why else None
    time.sleep(WRITER_RESUME_S)
    run["invariants"] = check_invariants(svc, spec, writer, lost)
    run["ok"] = all(v["ok"] for v in run["invariants"].values())
    run["writer_gap_s"] = round(writer.longest_gap(t0, time.monotonic()), 3)
    run["downtime_s"] = report_downtime(svc, wall0) if proc.returncode == 0 else None
    where = running_on(svc)
    run["outcome"] = "target" if where == [dst] else "source" if where == [src] else "neither"
    if proc.returncode != 0 or not run["ok"]:
        run["tail"] = out[-1500:]
    return run


def converge(svc: str) -> dict:
    """After a run whose invariants failed: recover.yml, and whether the service runs exactly once again."""
    rec = run_recover(svc, "an invariant failed")
    where = running_on(svc)
    return {**rec, "where": where, "ok": len(where) == 1}


def describe(run: dict, count: int, acked: int) -> str:
    fault, phase = soak_report.fault_phase(run)
    hit = "" if fault == "none" else f" fault={fault}@{phase}"
    rec = f" recover.yml rc={run['recover']['rc']}" if run.get("recover") else ""
    down = run.get("downtime_s")
    bad = soak_report.failed_invariants(run)
    return (f"[soak] {run['n']}/{count} {run['from']}->{run['to']}{hit} rc={run['rc']}{rec} "
            f"ended on {run['outcome']} writer_gap={run['writer_gap_s']:.2f}s "
            f"downtime_s={'n/a' if down is None else down} acked={acked} "
            f"invariants={'ok' if not bad else 'FAILED ' + ', '.join(bad)}")


# ------------------------------------------------------------------ the soak
def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--svc", default="mysql")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "reliability.md"),
                    help="markdown file whose soak (chaos) block is rewritten; '' for none")
    ap.add_argument("--json", help="where the JSON goes [reports/soak-latest.json, --chaos: soak-chaos-latest.json]")
    ap.add_argument("--no-lock", action="store_true", help="the caller already holds the lab lock")
    ap.add_argument("--chaos", action="store_true", help="inject a random fault into about half of the migrations")
    ap.add_argument("--seed", type=int, help="--chaos: the RNG seed of the fault plan [random, reported]")
    ap.add_argument("--fault-ratio", type=float, default=0.5, help="--chaos: share of runs with a fault [0.5]")
    ap.add_argument("--faults", default=",".join(chaos.FAULTS),
                    help=f"--chaos: fault classes to draw from [all: {','.join(chaos.FAULTS)}]")
    ap.add_argument("--stall-timeout", type=int, default=STALL_TIMEOUT,
                    help=f"--chaos: edgemig_stall_timeout of every run [{STALL_TIMEOUT}]")
    args = ap.parse_args()
    args.fault_classes = [c for c in args.faults.split(",") if c]
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)
    return args


def command_of(args: argparse.Namespace) -> str:
    cmd = f"python3 bench/soak.py --count {args.count}"
    if args.chaos:
        cmd += f" --chaos --seed {args.seed}"
        if args.fault_ratio != 0.5:
            cmd += f" --fault-ratio {args.fault_ratio}"
        if args.fault_classes != list(chaos.FAULTS):
            cmd += f" --faults {','.join(args.fault_classes)}"
        if args.stall_timeout != STALL_TIMEOUT:
            cmd += f" --stall-timeout {args.stall_timeout}"
    return cmd


def prepare(args: argparse.Namespace, spec: dict) -> None:
    """The service running once, answering, with the writer's table."""
    if args.chaos:
        # What an interrupted chaos soak may have left: a cut link, a migration in doubt.
        nft_clear()
        playbook("recover.yml", "-e", f"svc={args.svc}", check=False)
    if len(running_on(args.svc)) != 1:
        playbook("deploy.yml", "-e", f"svc={args.svc}", "-e", "host=edge1")
    wait_answering(spec, timeout=120)
    sql(spec, "CREATE TABLE IF NOT EXISTS soak (id BIGINT AUTO_INCREMENT PRIMARY KEY, v CHAR(32) NOT NULL, "
              "KEY (v))", commit=True)


def main() -> int:
    args = parse_args()
    plan = (chaos.draw_plan(args.seed, args.count, args.fault_classes, args.fault_ratio) if args.chaos
            else [chaos.Draw(n) for n in range(1, args.count + 1)])
    lock = open(LOCK, "w")
    if not args.no_lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
    spec = catalog()[args.svc]
    prepare(args, spec)
    writer = Writer(spec)
    writer.start()
    time.sleep(1.0)
    t_start = time.monotonic()
    windows = chaos.Windows() if args.chaos else None
    runs: list[dict] = []
    lost: set = set()
    stopped = None
    try:
        for draw in plan:
            run = migrate_once(draw, args.svc, spec, writer, lost, windows, args.stall_timeout)
            runs.append(run)
            print(describe(run, args.count, len(writer.snapshot())), flush=True)
            if not run["ok"]:
                print(f"[soak] invariants failed: {json.dumps(run['invariants'])}", flush=True)
                run["converged"] = converge(args.svc)
                if not run["converged"]["ok"]:
                    stopped = (f"after run {draw.n} recover.yml left {args.svc} running on "
                               f"{run['converged']['where'] or 'no edge'}")
                    break
    except KeyboardInterrupt:
        stopped = f"interrupted (Ctrl-C) after {len(runs)} runs"
    finally:
        if args.chaos:
            nft_clear()
    acked = writer.finish()
    # The last word on rows: every row ever acknowledged, after the writer stopped. A table that
    # cannot be read (no copy running after a stop) leaves the count unknown, and the soak failed.
    try:
        present = {r[0] for r in sql(spec, "SELECT v FROM soak")}
        lost_rows = sum(1 for v in acked if v not in present)
    except Exception as exc:
        lost_rows, stopped = None, f"{stopped or 'done'}; the table could not be read at the end: {exc}"
    summary = soak_report.chaos_summary(runs) if args.chaos else soak_report.summary(runs)
    res = {"count": args.count, **summary,
           "acked_rows": len(acked), "lost_rows": lost_rows,
           "writer_errors": writer.errors, "wall_s": round(time.monotonic() - t_start, 1),
           "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": command_of(args), "stopped": stopped,
           "run_records": runs}
    if args.chaos:
        res.update({"seed": args.seed, "fault_ratio": args.fault_ratio, "fault_classes": args.fault_classes,
                    "stall_timeout": args.stall_timeout, "windows": windows.__dict__})
    name = "soak-chaos-latest.json" if args.chaos else "soak-latest.json"
    path = args.json or os.path.join(ROOT, "reports", name)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(res, fh, indent=2)
    if args.doc:  # an interrupted soak is reported too: the block says where it stopped
        block = soak_report.chaos_block(res) if args.chaos else soak_report.soak_block(res)
        doc_section.write_section(args.doc, soak_report.CHAOS_MARKERS if args.chaos else soak_report.SOAK_MARKERS,
                                  block)
    print(json.dumps({k: v for k, v in res.items() if k not in ("failures", "run_records")}, indent=1))
    ok = res["lost_rows"] == 0 and res["invariant_failed_runs"] == 0 and not stopped
    # The plain soak promises more: every migration completes.
    return 0 if ok and (args.chaos or res["failed"] == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
