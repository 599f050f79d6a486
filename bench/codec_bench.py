# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Codec table on page-like data: ratio, compress and decompress MB/s.

    python3 bench/codec_bench.py                    # memory of a python+numpy process
    python3 bench/codec_bench.py pages-1.img ...    # e.g. real CRIU page images

Without files, a child Python process (numpy, json, sqlite imported, some
heap objects built) dumps its own *present* pages of anonymous and writable
private mappings (what CRIU would dump) through /proc/self/pagemap and
/proc/self/mem.  Data is cut into ``--chunk`` sized chunks like the pipeline
does; speeds are single-thread wall-clock MB/s of raw data, best of
``--repeat`` runs.  ``--threads N`` adds a column with the aggregate
compression speed of N threads (checks that the codec releases the GIL).
"""
from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from collection_path import ensure_collection_path  # noqa: E402

ensure_collection_path()

from ansible_collections.edgemig.migration.plugins.module_utils.wire import codecs  # noqa: E402

DUMPER = r'''
import json, sqlite3, struct, sys, zlib, decimal
import numpy
heap = [json.dumps({"k%d" % i: list(range(i % 50))}) for i in range(20000)]
arr = numpy.arange(200000, dtype=numpy.float64) * 1.5
out = open(sys.argv[1], "wb")
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", buffering=0) as mem, \
        open("/proc/self/pagemap", "rb", buffering=0) as pm:
    for line in maps:
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        name = parts[5] if len(parts) > 5 else ""
        perms = parts[1]
        if "r" not in perms or name.startswith("[v"):
            continue
        if name and not name.startswith("[") and "w" not in perms:
            continue  # read-only file mappings: CRIU does not dump those
        pm.seek(lo // 4096 * 8)
        ents = pm.read((hi - lo) // 4096 * 8)
        for i in range(len(ents) // 8):
            if not (struct.unpack_from("<Q", ents, i * 8)[0] >> 63) & 1:
                continue  # not present
            try:
                mem.seek(lo + i * 4096)
                out.write(mem.read(4096))
            except OSError:
                pass
'''

CANDIDATES = (
    [("none", 0), ("wkdm", 0)]
    + [("lz4", lv) for lv in range(1, 10)]
    + [("zstd", lv) for lv in (-5, -3, -1, 1, 2, 3, 6, 9)]
)


def page_like() -> bytes:
    with tempfile.NamedTemporaryFile(prefix="codec-bench-", suffix=".bin") as f:
        subprocess.run([sys.executable, "-c", DUMPER, f.name], check=True)
        return open(f.name, "rb").read()


def best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _unused in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--chunk", type=int, default=1 << 20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--only", help="comma list like lz4:1,zstd:3")
    args = ap.parse_args()

    if args.files:
        data = b"".join(open(p, "rb").read() for p in args.files)
        src = ", ".join(args.files)
    else:
        data = page_like()
        src = "present anon/private pages of a python+numpy process"
    chunks = [data[i:i + args.chunk] for i in range(0, len(data), args.chunk)]
    zero_pages = sum(1 for i in range(0, len(data) - 4095, 4096) if data[i:i + 4096].count(0) == 4096)
    print("data: %s: %.1f MiB, %d chunks of %d KiB, %.1f %% all-zero pages, %d cpus"
          % (src, len(data) / 2**20, len(chunks), args.chunk // 1024,
             100.0 * zero_pages / max(1, len(data) // 4096), os.cpu_count() or 0))
    cands = CANDIDATES
    if args.only:
        cands = [(c, int(lv)) for c, lv in (x.split(":") for x in args.only.split(","))]
    print("%-8s %6s %7s %10s %10s %12s" % ("codec", "level", "ratio", "comp MB/s", "dec MB/s", "comp x%d MB/s" % args.threads))
    pool = ThreadPoolExecutor(args.threads)
    for codec, level in cands:
        comp = [codecs.compress(codec, level, c) for c in chunks]
        ratio = sum(map(len, comp)) / len(data)
        tc = best_time(lambda codec=codec, level=level: [codecs.compress(codec, level, c) for c in chunks], args.repeat)
        td = best_time(lambda codec=codec, level=level, comp=comp:
                       [codecs.decompress(codec, level, z, len(c)) for z, c in zip(comp, chunks)], args.repeat)
        tp = best_time(lambda codec=codec, level=level:
                       list(pool.map(functools.partial(codecs.compress, codec, level), chunks)), args.repeat)
        mb = len(data) / 1e6
        print("%-8s %6d %7.3f %10.0f %10.0f %12.0f" % (codec, level, ratio, mb / tc, mb / td, mb / tp))
    pool.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
