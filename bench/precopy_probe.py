# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Feasibility probe for pre-copy without soft-dirty tracking (issue 11).

Starts a child that holds ~200 MB of varied data and keeps rewriting a small
part of it; warm-reads the child's memory while it runs (process_memory),
waits ``--gap`` seconds (the warm transfer would run then), checkpoints it
with ``criu dump --leave-running`` into /dev/shm, indexes the dump with
criu_images, and reports how many of the dump's pages the target would
already hold (same (pid, vaddr), same digest).

Needs root and criu on PATH.  Memory images are secrets: the dump directory
is on tmpfs and removed at the end, whatever happens.

    python3 bench/precopy_probe.py [--mb 200] [--churn-mb-s 2] [--gap 10]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from collection_path import ensure_collection_path  # noqa: E402

ensure_collection_path()

from ansible_collections.edgemig.migration.plugins.module_utils.sender import process_memory as pmem  # noqa: E402
from ansible_collections.edgemig.migration.plugins.module_utils.wire import criu_images  # noqa: E402

PAGE = 4096

# The child: a Python process (like a service: interpreter heap, libraries,
# a big data area).  Data: 3/4 random bytes, 1/8 repeated text, 1/8 zero
# (zero-filled but written, so allocated: CRIU dumps them).  Churn: random
# whole pages rewritten at ``churn`` bytes/s in 50 ms ticks.  The tick count
# goes to a file on tmpfs so the parent can see the child kept running.
CHILD = r"""
import os, random, sys, time
mb, churn, counter = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
n = mb << 20
rnd = random.Random(1)
buf = bytearray(n)
q = n // 8
buf[: 6 * q] = rnd.randbytes(6 * q)
text = b"row %08d: the quick brown fox jumps over the lazy dog\n"
buf[6 * q: 7 * q] = (b"".join(text % i for i in range(q // len(text) + 1)))[:q]
for i in range(7 * q, n, 4096):
    buf[i] = 0  # touch: allocate the page, content stays zero
fd = os.open(counter, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
pages = n // 4096
per_tick = churn * 0.05 / 4096
acc = 0.0
tick = 0
while True:
    tick += 1
    acc += per_tick
    while acc >= 1:
        acc -= 1
        p = rnd.randrange(pages)
        buf[p * 4096:(p + 1) * 4096] = rnd.randbytes(4096)
    os.pwrite(fd, b"%12d\n" % tick, 0)
    time.sleep(0.05)
"""


