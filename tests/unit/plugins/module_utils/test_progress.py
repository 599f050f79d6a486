# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json
import time

from ansible_collections.edgemig.migration.plugins.action.edge_migrate import progress_line
from ansible_collections.edgemig.migration.plugins.module_utils.driver.progress import ProgressFile, stream_progress


def points(rate_Bps: int, n: int = 5) -> list[dict]:
    return [{"t": i * 0.25, "bytes_raw": int(i * 0.25 * rate_Bps), "acked": int(i * 0.25 * rate_Bps),
             "bytes_wire": int(i * 0.25 * rate_Bps / 4), "wire_Bps": rate_Bps // 4, "codec": "zstd", "level": 3}
            for i in range(n)]


def test_stream_progress_rate_and_expected_end():
    p = stream_progress("streaming", 10_000_000, points(1_000_000))
    assert p["acked_bytes"] == 1_000_000 and p["raw_Bps"] == 1_000_000
    assert p["eta_s"] == 9.0 and p["codec"] == "zstd:3"


def test_stream_progress_before_the_first_sample():
    assert stream_progress("streaming", 5, []) == {"phase": "streaming", "total_bytes": 5}


def test_progress_line_reads_like_a_sentence():
    line = progress_line({"phase": "streaming", "acked_bytes": 38_200_000, "total_bytes": 155_000_000,
                          "raw_Bps": 612_500, "eta_s": 24.2, "codec": "zstd:3", "elapsed_s": 12})
    assert line == "streaming, 38.2/155.0 MB, 4.9 Mbit/s, ~24 s left, (zstd:3), 12 s"
    assert progress_line({"phase": "checkpoint (service frozen)"}) == "checkpoint (service frozen)"


def test_progress_file_is_rewritten_and_removed(tmp_path):
    path = tmp_path / "p.json"
    pf = ProgressFile(str(path))
    counter = {"n": 0}

    def fields():
        counter["n"] += 1
        return {"phase": "streaming", "n": counter["n"]}

    pf.follow(fields, interval=0.01)
    deadline = time.monotonic() + 5
    while counter["n"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    pf.stop()
    assert json.loads(path.read_text())["phase"] == "streaming"
    pf.remove()
    assert not path.exists()
    ProgressFile(None).write({"phase": "x"})   # no path: nothing, no error
