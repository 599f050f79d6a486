# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Final-round bytes with and without warm state, on a real CRIU dump (issue 11).

The child of bench/precopy_probe.py (``--mb`` of varied data, rewriting random
pages at ``--churn-mb-s``) runs; ``--rounds`` warm rounds go through a
pre-copy session (local_stream.LocalSession, both ends in-process, warm store on
/dev/shm), ``--gap`` seconds apart; then ``criu dump --leave-running`` into
/dev/shm, and the same dump is streamed twice: stop-and-copy (send_local) and
as the session's final round (P_WARM references). Prints the numbers.

Needs root and criu on PATH. Memory is secret: everything lives under
/dev/shm and is removed at the end.

    python3 bench/precopy_stream_bench.py [--mb 64] [--churn-mb-s 2] [--rounds 2] [--gap 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from local_stream import LocalSession, send_local  # noqa: E402
from precopy_probe import start_churner  # noqa: E402  (also sets up the collection path)

from ansible_collections.edgemig.migration.plugins.module_utils.sender import process_memory as pmem  # noqa: E402
from ansible_collections.edgemig.migration.plugins.module_utils.sender.precopy import predict_final_detail  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--churn-mb-s", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--gap", type=float, default=2.0)
    ap.add_argument("--policy", default="fixed:lz4:1")
    args = ap.parse_args()
    criu = shutil.which("criu")
    if os.geteuid() != 0 or not criu:
        print("needs root and criu on PATH", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="precopy-stream-", dir="/dev/shm")
    counter = os.path.join(work, "counter")
    child = start_churner(args.mb, args.churn_mb_s, counter)
    try:
        pid = child.pid
        pids = {pid: pmem.ns_pids(pid)[-1]}
        dirs = {name: os.path.join(work, name) for name in ("dump", "dst-plain", "dst-final", "warm")}
        for d in dirs.values():
            os.mkdir(d, 0o700)
        sess = LocalSession({"checkpoint": dirs["dst-final"], "warm": dirs["warm"]})
        for i in range(args.rounds):
            if i:
                time.sleep(args.gap)
            r = sess.warm_round([], pids, policy=args.policy)
            print(f"warm round {r['round']}: {r['pages_sent']} pages, raw {r['bytes_raw'] / 1e6:.1f} MB, "
                  f"wire {r['bytes_wire'] / 1e6:.1f} MB, {r['seconds']:.2f} s")
        time.sleep(args.gap)
        pred = predict_final_detail(sess.warm)
        print(f"predict_final: {pred['bytes'] / 1e6:.2f} MB ({pred['pages']} pages) in {pred['seconds']:.2f} s")
        t = time.perf_counter()
        r = subprocess.run([criu, "dump", "-t", str(pid), "-D", dirs["dump"], "--shell-job", "--leave-running",
                            "-o", "dump.log"], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"criu dump failed rc={r.returncode}: {r.stderr[-2000:]}")
        print(f"criu dump: {time.perf_counter() - t:.2f} s")
        os.unlink(os.path.join(dirs["dump"], "dump.log"))
        plain = send_local([("checkpoint", dirs["dump"])], {"checkpoint": dirs["dst-plain"]}, policy=args.policy)
        final = sess.stream([("checkpoint", dirs["dump"])], policy=args.policy)
        pages = sum(os.path.getsize(os.path.join(dirs["dump"], f)) for f in os.listdir(dirs["dump"])
                    if f.startswith("pages-"))
        same = all(open(os.path.join(dirs["dst-final"], f), "rb").read()
                   == open(os.path.join(dirs["dump"], f), "rb").read() for f in os.listdir(dirs["dump"]))
        print(f"dump: {pages / 1e6:.1f} MB of pages")
        print(f"stop-and-copy final: raw {plain['bytes_raw'] / 1e6:.1f} MB, wire {plain['bytes_wire'] / 1e6:.2f} MB, "
              f"{plain['seconds']:.2f} s")
        print(f"pre-copy final     : raw {final['bytes_raw'] / 1e6:.1f} MB, wire {final['bytes_wire'] / 1e6:.2f} MB, "
              f"{final['seconds']:.2f} s, {final['pages_referenced']} pages by reference, "
              f"{final['pages_literal']} literal; target identical: {same}")
        print(f"wire bytes saved at the freeze: {1 - final['bytes_wire'] / plain['bytes_wire']:.1%}")
        return 0 if same else 1
    finally:
        child.kill()
        child.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