def read_counter(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def start_churner(mb: int, churn_mb_s: float, counter: str) -> subprocess.Popen:
    """The CHILD process (``mb`` MB rewritten at ``churn_mb_s``), once it counts; RuntimeError if it does not."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(mb), str(churn_mb_s * 1e6), counter],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    t0 = time.time()
    while read_counter(counter) < 3:
        if child.poll() is not None or time.time() - t0 > 60:
            child.kill()
            raise RuntimeError("child did not start")
        time.sleep(0.05)
    return child


def hash_rate(data: memoryview, algo: str) -> float:
    """MB/s of per-4-KiB-page digests over ``data``, best of 3 (the edge
    hosts share their 2 vCPUs with other work: the best run is the cost)."""
    best = float("inf")
    for _round in range(3):
        t = time.perf_counter()
        pmem.digest_pages(data, algo)
        best = min(best, time.perf_counter() - t)
    return len(data) / best / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200, help="child's data size")
    ap.add_argument("--churn-mb-s", type=float, default=2.0, help="child's rewrite rate")
    ap.add_argument("--gap", type=float, default=10.0, help="seconds between warm read and dump")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()

    if os.geteuid() != 0:
        print("needs root (reads another process's memory, runs criu)", file=sys.stderr)
        return 2
    criu = shutil.which("criu")
    if not criu:
        print("criu not on PATH", file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="precopy-probe-", dir="/dev/shm")
    counter = os.path.join(work, "counter")
    dump_dir = os.path.join(work, "dump")
    os.mkdir(dump_dir, 0o700)
    child = start_churner(args.mb, args.churn_mb_s, counter)
    res: dict[str, object] = {"mb": args.mb, "churn_mb_s": args.churn_mb_s, "gap_s": args.gap}
    try:
        pid = child.pid
        nspid = pmem.ns_pids(pid)[-1]

        # --- raw read speed (no hashing) --------------------------------
        c0 = read_counter(counter)
        t = time.perf_counter()
        nbytes = 0
        with pmem.ProcessMemory(pid) as pm:
            for _va, data in pm.read_runs():
                nbytes += len(data)
        read_s = time.perf_counter() - t
        c1 = read_counter(counter)
        res.update(read_mb=nbytes / 1e6, read_s=read_s, read_mb_s=nbytes / 1e6 / read_s,
                   ticks_during_read=c1 - c0)

        # --- hash speed on 64 MB of the child's memory ---------------------
        sample = bytearray()
        for _va, data in pmem.read_memory(pid):
            sample += data
            if len(sample) >= 64 << 20:
                break
        mv = memoryview(sample)
        res["hash_mb_s"] = {a: hash_rate(mv, a) for a in ("sha256", "blake2b")}
        del mv, sample

        # --- warm round: read + digest, child running ------------------------
        # The child's data buffer is its largest mapping; changes outside it
        # are the interpreter's own (heap, stacks): the "natural" churn.
        big = max(pmem.read_maps(pid), key=lambda m: m.end - m.start)
        c0 = read_counter(counter)
        t = time.perf_counter()
        warm = pmem.page_digests(pid)
        warm_s = time.perf_counter() - t
        c1 = read_counter(counter)
        res.update(warm_pages=len(warm), warm_s=warm_s,
                   warm_mb_s=len(warm) * PAGE / 1e6 / warm_s, ticks_during_warm=c1 - c0)

        time.sleep(args.gap)

        # --- the freeze: criu dump --------------------------------------------
        t = time.perf_counter()
        r = subprocess.run([criu, "dump", "-t", str(pid), "-D", dump_dir, "--shell-job",
                            "--leave-running", "-o", "dump.log", "-v4"],
                           capture_output=True, text=True, check=False)
        res["dump_s"] = time.perf_counter() - t
        if r.returncode != 0:
            log = os.path.join(dump_dir, "dump.log")
            tail = open(log).read()[-3000:] if os.path.exists(log) else r.stderr
            raise RuntimeError(f"criu dump failed rc={r.returncode}:\n{tail}")
        c2 = read_counter(counter)
        time.sleep(0.3)
        res["ticks_after_dump"] = read_counter(counter) - c2  # > 0: --leave-running kept it going

        # --- index the dump and compare ------------------------------------
        t = time.perf_counter()
        index = criu_images.page_index(dump_dir)
        res["index_s"] = time.perf_counter() - t
        pstree = criu_images.read_pstree(dump_dir)
        res["pstree"] = [(e.pid, e.ppid, len(e.threads)) for e in pstree]
        same = changed = new = total = 0
        changed_outside = new_outside = 0
        hash_s = 0.0
        dumped: set[int] = set()
        for pf in index:
            if pf.shmid is not None:
                total += len(pf.vaddr)
                new += len(pf.vaddr)
                continue
            with open(pf.path, "rb") as f:
                data = f.read()
            t = time.perf_counter()
            digests = pmem.digest_pages(data)
            hash_s += time.perf_counter() - t
            for va, d in zip(pf.vaddr.tolist(), digests):
                total += 1
                if pf.pid != nspid:
                    new += 1
                    continue
                dumped.add(va)
                w = warm.get(va)
                outside = not big.start <= va < big.end
                if w is None:
                    new += 1
                    new_outside += outside
                elif w == d:
                    same += 1
                else:
                    changed += 1
                    changed_outside += outside
        res.update(dump_pages=total, dump_mb=total * PAGE / 1e6, same=same, changed=changed, new=new,
                   same_fraction=same / total if total else 0.0, dump_hash_s=hash_s,
                   dump_hash_mb_s=total * PAGE / 1e6 / hash_s if hash_s else 0.0,
                   warm_not_in_dump=len(set(warm) - dumped),
                   changed_outside_data=changed_outside, new_outside_data=new_outside,
                   data_mapping_mb=(big.end - big.start) / 1e6,
                   pagemap_entries_flags=_flag_histogram(dump_dir))
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        shutil.rmtree(work, ignore_errors=True)

    print(f"child: {args.mb} MB data, churn {args.churn_mb_s} MB/s, gap {args.gap} s")
    print(f"raw read      : {res['read_mb']:.1f} MB in {res['read_s']:.2f} s = {res['read_mb_s']:.0f} MB/s"
          f" (child ticked {res['ticks_during_read']} times meanwhile)")
    hm = res["hash_mb_s"]
    print(f"hash 4K pages : sha256 {hm['sha256']:.0f} MB/s, blake2b-256 {hm['blake2b']:.0f} MB/s")
    print(f"warm read+hash: {res['warm_pages']} pages ({res['warm_pages'] * PAGE / 1e6:.1f} MB) in "
          f"{res['warm_s']:.2f} s = {res['warm_mb_s']:.0f} MB/s (child ticked {res['ticks_during_warm']} times)")
    print(f"criu dump     : {res['dump_s']:.2f} s, child ticked {res['ticks_after_dump']} times in 0.3 s after")
    print(f"dump pages    : {res['dump_pages']} ({res['dump_mb']:.1f} MB); pagemap flags {res['pagemap_entries_flags']}")
    print(f"  same        : {res['same']} ({100 * res['same_fraction']:.2f} %) -> references")
    print(f"  changed     : {res['changed']} ({res['changed_outside_data']} outside the"
          f" {res['data_mapping_mb']:.0f} MB data mapping)")
    print(f"  new         : {res['new']} ({res['new_outside_data']} outside it)")
    print(f"  warm-read but not in dump: {res['warm_not_in_dump']}")
    print(f"hash dump     : {res['dump_hash_s']:.2f} s = {res['dump_hash_mb_s']:.0f} MB/s;"
          f" index {res['index_s'] * 1e3:.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


def _flag_histogram(dump_dir: str) -> dict[str, int]:
    """Pages per pagemap flag combination (e.g. PRESENT|LAZY), all pagemaps."""
    names = {criu_images.PE_PRESENT: "PRESENT", criu_images.PE_LAZY: "LAZY", criu_images.PE_PARENT: "PARENT"}
    out: dict[str, int] = {}
    for _shm, _id, path in criu_images.pagemap_files(dump_dir):
        _pages_id, pes = criu_images.read_pagemap(path)
        for pe in pes:
            k = "|".join(n for b, n in sorted(names.items(), reverse=True) if pe.flags & b) or "0"
            out[k] = out.get(k, 0) + pe.nr_pages
    return out


if __name__ == "__main__":
    sys.exit(main())
