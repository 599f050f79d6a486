# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The sending side of a migration stream: read -> dedup -> compress -> send.

    read + page dedup (1 thread: tree_reader.walk_roots, Deduper)
      -> compress (pool, one worker per core: compress_chunk)
      -> send in order (1 thread: protocol.chunk_frame)
    and beside them a monitor thread that samples the network, feeds the
    controller and watches for a stalled link; the replies (acks, probe
    answers, the final result) arrive in AckState.

Stages overlap and every queue between them is bounded, so memory stays
flat whatever the checkpoint size and a slow network pushes back all the way
to the reader. ``pipelined=False`` runs the paper's serial baseline
(compress everything, then send) for comparison.

Pre-copy (issue 11): with ``warm=`` (a precopy.WarmState) the reader sends
only what differs from what the target holds (precopy.RoundItems), and
page-image chunks get P_WARM references to pages the target holds warm;
``warm_round=True`` ends the round with ROUND_END and waits for its
acknowledgement instead of END (the session goes on, nothing is restored).

lz4 and zstd release the GIL while they work, so a thread pool really uses
all cores; the Python left on the hot path is per chunk, not per byte.

Runs on the source only: it is never shipped to the target (the receiver
bundle is computed from receiver.py's imports, see receiver_install.py).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.edgemig.migration.plugins.module_utils.common.timeouts import keepalive_interval
from ansible_collections.edgemig.migration.plugins.module_utils.sender.precopy import RoundItems, WarmState
from ansible_collections.edgemig.migration.plugins.module_utils.sender.tree_reader import (
    entry_meta,
    open_walked,
    walk_roots,
)
from ansible_collections.edgemig.migration.plugins.module_utils.wire.codecs import compress
from ansible_collections.edgemig.migration.plugins.module_utils.wire.dump_layout import is_page_image
from ansible_collections.edgemig.migration.plugins.module_utils.wire.protocol import (
    BASE_VERSION,
    KEEPALIVE_FRAME,
    MAX_PROBE_FRAME,
    MAX_PROBES,
    P_LITERAL,
    P_REF,
    P_WARM,
    P_ZERO,
    PAGE,
    REF,
    T_ABORT,
    T_END,
    T_ENTRY,
    T_HELLO,
    T_PROBE,
    T_ROUND_END,
    VERSION,
    ZERO_PAGE,
    ProtocolError,
    chunk_frame,
    frame,
    json_frame,
)

CHUNK_SIZE = 1 << 20
DEDUP_TABLE_MAX = 4_000_000  # pages remembered for dedup (~16 GiB of pages)


class Deduper:
    """Turns page-image chunks into (page map, literal pages).

    Zero pages and pages identical to one already sent (anywhere earlier in
    the stream, far beyond any codec window) become a tag or a reference.
    """

    def __init__(self, max_pages: int = DEDUP_TABLE_MAX):
        self.table: dict[bytes, tuple[int, int]] = {}
        self.max_pages = max_pages
        self.zero_pages = 0
        self.dup_pages = 0
        self.warm_pages = 0

    def split(self, file_id: int, offset: int, data: bytes, warm_ref=None) -> tuple[bytes, bytes] | None:
        """(pagemap, literal) or None when nothing in the chunk dedups.

        ``warm_ref`` (pre-copy, final round): ``(ns pid, vaddr per page of
        the chunk, {vaddr: sha256 sent warm}, stats)``; a page whose SHA-256
        equals the warm copy's at the same (pid, vaddr) becomes P_WARM.
        """
        n_full = len(data) // PAGE
        tags = bytearray()
        literal = []
        hits = 0
        table = self.table
        if warm_ref is not None:
            warm_pid, warm_vaddrs, warm_digests, warm_stats = warm_ref
        for i in range(n_full):
            page = data[i * PAGE:(i + 1) * PAGE]
            if page == ZERO_PAGE:
                tags.append(P_ZERO)
                self.zero_pages += 1
                hits += 1
                continue
            if warm_ref is not None and i < len(warm_vaddrs):
                vaddr = int(warm_vaddrs[i])
                want = warm_digests.get(vaddr)
                if want is not None and hashlib.sha256(page).digest() == want:
                    tags.append(P_WARM)
                    tags += REF.pack(warm_pid, vaddr)
                    self.warm_pages += 1
                    warm_stats["pages_referenced"] += 1
                    hits += 1
                    continue
                warm_stats["pages_literal"] += 1
            digest = hashlib.blake2b(page, digest_size=16).digest()
            ref = table.get(digest)
            if ref is not None:
                tags.append(P_REF)
                tags += REF.pack(*ref)
                self.dup_pages += 1
                hits += 1
                continue
            if len(table) < self.max_pages:
                table[digest] = (file_id, offset + i * PAGE)
            tags.append(P_LITERAL)
            literal.append(page)
        if len(data) % PAGE:
            tags.append(P_LITERAL)
            literal.append(data[n_full * PAGE:])
        if not hits:
            return None
        return bytes(tags), b"".join(literal)


def compress_chunk(codec: str, level: int, raw: bytes, literal: bytes) -> tuple[str, int, bytes, int, float]:
    """(codec, level, payload, CRC32 of ``raw``, CPU seconds); runs on a worker thread."""
    t0 = time.thread_time()
    crc = zlib.crc32(raw)
    if codec == "none":
        payload = literal
    else:
        payload = compress(codec, level, literal)
        if len(payload) >= len(literal):
            # Compressing did not pay for this chunk: send it as it is.
            codec, level, payload = "none", 0, literal
    return codec, level, payload, crc, time.thread_time() - t0


class StreamSender:
    """Streams roots through ``send(bytes)``; see the module docstring."""

    def __init__(self, roots: list[tuple[str, str]], controller, send: Callable[[bytes], None],
                 acks: AckState, workers: int | None = None, chunk_size: int = CHUNK_SIZE,
                 dedup: bool = True, pipelined: bool = True, monitor=None,
                 interval: float = 0.25, stall_timeout: float = 0.0, min_inflight: int = 4 << 20,
                 on_stall: Callable[[str], None] | None = None, warm: WarmState | None = None,
                 warm_round: bool = False, memory_pids: dict[int, int] | None = None):
        self.roots = roots
        # Pre-copy: the session's state, and whether this is a warm round
        # (ROUND_END) or the final one (END). None: plain stop-and-copy.
        self.warm = warm
        self.warm_round = warm_round
        self.memory_pids = memory_pids
        self.round_items: RoundItems | None = None
        self._ack_base = 0  # acks are cumulative over a session's rounds
        self.ctl = controller
        self._send = send
        self.acks = acks
        self.workers = workers or os.cpu_count() or 1
        self.chunk_size = chunk_size
        # Warm references need the page walk even without dedup (a table of 0 pages).
        self.dedup = Deduper() if dedup else (Deduper(max_pages=0) if warm is not None else None)
        self.pipelined = pipelined
        self.monitor = monitor
        self.interval = interval
        self.stats = {"files": 0, "entries": 0, "bytes_raw": 0, "bytes_wire": 0, "chunks": 0,
                      "bytes_pages": 0, "bytes_layer": 0, "bytes_other": 0, "compress_cpu_s": 0.0,
                      "codecs": {}}
        self.timeline: list[dict] = []
        self._stop = threading.Event()
        self._t0 = 0.0
        self._lock = threading.Lock()
        # Stall watchdog: data sent but no acknowledgement for this long ->
        # abort (a dropped link makes TCP hang for many minutes otherwise).
        self.stall_timeout = stall_timeout
        self.min_inflight = min_inflight
        self._ack_rate = 0.0  # raw bytes/s the receiver confirms, EWMA (monitor thread)
        self.on_stall = on_stall
        self.stalled: str | None = None

    # -- producing
    def _items(self) -> Iterator[tuple]:
        if self.warm is not None:
            self.round_items = RoundItems(self.warm, self.roots, self.chunk_size, self.memory_pids,
                                          final=not self.warm_round, stop=self._stop)
            for item in self.round_items:
                if item[0] == "entry":
                    # END / ROUND_END count files (and mem batches) as the receiver does.
                    if item[1].get("kind") in ("file", "mem"):
                        self.stats["files"] += 1
                    self.stats["entries"] += 1
                yield item
            return
        file_id = 0
        # A regular file with more than one name within a root travels once;
        # its other names as hard links to the first (kept as links on the target).
        first_name: dict[tuple[str, int, int], str] = {}
        for root, rel, full, st in walk_roots(self.roots):
            if self._stop.is_set():
                return
            if stat.S_ISSOCK(st.st_mode):
                # A unix socket file in the writable layer (mysqld.sock): it
                # can not be copied, and CRIU binds the restored socket again.
                self.stats["skipped_sockets"] = self.stats.get("skipped_sockets", 0) + 1
                continue
            link = None
            pages = False
            meta_id = None
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                link = first_name.get((root, st.st_dev, st.st_ino))
                if link is None:
                    first_name[(root, st.st_dev, st.st_ino)] = rel
            if link is None and stat.S_ISREG(st.st_mode):
                meta_id = file_id
                file_id += 1
                pages = is_page_image(root, rel)
            meta = entry_meta(root, rel, full, st, meta_id, link, pages)
            self.stats["entries"] += 1
            yield ("entry", meta)
            if meta["kind"] != "file":
                continue
            self.stats["files"] += 1
            kind = "bytes_pages" if pages else ("bytes_other" if root == "checkpoint" else "bytes_layer")
            # Through an fd checked against the walk: never a file swapped in meanwhile.
            with open(open_walked(full, st), "rb", buffering=0) as fh:
                offset = 0
                while True:
                    raw = fh.read(self.chunk_size)
                    if not raw:
                        break
                    self.stats[kind] += len(raw)
                    yield ("chunk", meta_id, offset, raw, pages, None)
                    offset += len(raw)

    def _submit(self, item: tuple, pool: ThreadPoolExecutor) -> tuple:
        if item[0] != "chunk":
            return item
        _unused, fid, offset, raw, pages, warm_ref = item
        pagemap, literal = b"", raw
        if pages and self.dedup is not None:
            split = self.dedup.split(fid, offset, raw, warm_ref)
            if split is not None:
                pagemap, literal = split
        if literal and self.ctl.wants_sample():
            # Probe before choosing: a decision the sample triggers applies
            # to this very chunk (the first chunk would otherwise always go
            # out with the initial guess).
            self.ctl.sample(literal)
        codec, level = self.ctl.current()
        fut = pool.submit(compress_chunk, codec, level, raw, literal)
        return ("chunk", fid, offset, len(raw), len(literal), pagemap, fut)

    # -- sending
    def _emit(self, item: tuple) -> None:
        if item[0] == "entry":
            data = json_frame(T_ENTRY, item[1])
        else:
            _unused, fid, offset, raw_len, lit_len, pagemap, fut = item
            codec, level, payload, crc, cpu = fut.result()
            data = chunk_frame(fid, offset, codec, level, raw_len, crc, payload, lit_len, pagemap)
            self.ctl.observe_chunk(codec, level, lit_len, len(payload), cpu)
            self._throttle()
            with self._lock:
                self.stats["chunks"] += 1
                self.stats["bytes_raw"] += raw_len
                self.stats["compress_cpu_s"] += cpu
                c = self.stats["codecs"].setdefault(f"{codec}:{level}", [0, 0])
                c[0] += raw_len
                c[1] += len(payload)
        self._write(data)

    def _throttle(self) -> None:
        """Keep at most ~0.5 s of data (and >= 4 MiB) unacknowledged.

        Without this, socket buffers and the SSH window swallow tens of MiB
        compressed with the controller's first guess before the first network
        sample arrives; with it, a new decision applies to data still unsent.
        It also bounds memory on the receiver side.
        """
        if not self.pipelined:
            return
        limit = max(self.min_inflight, int(self._ack_rate * 0.5))
        while not self.acks.done.is_set():
            sent = self.stats["bytes_raw"] + self._ack_base
            if sent - self.acks.acked <= limit:
                return
            self.acks.wait_below(sent, limit)

    def _write(self, data: bytes) -> None:
        if self.acks.error:
            raise ProtocolError(f"receiver failed: {self.acks.error}")
        self._send(data)
        with self._lock:
            self.stats["bytes_wire"] += len(data)

    def _check_stall(self, now: float, state: list) -> None:
        """``state`` = [last acked value, time it last moved]."""
        acked = self.acks.acked
        with self._lock:
            outstanding = self.stats["bytes_raw"] > acked - self._ack_base
        if acked != state[0] or not outstanding or self.acks.done.is_set():
            state[0], state[1] = acked, now
            return
        if now - state[1] >= self.stall_timeout and self.stalled is None:
            self.stalled = (f"transfer stalled: the receiver acknowledged nothing for "
                            f"{self.stall_timeout:g} s (link down or receiver hung); aborted")
            self.acks.error = self.acks.error or self.stalled
            self.acks.done.set()
            if self.on_stall is not None:
                try:
                    self.on_stall(self.stalled)  # e.g. close the channel: unblocks a stuck send
                except Exception:
                    pass

    def _monitor_loop(self) -> None:
        last_t, last_raw, last_wire = time.monotonic(), 0, 0
        last_acked = self._ack_base
        stall_state = [self._ack_base, last_t]
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            acked_now = self.acks.acked
            rate = (acked_now - last_acked) / max(now - last_t, 1e-6)
            self._ack_rate = rate if not self._ack_rate else 0.5 * self._ack_rate + 0.5 * rate
            last_acked = acked_now
            if self.stall_timeout:
                self._check_stall(now, stall_state)
            sample = None
            if self.monitor is not None:
                # The receiver acknowledges raw bytes written; the link
                # carries wire bytes. Convert, or the model would take raw
                # goodput (up to 1/ratio times the link) for the link rate.
                with self._lock:
                    raw_sent, wire_sent = self.stats["bytes_raw"], self.stats["bytes_wire"]
                acked = self.acks.acked - self._ack_base
                if raw_sent > 0:
                    acked = int(acked * min(1.0, wire_sent / raw_sent))
                try:
                    sample = self.monitor.sample(now, acked)
                except OSError:
                    sample = None
                if sample is not None:
                    self.ctl.observe_network(sample)
            with self._lock:
                raw, wire = self.stats["bytes_raw"], self.stats["bytes_wire"]
            dt = max(now - last_t, 1e-6)
            codec, level = self.ctl.current()
            point = {"t": round(now - self._t0, 3), "codec": codec, "level": level,
                     "raw_Bps": round((raw - last_raw) / dt), "wire_Bps": round((wire - last_wire) / dt),
                     "bytes_raw": raw, "bytes_wire": wire, "acked": self.acks.acked - self._ack_base}
            if sample is not None:
                point.update({"rtt_ms": round(sample.rtt_s * 1000, 3), "loss": round(sample.loss, 4),
                              "goodput_Bps": round(sample.goodput_Bps)})
            self.timeline.append(point)
            last_t, last_raw, last_wire = now, raw, wire

    def _wait_done(self, timeout: float, round_no: int | None = None) -> bool:
        # The monitor thread is stopped once everything is sent; keep the
        # stall watchdog running until the receiver has acknowledged it all.
        # A warm round is done when its ROUND_END is acknowledged.
        def done(wait: float) -> bool:
            if round_no is None:
                return self.acks.done.wait(wait)
            # An error ends the wait too (checked by the caller).
            return self.acks.wait_round(round_no, wait) or self.acks.done.is_set()
        if not self.stall_timeout:
            return done(timeout)
        deadline = time.monotonic() + timeout
        state = [self.acks.acked, time.monotonic()]
        while not done(min(self.interval, max(deadline - time.monotonic(), 0))):
            now = time.monotonic()
            if now >= deadline:
                return False
            self._check_stall(now, state)
        return True

    def _beat_interval(self) -> float | None:
        """Seconds between KEEPALIVE frames when nothing else goes out: pre-copy sessions
        only (their receiver's watchdog is armed from the first round's HELLO on), None
        when no stall timeout is set (the receiver then has no watchdog either)."""
        if self.warm is None or not self.stall_timeout:
            return None
        return keepalive_interval(self.stall_timeout)

    def _hello(self) -> bytes | None:
        names = [name for name, _unused in self.roots]
        if self.warm is None:
            return json_frame(T_HELLO, {"version": BASE_VERSION, "roots": names})
        if self.warm.started:
            return None  # later rounds of a session: HELLO went out with the first
        self.warm.started = True
        return json_frame(T_HELLO, {"version": VERSION, "roots": names, "precopy": True})

    def run(self, timeout: float = 3600.0) -> dict:
        if self.warm is not None:
            self.warm.check_usable()
        try:
            return self._run(timeout)
        except BaseException as exc:
            if self.warm is not None:
                # The target may hold part of this round: the state no longer
                # describes it. The session is over anyway (ABORT went out).
                self.warm.broken = str(exc)[:200] or type(exc).__name__
            raise

    def _run(self, timeout: float) -> dict:
        self._t0 = time.monotonic()
        self._ack_base = self.acks.acked
        round_no = len(self.warm.rounds) + 1 if self.warm is not None and self.warm_round else None
        mon = threading.Thread(target=self._monitor_loop, name="edgemig-monitor", daemon=True)
        mon.start()
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="edgemig-compress")
        try:
            hello = self._hello()
            if hello is not None:
                self._write(hello)
            t_first = self._send_pipelined(pool) if self.pipelined else self._send_serial(pool)
            self._write(self._closing_frame(round_no))
            t_sent = time.monotonic() - self._t0
            self._confirm(timeout, round_no)
        except BaseException as exc:
            self._abort(exc, round_no)
            raise
        finally:
            self._stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            mon.join()
        return self._summary(t_first, t_sent, round_no)

    def _send_pipelined(self, pool: ThreadPoolExecutor) -> float | None:
        """Read and compress on other threads while this one sends in order; returns the first send's time."""
        # Bounded in-order queue of futures: workers run ahead of the sender
        # by at most 2 chunks per worker.
        pending: queue.Queue = queue.Queue(maxsize=self.workers * 2 + 2)
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                for item in self._items():
                    pending.put(self._submit(item, pool))
            except BaseException as exc:  # handed to the sending thread
                errors.append(exc)
            finally:
                pending.put(None)

        prod = threading.Thread(target=produce, name="edgemig-reader", daemon=True)
        prod.start()
        try:
            t_first = self._send_pending(pending)
        finally:
            self._stop.set()
            while prod.is_alive():  # unblock the producer if we failed
                try:
                    pending.get(timeout=0.05)
                except queue.Empty:
                    pass
            prod.join()
        if errors:
            raise errors[0]
        return t_first

    def _send_pending(self, pending: queue.Queue) -> float | None:
        """Send the producer's items until its None; returns when the first one went out."""
        t_first = None
        beat = self._beat_interval()
        while True:
            try:
                item = pending.get(timeout=beat)
            except queue.Empty:
                # The reader is walking what did not change (a later warm
                # round re-hashing memory and volumes): nothing to send for a
                # while, but the receiver's watchdog counts from HELLO.
                self._write(KEEPALIVE_FRAME)
                continue
            if item is None:
                return t_first
            if t_first is None:
                t_first = time.monotonic() - self._t0
            self._emit(item)

    def _send_serial(self, pool: ThreadPoolExecutor) -> float:
        """The paper's serial baseline: compress everything, then send; returns the first send's time."""
        done = []
        beat = self._beat_interval()
        with keepalive(self._send, beat) if beat else contextlib.nullcontext():
            for item in self._items():
                sub = self._submit(item, pool)
                if sub[0] == "chunk":
                    sub[-1].result()
                done.append(sub)
        t_first = time.monotonic() - self._t0
        for sub in done:
            self._emit(sub)
        return t_first

    def _closing_frame(self, round_no: int | None) -> bytes:
        """ROUND_END after a warm round, END after the last one (with deletes in a pre-copy session)."""
        if self.warm is None:
            return json_frame(T_END, {"files": self.stats["files"], "bytes": self.stats["bytes_raw"]})
        deleted = self.round_items.stats["files_deleted"] if self.round_items else 0
        if round_no is not None:
            return json_frame(T_ROUND_END, {"round": round_no, "files": self.stats["files"],
                                            "bytes": self.stats["bytes_raw"], "deleted": deleted})
        return json_frame(T_END, {"files": self.stats["files"], "bytes": self.stats["bytes_raw"],
                                  "deleted": deleted})

    def _confirm(self, timeout: float, round_no: int | None) -> None:
        """Wait for the receiver to verify what was sent; raises on a timeout, a stall or its error."""
        if not self._wait_done(timeout, round_no):
            raise ProtocolError("receiver did not confirm the stream in time")
        if self.stalled:
            raise ProtocolError(self.stalled)
        if self.acks.error:
            raise ProtocolError(f"receiver failed: {self.acks.error}")

    def _abort(self, exc: BaseException, round_no: int | None) -> None:
        """Tell the receiver why the stream stops, unless it already finished (or verified this warm round)."""
        if self.acks.done.is_set() or (self.warm is not None and self.warm_round and round_no in self.acks.rounds):
            return
        try:
            self._send(json_frame(T_ABORT, {"reason": str(exc)[:500]}))
        except Exception:
            pass

    def _summary(self, t_first: float | None, t_sent: float, round_no: int | None) -> dict:
        """The run's result: stats, timings, dedup, controller and receiver; a pre-copy round's own fields."""
        total = time.monotonic() - self._t0
        out = dict(self.stats)
        out.update({"seconds": round(total, 4), "first_byte_s": round(t_first or 0.0, 4),
                    "last_byte_s": round(t_sent, 4),
                    "zero_pages": self.dedup.zero_pages if self.dedup else 0,
                    "dup_pages": self.dedup.dup_pages if self.dedup else 0,
                    "ratio": round(out["bytes_wire"] / out["bytes_raw"], 4) if out["bytes_raw"] else 1.0,
                    "workers": self.workers, "pipelined": self.pipelined,
                    "controller": self.ctl.describe(), "receiver": self.acks.result})
        if self.warm is not None:
            self._precopy_summary(out, round_no)
        return out

    def _precopy_summary(self, out: dict, round_no: int | None) -> None:
        """Add the round's item counts to ``out``; a warm round is also recorded in the session's state."""
        ri = self.round_items.stats if self.round_items else {}
        out.update({k: ri.get(k, 0) for k in ("files_sent", "files_patched", "files_deleted", "unchanged",
                                              "pages_sent", "pages_referenced", "pages_literal",
                                              "bytes_memory")})
        for k in ("bytes_pages", "bytes_layer", "bytes_other"):
            out[k] = ri.get(k, 0)
        out["round"] = round_no or "final"
        if round_no is not None:
            out["receiver"] = self.acks.rounds.get(round_no)
            self.warm.rounds.append({k: out[k] for k in (
                "round", "bytes_raw", "bytes_wire", "files_sent", "files_patched", "files_deleted",
                "pages_sent", "pages_referenced", "seconds")})
            self.warm.roots = list(self.roots)
            self.warm.memory_pids = dict(self.memory_pids) if self.memory_pids else None


