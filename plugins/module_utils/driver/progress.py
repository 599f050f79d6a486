# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a running migration is, written to a small JSON file for whoever polls it.

edge_migrate runs for as long as its state takes to cross the link (a minute
and more on a slow uplink). Its action plugin runs it asynchronously and reads
this file every few seconds to print phase, bytes, rate and expected end. The
writer is a daemon thread that only reads counters the stream keeps anyway:
nothing on the downtime path waits for it.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable


def stream_progress(phase: str, total: int, timeline: list) -> dict:
    """Progress fields from the stream's latest timeline point (stream_sender's monitor)."""
    out: dict = {"phase": phase, "total_bytes": int(total)}
    if timeline:
        last = timeline[-1]
        sent = int(last.get("bytes_raw", 0))
        acked = int(last.get("acked", sent))
        # The raw rate over the last second or so: points come every 0.25 s.
        recent = timeline[-4:]
        span = float(recent[-1]["t"]) - float(recent[0]["t"]) if len(recent) > 1 else 0.0
        raw_rate = (int(recent[-1].get("bytes_raw", 0)) - int(recent[0].get("bytes_raw", 0))) / span if span > 0 \
            else float(last.get("raw_Bps", 0))
        out.update({"sent_bytes": sent, "acked_bytes": acked, "wire_bytes": int(last.get("bytes_wire", 0)),
                    "raw_Bps": round(raw_rate), "wire_Bps": int(last.get("wire_Bps", 0)),
                    "codec": f"{last.get('codec', '?')}:{last.get('level', 0)}"})
        if raw_rate > 0 and total > acked:
            out["eta_s"] = round((total - acked) / raw_rate, 1)
    return out


class ProgressFile:
    """A JSON file rewritten atomically (a reader never sees half a file)."""

    def __init__(self, path: str | None):
        self.path = path
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, fields: dict) -> None:
        if not self.path:
            return
        data = {"elapsed_s": round(time.monotonic() - self._t0, 1), **fields}
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.path)
        except OSError:
            pass  # progress is a courtesy: never fail a migration over it

    def follow(self, fields: Callable[[], dict], interval: float = 1.0) -> None:
        """Rewrite the file from ``fields()`` every ``interval`` s until stop()."""
        if not self.path:
            return
        self.stop()
        self._stop.clear()

        def loop() -> None:
            while True:
                try:
                    self.write(fields())
                except Exception:  # a counter read mid-update: try again next time
                    pass
                if self._stop.wait(interval):
                    return

        self._thread = threading.Thread(target=loop, name="edgemig-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2)
            self._thread = None

    def remove(self) -> None:
        self.stop()
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass
