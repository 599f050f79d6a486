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

from ansible_collections.edgemig.migration.plugins.module_utils.codecs import CodecError, decompress
from ansible_collections.edgemig.migration.plugins.module_utils.protocol import (
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
from ansible_collections.edgemig.migration.plugins.module_utils.tree_writer import TreeWriter


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
    if on_hello is not None:
        on_hello()
    precopy = version >= 2
    # A pre-copy session's later rounds may use any root the receiver was
    # given (the checkpoint root is only filled by the last round).
    writer = TreeWriter(dict(roots) if precopy else {name: roots[name] for name in hello_roots},
                        precopy=precopy, warm_on_disk=warm_on_disk)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgemig-decompress")
    q: queue.Queue = queue.Queue(maxsize=workers * 2 + 2)
    failure: list[BaseException] = []
    result: dict = {}
    t0 = time.monotonic()

    def write_loop() -> None:
        last = 0.0
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if failure:
                    continue  # drain so the reader never blocks
                kind = item[0]
                if kind == "entry":
                    writer.entry(item[1])
                elif kind == "chunk":
                    writer.chunk(item[1], item[2].result())
                elif kind == "round":
                    summary = writer.end_round(item[1])
                    # The round is verified: the sender waits for exactly this
                    # before it starts the next one.
                    reply({"ack": writer.bytes_written, "round": summary["round"], "files": summary["files"],
                           "bytes": summary["bytes"]})
                    last = time.monotonic()
                    continue
                elif kind == "end":
                    result.update(writer.finish(item[1]))
                    # Everything is written and verified: say so now (the
                    # final answer may wait for a restore on the target).
                    reply({"ack": writer.bytes_written, "verified": True})
                    last = time.monotonic()
                    continue
                now = time.monotonic()
                # Ack at least every ack_interval, and always when the queue
                # ran dry: the sender may be throttled waiting for exactly
                # this ack, and no further item would come to trigger it.
                if now - last >= ack_interval or q.empty():
                    reply({"ack": writer.bytes_written})
                    last = now
        except BaseException as exc:
            failure.append(_as_protocol_error(exc))
            # Say so now: the reading thread may be blocked on a sender that
            # is itself waiting for an ack (throttled) -- both would sit
            # there until a stall timeout, and the cause would be lost.
            try:
                reply({"error": str(failure[0])})
                failure[0].reported = True
            except Exception:
                pass
            if on_failure is not None:
                on_failure()
            while q.get() is not None:
                pass

    wt = threading.Thread(target=write_loop, name="edgemig-writer", daemon=True)
    wt.start()
    ended = False
    read_exc: BaseException | None = None
    try:
        while not failure:
            ftype, payload = reader.next()
            if ftype == T_ENTRY:
                q.put(("entry", parse_json(payload, "ENTRY")))
            elif ftype == T_CHUNK:
                ch = parse_chunk(payload)
                if corrupt_hook is not None:
                    corrupt_hook(ch)
                fut: Future = pool.submit(decompress_chunk, ch)
                q.put(("chunk", ch, fut))
            elif ftype == T_ROUND_END and precopy:
                q.put(("round", parse_json(payload, "ROUND_END")))
            elif ftype == T_KEEPALIVE and precopy:
                continue  # its bytes were read: the idle watchdog saw them
            elif ftype == T_END:
                q.put(("end", parse_json(payload, "END")))
                ended = True
                break
            elif ftype == T_ABORT:
                reason = parse_json(payload, "ABORT").get("reason", "")
                raise ProtocolError(f"sender aborted the transfer: {reason}")
            else:
                raise ProtocolError(f"unexpected frame type {ftype} after HELLO")
    except BaseException as exc:
        read_exc = exc
    finally:
        q.put(None)
        wt.join()
        pool.shutdown(wait=True, cancel_futures=True)
        writer.close()
    if failure:
        # The writer's error is the cause (and was answered already): a
        # truncated stream seen afterwards is only the sender hanging up on it.
        raise failure[0]
    if read_exc is not None:
        raise read_exc
    if not ended:
        raise ProtocolError("stream ended before END")
    result.update({"bytes_in": reader.bytes_in, "seconds": round(time.monotonic() - t0, 4)})
    return result


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