class AckState:
    """What the receiver told us, updated by the reply-reader thread."""

    def __init__(self):
        self.acked = 0
        self.result: dict | None = None
        self.error: str | None = None
        self.done = threading.Event()
        self.probes: list[tuple[float, int]] = []  # (arrival time, bytes) of probe answers
        self.rounds: dict[int, dict] = {}  # pre-copy: warm rounds the receiver verified
        self._moved = threading.Condition()

    def feed_line(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if "probe" in msg:
            self.probes.append((time.monotonic(), int(msg["probe"])))
        if "ack" in msg:
            self.acked = int(msg["ack"])
        if "round" in msg and "error" not in msg:
            self.rounds[int(msg["round"])] = msg
        if "error" in msg:
            self.error = str(msg["error"])
            self.done.set()
        elif msg.get("ok"):
            self.result = msg
            self.done.set()
        with self._moved:
            self._moved.notify_all()

    def wait_below(self, sent: int, limit: int, timeout: float = 0.25) -> None:
        """Block while more than ``limit`` sent bytes are unacknowledged (or until ``timeout``)."""
        with self._moved:
            self._moved.wait_for(lambda: sent - self.acked <= limit or self.done.is_set(), timeout)

    def wait_round(self, round_no: int, timeout: float) -> bool:
        """True once the receiver verified warm round ``round_no``; False on timeout or end."""
        with self._moved:
            self._moved.wait_for(lambda: round_no in self.rounds or self.done.is_set(), timeout)
        return round_no in self.rounds and not self.error

    def wait_probes(self, count: int, timeout: float) -> float | None:
        """Arrival time of the ``count``-th probe answer, None on timeout or end."""
        with self._moved:
            self._moved.wait_for(lambda: len(self.probes) >= count or self.done.is_set(), timeout)
        return self.probes[count - 1][0] if len(self.probes) >= count else None


@contextlib.contextmanager
def keepalive(send: Callable[[bytes], None], interval: float) -> Iterator[None]:
    """While the body runs, send an empty KEEPALIVE frame every ``interval`` s.

    For the gaps of a pre-copy session in which the sender is busy with
    nothing to send: predicting the final round (it re-reads the volumes and
    hashes memory, which took more than the receiver's 2 x stall_timeout for a
    grown MariaDB on 2 cores) and the checkpoint after the last warm round.
    The receiver's idle watchdog counts from HELLO on and would otherwise end
    a healthy session. Only valid after a version-2 HELLO, and only while no
    round is being sent: frames must not interleave. A send error ends the
    beats quietly; the next round or the final stream reports the link.
    """
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                send(KEEPALIVE_FRAME)
            except Exception:  # pylint: disable=broad-exception-caught  # reported by the next round
                return

    beater = threading.Thread(target=beat, name="edgemig-keepalive", daemon=True)
    beater.start()
    try:
        yield
    finally:
        stop.set()
        beater.join(timeout=interval + 10.0)


def probe_link(send: Callable[[bytes], None], acks: AckState, *, max_bytes: int = MAX_PROBE_FRAME,
               min_seconds: float = 0.2, budget_s: float = 1.5, measure: bool = True) -> dict:
    """Estimate the link rate with PROBE frames before the stream starts.

    Two 1-byte probes first (the first answers once the receiver is up, the
    second's round trip is the RTT), then filler of doubling size from
    64 KiB until one probe takes ``min_seconds`` or ``max_bytes`` is reached; the last probe gives the
    rate: bytes / (time to its answer - RTT). Meant to run while the service
    still runs (before the freeze), so it costs no downtime; the model
    controller starts from its result instead of a guess. Returns
    ``{"rate_Bps", "rtt_s", "bytes", "seconds"}``; ``rate_Bps`` is None when
    the receiver did not answer within ``budget_s``. ``measure=False`` only
    waits until the receiver answers (it is up and reading).
    """
    t_start = time.monotonic()
    deadline = t_start + budget_s
    n_sent = 0

    def one(size: int) -> float | None:
        nonlocal n_sent
        t0 = time.monotonic()
        send(frame(T_PROBE, bytes(size)))
        n_sent += 1
        t_ans = acks.wait_probes(n_sent, max(0.0, deadline - t0))
        return None if t_ans is None else t_ans - t0

    out = {"rate_Bps": None, "rtt_s": None, "bytes": 0, "seconds": 0.0}
    # The first answer also waits for the receiver to start (Python, imports:
    # ~0.25 s); the second one is the round trip.
    rtt = one(1)
    if rtt is not None and measure:
        rtt = one(1)
    if rtt is not None and measure:
        out["rtt_s"] = round(rtt, 6)
        size = 64 << 10
        while n_sent < MAX_PROBES:
            took = one(size)
            if took is None:
                break
            out["bytes"] += size
            out["rate_Bps"] = size / max(took - rtt, took * 0.1, 1e-6)
            if took >= min_seconds or size >= max_bytes or time.monotonic() + 2 * took > deadline:
                break
            size *= 2
    out["seconds"] = round(time.monotonic() - t_start, 4)
    return out
