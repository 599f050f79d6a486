# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The stream's pipeline through an in-process pipe, both ends in this process (tests and
benchmarks without SSH): what SshStream is over SSH, minus the launcher and the ticket."""
from __future__ import annotations

import contextlib
import json
import os
import threading

from ansible_collections.edgemig.migration.plugins.module_utils.receiver.stream_receiver import receive_stream
from ansible_collections.edgemig.migration.plugins.module_utils.sender.controller import make_controller
from ansible_collections.edgemig.migration.plugins.module_utils.sender.netmon import NetMonitor
from ansible_collections.edgemig.migration.plugins.module_utils.sender.precopy import WarmState
from ansible_collections.edgemig.migration.plugins.module_utils.sender.stream_sender import (
    AckState,
    StreamSender,
    keepalive,
)


def send_local(src_roots: list[tuple[str, str]], dest_roots: dict[str, str], policy: str = "model",
               workers: int = 0, **kwargs) -> dict:
    """The same pipeline through an in-process pipe (tests, benchmarks without SSH)."""
    corrupt_hook = kwargs.pop("corrupt_hook", None)
    rfd, wfd = os.pipe()
    reader = os.fdopen(rfd, "rb")
    writer = os.fdopen(wfd, "wb", buffering=0)
    acks = AckState()
    outcome: dict = {}

    def run_receiver() -> None:
        try:
            outcome["summary"] = receive_stream(reader.read, lambda m: acks.feed_line(json.dumps(m).encode()),
                                                dest_roots, workers=workers or None,
                                                corrupt_hook=corrupt_hook)
            outcome["summary"]["ok"] = True
            acks.feed_line(json.dumps(outcome["summary"]).encode())
        except Exception as exc:
            if not getattr(exc, "reported", False):
                acks.feed_line(json.dumps({"error": str(exc)}).encode())
            # Keep draining so the sender is never stuck on a full pipe.
            while reader.read(1 << 16):
                pass

    rt = threading.Thread(target=run_receiver, daemon=True)
    rt.start()
    ctl = make_controller(policy, workers or os.cpu_count() or 1)
    sender = StreamSender(src_roots, ctl, writer.write, acks, workers=workers or None,
                          monitor=NetMonitor(None), **kwargs)
    try:
        result = sender.run()
    finally:
        writer.close()
        rt.join()
        reader.close()
    result["timeline"] = sender.timeline
    return result


class LocalSession:
    """A pre-copy session through an in-process pipe: warm rounds, then the final round.

    What ``send_local`` is to ``SshStream.stream``, for ``warm_round`` +
    ``stream(warm=...)`` (tests and benchmarks). The receiver runs in a
    thread; ``stream`` returns once END was verified and the receiver ended.
    ``warm_on_disk`` lets the unit tests keep the warm root outside tmpfs. A precopy.WarmSession
    with SshStream's defaults; ``keepalive_s``: the beat between rounds (the in-process receiver
    has no watchdog to size it from).
    """

    def __init__(self, dest_roots: dict[str, str], workers: int = 0, warm_on_disk: bool = False,
                 keepalive_s: float = 0.05):
        rfd, wfd = os.pipe()
        self._reader = os.fdopen(rfd, "rb")
        self._writer = os.fdopen(wfd, "wb", buffering=0)
        self.acks = AckState()
        self.workers = workers
        self.warm = WarmState()
        self.keepalive_s = keepalive_s
        self.outcome: dict = {}

        def run_receiver() -> None:
            try:
                self.outcome["summary"] = receive_stream(
                    self._reader.read, lambda m: self.acks.feed_line(json.dumps(m).encode()), dest_roots,
                    workers=workers or None, warm_on_disk=warm_on_disk)
                self.outcome["summary"]["ok"] = True
                self.acks.feed_line(json.dumps(self.outcome["summary"]).encode())
            except Exception as exc:
                self.outcome["error"] = exc
                if not getattr(exc, "reported", False):
                    self.acks.feed_line(json.dumps({"error": str(exc)}).encode())
                while self._reader.read(1 << 16):
                    pass

        self._thread = threading.Thread(target=run_receiver, daemon=True)
        self._thread.start()

    def _run(self, roots: list[tuple[str, str]], policy: str, warm_round: bool,
             memory_pids: dict[int, int] | None, **kwargs) -> dict:
        ctl = make_controller(policy, self.workers or os.cpu_count() or 1)
        sender = StreamSender(roots, ctl, self._writer.write, self.acks, workers=self.workers or None,
                              monitor=NetMonitor(None), warm=self.warm, warm_round=warm_round,
                              memory_pids=memory_pids, **kwargs)
        result = sender.run()
        result["timeline"] = sender.timeline
        return result

    def warm_round(self, roots: list[tuple[str, str]], memory_pids: dict[int, int] | None = None, *,
                   policy: str = "model", **kwargs) -> dict:
        return self._run(roots, policy, True, memory_pids, **kwargs)

    def keepalive(self):
        """As SshStream.keepalive (the in-process receiver has no watchdog; the frames still cross)."""
        return keepalive(self._writer.write, self.keepalive_s) if self.warm.started else contextlib.nullcontext()

    def stream(self, roots: list[tuple[str, str]], *, policy: str = "model", **kwargs) -> dict:
        try:
            return self._run(roots, policy, False, None, **kwargs)
        finally:
            self.close()

    def close(self) -> None:
        if not self._writer.closed:
            self._writer.close()
        self._thread.join()
        self._reader.close()
