# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The receiving side of a migration stream: read frames -> decompress -> write.

    read frames (caller's thread: protocol.FrameReader, protocol.parse_chunk)
      -> decompress + size check (pool, one worker per core: decompress_chunk)
      -> write in order (1 thread: tree_writer.TreeWriter), acking written bytes

A pre-copy session (HELLO version 2) is several rounds on one stream: each
warm round ends with ROUND_END, whose totals the writer checks
(``TreeWriter.end_round``) before it answers ``{"ack": n, "round": k}``; only
END (the final round) finishes the stream and returns, so the restore that
follows in receiver.main still happens once, after the last round.

Every queue is bounded, so a slow disk pushes back to the sender through the
SSH window and the acks (the sender keeps at most ~0.5 s in flight).
lz4 and zstd release the GIL while they work, so the thread pool really
uses all cores.

Shipped to the target with receiver.py: it imports no sender code (that is
checked by tests/unit/plugins/module_utils/test_import_graph.py).
"""
from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ansible_collections.edgemig.migration.plugins.module_utils.receiver.tree_writer import TreeWriter
from ansible_collections.edgemig.migration.plugins.module_utils.wire.codecs import CodecError, decompress
from ansible_collections.edgemig.migration.plugins.module_utils.wire.protocol import (
    MAX_PROBES,
    T_ABORT,
    T_CHUNK,
    T_END,
    T_ENTRY,
    T_HELLO,
    T_KEEPALIVE,
    T_PROBE,
    T_ROUND_END,
    VERSIONS,
    FrameReader,
    ProtocolError,
    parse_chunk,
    parse_json,
)


def receive_stream(read: Callable[[int], bytes], reply: Callable[[dict], None],
                   roots: dict[str, str], workers: int | None = None,
                   ack_interval: float = 0.05, corrupt_hook: Callable[[dict], None] | None = None,
                   on_hello: Callable[[], None] | None = None,
                   on_failure: Callable[[], None] | None = None, warm_on_disk: bool = False) -> dict:
    """Receive one stream into ``roots``; returns the summary or raises ProtocolError.

    ``reply`` sends one JSON message back to the sender (acks). A failure of
    the writer thread (checksum, ENOSPC, EPERM...) is answered at once with
    ``{"error": ...}``: the sender may be throttled waiting for an ack and
    would otherwise only see a stall. ``on_failure`` is then called (from the
    writer thread; receiver.main exits the process there, since the reading
    thread may sit in a blocking read). The ProtocolError raised afterwards
    has ``reported = True``: the caller must not answer it a second time.
    ``on_hello`` is called once HELLO was accepted (receiver.main arms its
    idle watchdog there). ``corrupt_hook`` exists for the fault-injection
    tests only (it may flip bytes in a parsed chunk before it is checked),
    ``warm_on_disk`` for the unit tests only (warm memory outside tmpfs).
    """
    workers = workers or os.cpu_count() or 1
    reader = FrameReader(read)
    hello_roots, precopy = _accept_hello(reader, reply, roots)
    if on_hello is not None:
        on_hello()
    # A pre-copy session's later rounds may use any root the receiver was
    # given (the checkpoint root is only filled by the last round).
    writer = TreeWriter(dict(roots) if precopy else {name: roots[name] for name in hello_roots},
                        precopy=precopy, warm_on_disk=warm_on_disk)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgemig-decompress")
    writing = _WriteThread(writer, reply, ack_interval, on_failure, maxsize=workers * 2 + 2)
    t0 = time.monotonic()
    writing.start()
    ended = False
    read_exc: BaseException | None = None
    try:
        ended = _read_frames(reader, writing, pool, precopy, corrupt_hook)
    except BaseException as exc:
        read_exc = exc
    finally:
        writing.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        writer.close()
    if writing.failure:
        # The writer's error is the cause (and was answered already): a
        # truncated stream seen afterwards is only the sender hanging up on it.
        raise writing.failure[0]
    if read_exc is not None:
        raise read_exc
    if not ended:
        raise ProtocolError("stream ended before END")
    result = writing.result
    result.update({"bytes_in": reader.bytes_in, "seconds": round(time.monotonic() - t0, 4)})
    return result


def _accept_hello(reader: FrameReader, reply: Callable[[dict], None],
                  roots: dict[str, str]) -> tuple[list, bool]:
    """Answer the link probes, then check HELLO; returns (the roots it names, pre-copy or not)."""
    ftype, payload = reader.next()
    probes = 0
    while ftype == T_PROBE:
        # Link probe (SshStream.probe_link): answer at once, keep nothing.
        probes += 1
        if probes > MAX_PROBES:
            raise ProtocolError(f"more than {MAX_PROBES} PROBE frames before HELLO")
        reply({"probe": len(payload)})
        ftype, payload = reader.next()
    if ftype != T_HELLO:
        raise ProtocolError("stream does not start with HELLO")
    hello = parse_json(payload, "HELLO")
    version = hello.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version not in VERSIONS:
        raise ProtocolError(f"protocol version {version!r} not supported (want one of {list(VERSIONS)})")
    hello_roots = hello.get("roots", [])
    if not isinstance(hello_roots, list):
        raise ProtocolError("HELLO roots must be a list")
    unknown = [r for r in hello_roots if r not in roots]
    if unknown:
        raise ProtocolError(f"sender wants roots the receiver was not given: {unknown}")
    return hello_roots, version >= 2


def _read_frames(reader: FrameReader, writing: _WriteThread, pool: ThreadPoolExecutor, precopy: bool,
                 corrupt_hook: Callable[[dict], None] | None) -> bool:
    """Hand every frame after HELLO to the writer; True once END was queued, False if the writer failed."""
    while not writing.failure:
        item = _frame_item(*reader.next(), pool, precopy, corrupt_hook)
        if item is None:
            continue
        writing.put(item)
        if item[0] == "end":
            return True
    return False


def _frame_item(ftype: int, payload: bytes, pool: ThreadPoolExecutor, precopy: bool,
                corrupt_hook: Callable[[dict], None] | None) -> tuple | None:
    """The writer's work item for one frame (None: nothing to write); raises on ABORT or a stray frame."""
    if ftype == T_ENTRY:
        return ("entry", parse_json(payload, "ENTRY"))
    if ftype == T_CHUNK:
        ch = parse_chunk(payload)
        if corrupt_hook is not None:
            corrupt_hook(ch)
        fut: Future = pool.submit(decompress_chunk, ch)
        return ("chunk", ch, fut)
    if ftype == T_ROUND_END and precopy:
        return ("round", parse_json(payload, "ROUND_END"))
    if ftype == T_KEEPALIVE and precopy:
        return None  # its bytes were read: the idle watchdog saw them
    if ftype == T_END:
        return ("end", parse_json(payload, "END"))
    if ftype == T_ABORT:
        reason = parse_json(payload, "ABORT").get("reason", "")
        raise ProtocolError(f"sender aborted the transfer: {reason}")
    raise ProtocolError(f"unexpected frame type {ftype} after HELLO")


class _WriteThread:
    """The one writer thread: work items in stream order into the TreeWriter, acks back to the sender."""

    def __init__(self, writer: TreeWriter, reply: Callable[[dict], None], ack_interval: float,
                 on_failure: Callable[[], None] | None, maxsize: int):
        self.writer = writer
        self.reply = reply
        self.ack_interval = ack_interval
        self.on_failure = on_failure
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.failure: list[BaseException] = []
        self.result: dict = {}
        self._last_ack = 0.0
        self._thread = threading.Thread(target=self._loop, name="edgemig-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, item: tuple) -> None:
        self.queue.put(item)

    def stop(self) -> None:
        self.queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    return
                self._write(item)
        except BaseException as exc:
            self._fail(exc)

    def _write(self, item: tuple) -> None:
        kind = item[0]
        if kind == "entry":
            self.writer.entry(item[1])
        elif kind == "chunk":
            self.writer.chunk(item[1], item[2].result())
        elif kind == "round":
            self._end_round(item[1])
            return
        elif kind == "end":
            self._finish(item[1])
            return
        self._ack_if_due()

    def _end_round(self, totals: dict) -> None:
        summary = self.writer.end_round(totals)
        # The round is verified: the sender waits for exactly this before it
        # starts the next one.
        self.reply({"ack": self.writer.bytes_written, "round": summary["round"], "files": summary["files"],
                    "bytes": summary["bytes"]})
        self._last_ack = time.monotonic()

    def _finish(self, totals: dict) -> None:
        self.result.update(self.writer.finish(totals))
        # Everything is written and verified: say so now (the final answer
        # may wait for a restore on the target).
        self.reply({"ack": self.writer.bytes_written, "verified": True})
        self._last_ack = time.monotonic()

    def _ack_if_due(self) -> None:
        now = time.monotonic()
        # Ack at least every ack_interval, and always when the queue ran dry:
        # the sender may be throttled waiting for exactly this ack, and no
        # further item would come to trigger it.
        if now - self._last_ack >= self.ack_interval or self.queue.empty():
            self.reply({"ack": self.writer.bytes_written})
            self._last_ack = now

    def _fail(self, exc: BaseException) -> None:
        self.failure.append(_as_protocol_error(exc))
        # Say so now: the reading thread may be blocked on a sender that is
        # itself waiting for an ack (throttled) -- both would sit there until
        # a stall timeout, and the cause would be lost.
        try:
            self.reply({"error": str(self.failure[0])})
            self.failure[0].reported = True
        except Exception:
            pass
        if self.on_failure is not None:
            self.on_failure()
        # Drain so the reader never blocks on a full queue.
        while self.queue.get() is not None:
            pass


def _as_protocol_error(exc: BaseException) -> ProtocolError:
    if isinstance(exc, ProtocolError):
        return exc
    if isinstance(exc, OSError):
        err = ProtocolError(f"receiver I/O error: {exc}")
    else:
        err = ProtocolError(f"receiver failed: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def decompress_chunk(ch: dict) -> bytes:
    """Decompress a parsed chunk's literal bytes (runs on a worker thread)."""
    try:
        return decompress(ch["codec"], ch["level"], ch["data"], ch["literal_len"])
    except CodecError as exc:
        raise ProtocolError(f"chunk of file {ch['id']} at offset {ch['offset']}: {exc}") from None
    except Exception as exc:  # a codec library may raise its own errors on garbage
        raise ProtocolError(f"chunk of file {ch['id']} at offset {ch['offset']} "
                            f"does not decompress: {exc}") from None
