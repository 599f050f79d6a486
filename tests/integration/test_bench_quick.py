# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make bench QUICK=1` as part of the suite: the migration benchmark's smoke run.

Runs bench/migration_bench.py --quick (apache, unshaped and 10 Mbit/s, our
model controller stop-and-copy vs uncompressed serial, plus one pre-copy cell:
apache unshaped, warm pre-copy vs stop-and-copy; one run each) and fails if any migration in it
failed or the run took longer than CI allows (5 minutes). The session fixture
in conftest.py already holds the lab lock, so the harness is told not to take
it again (EDGEMIG_LAB_LOCK_HELD=1).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from labutil import ROOT, env, lab_is_up  # noqa: E402

pytestmark = pytest.mark.lab


def test_bench_quick(tmp_path):
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"
    out = tmp_path / "bench-quick.json"
    e = env()
    e["EDGEMIG_LAB_LOCK_HELD"] = "1"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "migration_bench.py"), "--quick",
                           "--json", str(out)], cwd=ROOT, env=e, capture_output=True, text=True, timeout=300, check=False)
    took = time.monotonic() - t0
    assert proc.returncode == 0, f"quick benchmark failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    assert took < 300
    data = json.loads(out.read_text())
    results = data["results"]
    assert {r["method"] for r in results} == {"model", "uncompressed", "precopy"}
    for r in results:
        assert r["ok"], r.get("error")
        assert r["client_downtime_s"] is not None and r["client_downtime_s"] > 0
        assert r["bytes_raw"] > 0 and r["bytes_wire"] > 0
    model = [r for r in results if r["method"] == "model" and r["group"] == "fig8"]
    unc = [r for r in results if r["method"] == "uncompressed"]
    assert max(r["ratio"] for r in model) < min(r["ratio"] for r in unc)
    # the pre-copy cell: warm rounds ran and the report says what the freeze still sent
    cell = [r for r in results if r["group"] == "precopy"]
    assert {(r["method"], r["rate_mbit"]) for r in cell} == {("precopy", 0), ("model", 0)}
    for r in cell:
        if r["method"] == "precopy":
            assert r["precopy"]["rounds"] and r["precopy"]["final"]["bytes_raw"] >= 0, r["precopy"]
        else:
            assert not r["precopy"].get("rounds"), r["precopy"]
