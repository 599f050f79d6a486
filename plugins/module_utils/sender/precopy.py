# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pre-copy without kernel dirty tracking, sender side (issue 11).

The kernel lacks soft-dirty, so nothing tells us what a running service
changed. Instead the sender remembers what it sent (``WarmState``) and
compares:

* files (writable layer, volumes): ``(mode, size, mtime_ns, ctime_ns, ino)``
  per path; a file whose signature moved is sent again, whole when small, and
  when >= ``PATCH_MIN`` only the ``BLOCK``-sized blocks whose SHA-256 differs
  from what was sent (a ``patch`` ENTRY). Paths gone since are deleted on the
  target (a ``delete`` ENTRY, topmost path only: the receiver deletes
  recursively).
* memory: per (namespace pid, vaddr) the SHA-256 of the page sent warm. A warm
  round sends only pages whose digest changed (``mem`` ENTRY + chunks into
  the target's warm store); at the freeze, a page of ``pages-*.img`` whose
  (pid, vaddr) (criu_images.page_index) has the same SHA-256 becomes a P_WARM
  reference. Equal key *and* equal SHA-256, never a short hash.

The state describes what the *target holds*, not the source: a block is
recorded with the digest of the bytes actually sent (a file may change while
a warm round reads it; a short read is padded and recorded as unknown so the
next round sends it again).

``round_items`` produces the items StreamSender sends (its ``_items``
format); ``predict_final`` estimates the last round. Sender only, never
shipped to the target.
"""
from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ansible_collections.edgemig.migration.plugins.module_utils.sender.process_memory import ProcessMemory, ProcIdentity
from ansible_collections.edgemig.migration.plugins.module_utils.sender.tree_reader import (
    entry_meta,
    open_walked,
    walk_roots,
)
from ansible_collections.edgemig.migration.plugins.module_utils.wire.criu_images import page_index
from ansible_collections.edgemig.migration.plugins.module_utils.wire.dump_layout import is_page_image
from ansible_collections.edgemig.migration.plugins.module_utils.wire.protocol import (
    MAX_MEM_ENTRY_PAGES,
    PAGE,
    WARM_ROOT,
)

# Patch granularity: InnoDB's page size, so a changed database page crosses alone rather
# than with three unchanged neighbours; 32 bytes of state per block (2 MiB for a 1 GiB volume).
BLOCK = 16 << 10
PATCH_MIN = 1 << 20    # smaller files are sent whole when they changed


@dataclass
class FileRec:
    """What the target holds at one path."""

    kind: str
    sig: tuple | None               # None: unknown, send again next round
    blocks: list[bytes] | None = None  # SHA-256 per BLOCK of a file >= PATCH_MIN


@dataclass
class WarmState:
    """What the sender sent in this session: the target holds exactly this.

    ``files[(root, path)]``, ``pages[ns_pid][vaddr] -> sha256``; ``rounds``
    holds each finished round's stats. ``started``: HELLO went out (the
    session's first round sends it, no later one). ``memory_pids`` and
    ``roots`` are those of the last warm round (for ``predict_final``).
    ``identities``: host pid -> the process identity its memory may be read
    under (process_memory.ProcIdentity, from the collection, else from the
    first read); ``pids_skipped``: reads refused because a pid no longer
    named that process, over the session.
    """

    files: dict[tuple[str, str], FileRec] = field(default_factory=dict)
    pages: dict[int, dict[int, bytes]] = field(default_factory=dict)
    rounds: list[dict] = field(default_factory=list)
    started: bool = False
    broken: str | None = None
    memory_pids: dict[int, int] | None = None
    roots: list[tuple[str, str]] = field(default_factory=list)
    identities: dict[int, ProcIdentity] = field(default_factory=dict)
    pids_skipped: int = 0

    def check_usable(self) -> None:
        if self.broken:
            raise RuntimeError(f"warm state unusable: a round failed ({self.broken}); start a new session")


@runtime_checkable
class WarmSession(Protocol):
    """The session ``warm_up`` drives: ssh_stream.SshStream over SSH, bench/local_stream.LocalSession
    in process, the unit tests' stand-ins. Declared here, below all of them, so that the warm loop
    calls down into a contract rather than up into the SSH end.

    ``warm``: the session's WarmState, there from the start (empty until the first round sends
    HELLO); the final round is streamed against it. ``warm_round``: one round while the service
    runs, against ``warm``; returns the round's stats (StreamSender.run's). ``keepalive()``: a
    context that feeds the receiver's idle watchdog while this side works between rounds, a no-op
    before the session's HELLO.
    """

    warm: WarmState

    def warm_round(self, roots: list[tuple[str, str]], memory_pids: dict[int, int] | None = None, *,
                   policy: str = "model", **kwargs) -> dict: ...

    def keepalive(self) -> AbstractContextManager: ...


def kind_of(st: os.stat_result) -> str:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISCHR(mode):
        return "whiteout" if st.st_rdev == 0 else "chr"
    if stat.S_ISBLK(mode):
        return "blk"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "socket"


def signature(st: os.stat_result) -> tuple:
    # ctime moves on every data or metadata change (chmod, chown, xattr), so
    # an unchanged signature means nothing to send, without reading a byte.
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _read_exact(fd: int, offset: int, length: int) -> tuple[bytes, bool]:
    """``length`` bytes at ``offset``, zero-padded if the file shrank meanwhile (then False)."""
    try:
        data = os.pread(fd, length, offset)
    except OSError:
        data = b""
    if len(data) == length:
        return data, True
    return data + bytes(length - len(data)), False


def same_process(pm: ProcessMemory, state: WarmState, memory_pids: dict[int, int] | None) -> bool:
    """Whether ``pm`` (opened on a host pid of the container) is still the process recorded for that pid.

    A warm round reads memory as root minutes after the pids were collected; a pid
    recycled meanwhile names another process, whose memory must not be read and
    shipped. Its identity (start time, cgroup; ``memory_pids.identity`` of
    process_memory.container_processes, kept in ``state.identities`` across rounds)
    must match. A caller that passed bare pids gets the identity of the first read
    recorded instead, which guards the later rounds only.
    """
    collected = getattr(memory_pids, "identity", None) or {}
    expected = collected.get(pm.pid) or state.identities.get(pm.pid)
    if expected is not None:
        return pm.is_process(expected)
    try:
        state.identities[pm.pid] = pm.identity()
    except (OSError, ValueError):
        return False
    return True


def _block_digests(data: bytes) -> list[bytes]:
    mv = memoryview(data)
    return [hashlib.sha256(mv[i:i + BLOCK]).digest() for i in range(0, len(mv), BLOCK)]


class RoundItems:
    """One round's items for StreamSender (``("entry", meta)`` and
    ``("chunk", fid, offset, raw, pages, warm_ref)``), updating ``state``.

    ``final``: the round after the freeze (memory comes from the dump's
    page images, with warm references, not from the processes).
    """

    def __init__(self, state: WarmState, roots: list[tuple[str, str]], chunk_size: int,
                 memory_pids: dict[int, int] | None = None, final: bool = False, stop=None):
        self.state, self.roots, self.chunk_size = state, roots, chunk_size
        self.memory_pids = memory_pids or {}
        # A fresh collection's identities replace what earlier rounds knew of those pids.
        state.identities.update(getattr(self.memory_pids, "identity", None) or {})
        self.final = final
        self.stop = stop
        self.next_id = 0
        self.stats = {"files": 0, "files_sent": 0, "files_patched": 0, "files_deleted": 0, "entries": 0,
                      "pages_sent": 0, "pages_referenced": 0, "pages_literal": 0, "bytes_pages": 0,
                      "bytes_layer": 0, "bytes_other": 0, "bytes_memory": 0, "unchanged": 0, "pids_skipped": 0}
        self._page_index = None

    def _fid(self) -> int:
        fid = self.next_id
        self.next_id += 1
        return fid

    def __iter__(self) -> Iterator[tuple]:
        yield from self._files()
        if not self.final:
            yield from self._memory()

    # -- files
    def _files(self) -> Iterator[tuple]:
        state = self.state
        names = {name for name, _top in self.roots}
        seen: set[tuple[str, str]] = set()
        for root, rel, full, st in walk_roots(self.roots, live=True):
            if self.stop is not None and self.stop.is_set():
                return
            kind = kind_of(st)
            if kind == "socket":
                continue  # as in stop-and-copy: CRIU binds the restored socket again
            key = (root, rel)
            seen.add(key)
            sig = signature(st)
            prev = state.files.get(key)
            if prev is not None and prev.sig == sig and prev.kind == kind:
                self.stats["unchanged"] += 1
                continue
            if prev is not None and prev.kind != kind and rel != ".":
                # A type change: the old object goes first (a directory can
                # not be replaced in place).
                yield from self._delete(root, rel)
                prev = None
            if kind != "file":
                try:
                    meta = entry_meta(root, rel, full, st, None)
                except OSError:
                    continue  # vanished between lstat and readlink: deleted next round
                self.stats["entries"] += 1
                state.files[key] = FileRec(kind, sig)
                yield ("entry", meta)
                continue
            yield from self._file(root, rel, full, st, sig, prev)
        gone = sorted(k for k in state.files if k[0] in names and k not in seen)
        done: set[tuple[str, str]] = set()
        for root, rel in gone:
            if (root, rel) in done or (root, rel) not in state.files:
                continue
            yield from self._delete(root, rel)
            done.add((root, rel))

    def _delete(self, root: str, rel: str) -> Iterator[tuple]:
        prefix = rel + "/"
        for k in [k for k in self.state.files if k[0] == root and (k[1] == rel or k[1].startswith(prefix))]:
            del self.state.files[k]
        self.stats["files_deleted"] += 1
        self.stats["entries"] += 1
        yield ("entry", {"root": root, "path": rel, "kind": "delete"})

    def _file(self, root: str, rel: str, full: str, st: os.stat_result, sig: tuple,
              prev: FileRec | None) -> Iterator[tuple]:
        state = self.state
        size = st.st_size
        pages = is_page_image(root, rel)
        bucket = "bytes_pages" if pages else ("bytes_other" if root == "checkpoint" else "bytes_layer")
        try:
            fd = open_walked(full, st)
        except OSError:
            if self.final:
                # The service is frozen: nothing of its own changes files now. A
                # file that vanished or was swapped (another container sharing the
                # volume) has no next round to correct it: fail, roll back.
                raise
            fd = None  # vanished or replaced: zeros go out, the next round corrects it
        try:
            meta = entry_meta(root, rel, full, st, None, pages=pages)
        except OSError:
            meta = {"root": root, "path": rel, "kind": "file", "mode": stat.S_IMODE(st.st_mode),
                    "uid": st.st_uid, "gid": st.st_gid, "mtime_ns": st.st_mtime_ns, "size": size}
        try:
            fid = self._fid()
            meta["id"] = fid
            self.stats["files"] += 1
            self.stats["entries"] += 1
            complete = True
            if prev is not None and prev.kind == "file" and prev.blocks is not None and size >= PATCH_MIN \
                    and fd is not None:
                # Pass 1: which blocks differ from what the target holds.
                old = prev.blocks
                now: list[bytes] = []
                changed: list[int] = []
                for off in range(0, size, self.chunk_size):
                    data, ok = _read_exact(fd, off, min(self.chunk_size, size - off))
                    for j, dg in enumerate(_block_digests(data)):
                        i = off // BLOCK + j
                        now.append(dg if ok else b"")
                        if i >= len(old) or old[i] != dg or not ok:
                            changed.append(i)
                patch_bytes = sum(min(BLOCK, size - i * BLOCK) for i in changed)
                meta.update({"patch": True, "patch_bytes": patch_bytes})
                self.stats["files_patched"] += 1
                yield ("entry", meta)
                # Pass 2: send the changed blocks, coalesced into chunks; the
                # state records the digest of what was actually sent.
                per_chunk = max(1, self.chunk_size // BLOCK)
                i = 0
                while i < len(changed):
                    j = i
                    while j + 1 < len(changed) and changed[j + 1] == changed[j] + 1 and j + 1 - i < per_chunk:
                        j += 1
                    start = changed[i] * BLOCK
                    length = min((changed[j] + 1) * BLOCK, size) - start
                    data, ok = _read_exact(fd, start, length)
                    complete &= ok
                    for k, dg in enumerate(_block_digests(data)):
                        now[changed[i] + k] = dg if ok else b""
                    self.stats[bucket] += length
                    yield ("chunk", fid, start, data, pages, None)
                    i = j + 1
                state.files[(root, rel)] = FileRec("file", sig if complete else None, now)
                return
            meta["size"] = size
            self.stats["files_sent"] += 1
            yield ("entry", meta)
            blocks: list[bytes] | None = [] if size >= PATCH_MIN else None
            index = self._warm_index(root, rel, full) if pages else None
            for off in range(0, size, self.chunk_size):
                length = min(self.chunk_size, size - off)
                if fd is None:
                    data, ok = bytes(length), False
                else:
                    data, ok = _read_exact(fd, off, length)
                complete &= ok
                if blocks is not None:
                    blocks.extend(dg if ok else b"" for dg in _block_digests(data))
                self.stats[bucket] += length
                yield ("chunk", fid, off, data, pages, self._warm_ref(index, off, len(data)))
            state.files[(root, rel)] = FileRec("file", sig if complete else None, blocks)
        finally:
            if fd is not None:
                os.close(fd)

    # -- memory, final round: references into the warm store
    def _warm_index(self, root: str, rel: str, full: str):
        """(ns pid, vaddr array) of a pages-*.img from its dump's page map, None if no warm copy."""
        if not self.state.pages or root != "checkpoint":
            return None
        if self._page_index is None:
            self._page_index = {os.path.basename(pf.path): pf for pf in page_index(os.path.dirname(full))}
        pf = self._page_index.get(os.path.basename(full))
        if pf is None or pf.shmid is not None or pf.pid not in self.state.pages:
            return None  # shared memory is keyed by (shmid, offset): not warmed
        return pf.pid, pf.vaddr

    def _warm_ref(self, index, offset: int, length: int):
        if index is None:
            return None
        pid, vaddrs = index
        first = offset // PAGE
        return pid, vaddrs[first:first + length // PAGE], self.state.pages[pid], self.stats

    # -- memory, warm rounds: changed pages into the warm store
    def _memory(self) -> Iterator[tuple]:
        per_entry = max(1, min(self.chunk_size // PAGE, MAX_MEM_ENTRY_PAGES))
        for host_pid, ns_pid in sorted(self.memory_pids.items()):
            sent = self.state.pages.setdefault(ns_pid, {})
            batch: list[tuple[int, bytes, bytes]] = []  # (vaddr, page, digest)
            try:
                pm = ProcessMemory(host_pid)
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited: its pages will not be in the dump
            try:
                if not same_process(pm, self.state, self.memory_pids):
                    # Another process has the pid now (or the container's moved): nothing of it is
                    # read; the container's own pages, if any, cross at the freeze through CRIU.
                    self.stats["pids_skipped"] += 1
                    self.state.pids_skipped += 1
                    continue
                for vaddr, data in pm.read_runs():
                    if self.stop is not None and self.stop.is_set():
                        return
                    for i in range(0, len(data), PAGE):
                        page = bytes(data[i:i + PAGE])
                        dg = hashlib.sha256(page).digest()
                        va = vaddr + i
                        if sent.get(va) == dg:
                            continue
                        batch.append((va, page, dg))
                        if len(batch) >= per_entry:
                            yield from self._mem_batch(ns_pid, batch, sent)
                            batch = []
            except (FileNotFoundError, ProcessLookupError):
                pass  # exited meanwhile
            finally:
                pm.close()
            if batch:
                yield from self._mem_batch(ns_pid, batch, sent)

    def _mem_batch(self, ns_pid: int, batch: list[tuple[int, bytes, bytes]],
                   sent: dict[int, bytes]) -> Iterator[tuple]:
        runs: list[list[int]] = []
        for va, _page, _dg in batch:
            if runs and runs[-1][0] + runs[-1][1] * PAGE == va:
                runs[-1][1] += 1
            else:
                runs.append([va, 1])
        fid = self._fid()
        self.stats["files"] += 1
        self.stats["entries"] += 1
        self.stats["pages_sent"] += len(batch)
        self.stats["bytes_memory"] += len(batch) * PAGE
        yield ("entry", {"root": WARM_ROOT, "kind": "mem", "id": fid, "pid": ns_pid, "runs": runs})
        for va, _page, dg in batch:
            sent[va] = dg
        yield ("chunk", fid, 0, b"".join(p for _va, p, _dg in batch), True, None)


def predict_final(state: WarmState, memory_pids: dict[int, int] | None = None,
                  roots: list[tuple[str, str]] | None = None, hash_memory: bool = True) -> int:
    """Bytes the final round would send now (see ``predict_final_detail``)."""
    return predict_final_detail(state, memory_pids, roots, hash_memory)["bytes"]


def predict_final_detail(state: WarmState, memory_pids: dict[int, int] | None = None,
                         roots: list[tuple[str, str]] | None = None, hash_memory: bool = True) -> dict:
    """Bytes the final round would send now for the warmed roots and memory (before compression).

    Files: re-stat; a changed small file counts whole, a changed large one
    is re-read and counts its changed blocks (the final round's own rule),
    new files whole, metadata-only changes nothing. Memory (``hash_memory``):
    re-read and SHA-256 every page of ``memory_pids`` (default: the last
    warm round's) and count the pages whose digest differs from the warm copy:
    ~0.3-0.5 s per 244 MB here (docs/precopy-probe.md), so call it between
    rounds, not in a tight loop. The checkpoint's non-page images (a few MB,
    unknown before the dump) are not included. Returns ``{"bytes",
    "file_bytes", "memory_bytes", "files", "pages", "seconds"}``.
    """
    t0 = time.monotonic()
    roots = state.roots if roots is None else roots
    memory_pids = state.memory_pids if memory_pids is None else memory_pids
    file_bytes, files = _changed_file_bytes(state, roots)
    pages = _changed_pages(state, memory_pids) if hash_memory and memory_pids else 0
    return {"bytes": file_bytes + pages * PAGE, "file_bytes": file_bytes, "memory_bytes": pages * PAGE,
            "files": files, "pages": pages, "seconds": round(time.monotonic() - t0, 4)}


def _changed_file_bytes(state: WarmState, roots: list[tuple[str, str]]) -> tuple[int, int]:
    """(bytes, files) the final round would send for the regular files of ``roots``."""
    file_bytes = files = 0
    for root, rel, full, st in walk_roots(roots, live=True):
        if kind_of(st) != "file":
            continue
        prev = state.files.get((root, rel))
        if prev is not None and prev.sig == signature(st):
            continue
        files += 1
        if prev is None or prev.kind != "file" or prev.blocks is None or st.st_size < PATCH_MIN:
            file_bytes += st.st_size
            continue
        file_bytes += _changed_block_bytes(full, st.st_size, prev.blocks)
    return file_bytes, files


def _changed_block_bytes(full: str, size: int, blocks: list) -> int:
    """Bytes of the blocks of the file ``full`` whose digest differs from ``blocks`` (0 if it cannot be opened)."""
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return 0
    changed = 0
    try:
        for off in range(0, size, 1 << 20):
            data, ok = _read_exact(fd, off, min(1 << 20, size - off))
            for j, dg in enumerate(_block_digests(data)):
                i = off // BLOCK + j
                if not ok or i >= len(blocks) or blocks[i] != dg:
                    changed += min(BLOCK, size - i * BLOCK)
    finally:
        os.close(fd)
    return changed


def _changed_pages(state: WarmState, memory_pids: dict[int, int]) -> int:
    """Pages of ``memory_pids`` whose SHA-256 differs from the warm copy (a process gone counts none)."""
    pages = 0
    for host_pid, ns_pid in memory_pids.items():
        sent = state.pages.get(ns_pid, {})
        try:
            with ProcessMemory(host_pid) as pm:
                if not same_process(pm, state, memory_pids):
                    continue  # not read in the rounds either: crosses at the freeze, not predicted
                for vaddr, data in pm.read_runs():
                    for i in range(0, len(data), PAGE):
                        if sent.get(vaddr + i) != hashlib.sha256(data[i:i + PAGE]).digest():
                            pages += 1
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pages


def round_entry(stats: dict, pids_skipped: int = 0) -> dict:
    """A warm round's report line from its stats (StreamSender.run's)."""
    return {"bytes_raw": stats.get("bytes_raw", 0), "bytes_wire": stats.get("bytes_wire", 0),
            "seconds": round(max(float(stats.get("seconds") or 0.0), 1e-3), 3),
            "files_sent": stats.get("files_sent", 0), "files_patched": stats.get("files_patched", 0),
            "files_deleted": stats.get("files_deleted", 0), "pages_sent": stats.get("pages_sent", 0),
            "pids_skipped": stats.get("pids_skipped", pids_skipped)}


def refresh(conn: WarmSession, roots: list[tuple[str, str]], memory_pids: dict[int, int] | None, *,
            policy: str = "model") -> dict:
    """One more warm round while a parked migration waits for its go (driver/park.py, issue 26): what
    the service changed since the last round crosses now, so the final round stays about one refresh
    interval's worth of changes, whenever the go comes. No prediction (it re-reads and hashes
    everything: the parked source is meant to cost little). Returns the round's report line."""
    skipped_before = conn.warm.pids_skipped
    stats = conn.warm_round(roots, memory_pids, policy=policy)
    return round_entry(stats, conn.warm.pids_skipped - skipped_before)


def warm_up(conn: WarmSession, roots: list[tuple[str, str]], memory_pids: dict[int, int] | None, *,
            downtime_target: float = 1.0, max_rounds: int = 5, policy: str = "model",
            on_round: Callable[[int, dict], None] | None = None) -> dict:
    """Warm rounds while the service runs, until the final round is predicted to fit the budget.

    ``conn`` is the session (``WarmSession``). After each round the final round's bytes are predicted
    (``predict_final_detail``: what changed since) and divided by the rate
    the round itself achieved (raw bytes per second over the link, the
    controller's own compression included). Stop when that transfer time
    fits ``downtime_target`` ("converged"), when a round no longer halves the
    predicted bytes (the service dirties state about as fast as the link
    carries it: "not converging"), or after ``max_rounds``. A service that
    never converges still migrates: the final round sends what differs,
    stop-and-copy style, and the report says why. Returns the rounds with
    their predictions, the reason and the last prediction.
    """
    rounds: list[dict] = []
    reason = f"max_rounds ({max_rounds}) reached"
    predicted = None
    for k in range(1, max_rounds + 1):
        skipped_before = conn.warm.pids_skipped
        stats = conn.warm_round(roots, memory_pids, policy=policy)
        secs = max(float(stats.get("seconds") or 0.0), 1e-3)
        rate = float(stats.get("bytes_raw") or 0) / secs
        state = conn.warm
        with conn.keepalive():  # the receiver hears nothing else while we re-read and hash
            detail = predict_final_detail(state, memory_pids, roots)
        # A round too small to measure the link keeps the last usable rate.
        if rate <= 0 or stats.get("bytes_raw", 0) < (1 << 20):
            rate = next((r["raw_Bps"] for r in reversed(rounds) if r.get("raw_Bps")), rate)
        entry = {"round": k, **round_entry(stats, state.pids_skipped - skipped_before), "raw_Bps": round(rate),
                 "pause_s": 0.0, "predicted_final_bytes": detail["bytes"], "predict_s": round(detail["seconds"], 3),
                 "predicted_final_s": round(detail["bytes"] / rate, 3) if rate > 0 else None}
        rounds.append(entry)
        if on_round is not None:
            on_round(k, entry)
        predicted = entry["predicted_final_s"]
        if predicted is not None and predicted <= downtime_target:
            reason = "converged"
            break
        if len(rounds) > 1 and detail["bytes"] > 0.5 * rounds[-2]["predicted_final_bytes"]:
            reason = ("not converging: the service changes state about as fast as the link carries it "
                      f"({detail['bytes']} bytes predicted after round {k}, {rounds[-2]['predicted_final_bytes']} before)")
            break
    return {"rounds": rounds, "reason": reason, "predicted_final_s": predicted}
