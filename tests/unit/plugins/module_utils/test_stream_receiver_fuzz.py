# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzzing the receiver (issue 6): random and adversarial streams against ``receive_stream``.

Property: whatever the bytes, ``receive_stream`` either returns a summary or
raises ``ProtocolError`` (nothing else), and nothing appears, changes or
disappears outside the destination directory (the parent directory, with a
decoy file and a decoy directory, is snapshotted before and after).

The default run tries FUZZ_EXAMPLES inputs per strategy (fast enough for the
unit suite); ``-m slow`` runs the same properties with many more.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zlib

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.edgemig.migration.plugins.module_utils.receiver.stream_receiver import receive_stream
from ansible_collections.edgemig.migration.plugins.module_utils.wire import protocol as P

FUZZ_EXAMPLES = int(os.environ.get("EDGEMIG_FUZZ_EXAMPLES", "700"))
SLOW_EXAMPLES = int(os.environ.get("EDGEMIG_FUZZ_SLOW_EXAMPLES", "20000"))
TRIED = {"inputs": 0, "accepted": 0, "rejected": 0}


def snapshot(top: str, skip: str) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(top):
        if os.path.abspath(dirpath).startswith(os.path.abspath(skip)):
            continue
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            if os.path.abspath(full).startswith(os.path.abspath(skip)):
                continue
            s = os.lstat(full)
            out[os.path.relpath(full, top)] = (s.st_mode, s.st_size, s.st_mtime_ns, s.st_uid)
    return out


def run_stream(data: bytes) -> None:
    """Feed ``data`` to a receiver writing into a fresh dir; assert the property."""
    parent = tempfile.mkdtemp(prefix="edgemig-fuzz-")
    try:
        with open(os.path.join(parent, "decoy"), "w") as fh:
            fh.write("outside")
        os.mkdir(os.path.join(parent, "decoy-dir"))
        dest = os.path.join(parent, "dest")
        roots = {"checkpoint": os.path.join(dest, "ck"), "layer": os.path.join(dest, "layer"),
                 "warm": os.path.join(dest, "warm")}
        for path in roots.values():
            os.makedirs(path)
        before = snapshot(parent, dest)
        pos = [0]

        def read(n: int) -> bytes:
            chunk = data[pos[0]:pos[0] + min(n, 7919)]  # odd partial reads
            pos[0] += len(chunk)
            return chunk
        TRIED["inputs"] += 1
        try:
            # warm_on_disk: the warm store's tmpfs rule is tested on its own (test_precopy).
            receive_stream(read, lambda _m: None, roots, workers=2, warm_on_disk=True)
            TRIED["accepted"] += 1
        except P.ProtocolError:
            TRIED["rejected"] += 1
        after = snapshot(parent, dest)
        assert before == after, f"something outside the destination changed: {set(before) ^ set(after)}"
        # Nothing inside dest may point a *written file* outside: every regular file is under dest.
        for dirpath, _dirs, files in os.walk(dest):
            for name in files:
                full = os.path.join(dirpath, name)
                if not os.path.islink(full):
                    assert os.path.realpath(full).startswith(os.path.realpath(dest) + os.sep)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


# ---------------------------------------------------------------- frame builders
def hello(roots=("checkpoint", "layer"), version=P.VERSION) -> bytes:
    return P.json_frame(P.T_HELLO, {"version": version, "roots": list(roots)})


def entry(**meta) -> bytes:
    base = {"root": "layer", "kind": "file", "mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": 0}
    base.update(meta)
    return P.json_frame(P.T_ENTRY, base)


def chunk(fid, offset, data, raw_len=None, crc=None, pagemap=b"", literal_len=None, codec="none") -> bytes:
    raw_len = len(data) if raw_len is None else raw_len
    crc = zlib.crc32(data) if crc is None else crc
    literal_len = len(data) if literal_len is None else literal_len
    return P.chunk_frame(fid, offset, codec, 0, raw_len, crc, data, literal_len, pagemap)


def end(files=None, nbytes=None) -> bytes:
    return P.json_frame(P.T_END, {k: v for k, v in (("files", files), ("bytes", nbytes)) if v is not None})


EVIL_PATHS = ["../escape", "/etc/passwd-edgemig", "a/../../x", "..", "./a", "a//b", "a/./b", "a\0b",
              "x" * 5000, "", "link/inside", "link/../x", "dir/../../decoy", "decoy-link/f"]
KINDS = list(P.KINDS) + ["socket", "", None, 7]

paths = st.one_of(st.sampled_from(EVIL_PATHS + ["f", "dir", "dir/f", "link", "decoy-link", "."]),
                  st.text(alphabet="ab./\0", min_size=0, max_size=12))
metas = st.fixed_dictionaries({
    "root": st.sampled_from(["layer", "checkpoint", "volume/x", "", None]),
    "path": paths,
    "kind": st.sampled_from(KINDS),
}, optional={
    "id": st.one_of(st.integers(-2, 4), st.none(), st.text(max_size=2)),
    "size": st.one_of(st.integers(-5, 1 << 16), st.sampled_from([1 << 40, 2 ** 63])),
    "mode": st.one_of(st.integers(0, 0o177777), st.text(max_size=3)),
    "uid": st.integers(0, 70000), "gid": st.integers(0, 70000),
    "target": st.sampled_from(["/etc", "../../..", "..", "/", "f", "dir/f", "../decoy", "/tmp"]),
    "rdev": st.integers(0, 1 << 20),
    "mtime_ns": st.one_of(st.integers(0, 1 << 62), st.text(max_size=3)),
    "xattrs": st.one_of(st.dictionaries(st.sampled_from(["user.a", "trusted.overlay.opaque", "bogus"]),
                                        st.sampled_from(["eQ==", "!!", ""]), max_size=2), st.text(max_size=3)),
})


# Version 2 (pre-copy) entries: deletes, warm memory batches, patches of existing files.
precopy_metas = st.one_of(
    st.fixed_dictionaries({"root": st.sampled_from(["layer", "checkpoint", "warm", None]), "path": paths,
                           "kind": st.just("delete")}),
    st.fixed_dictionaries({"root": st.sampled_from(["warm", "layer"]), "kind": st.just("mem"),
                           "id": st.one_of(st.integers(-1, 4), st.none(), st.booleans()),
                           "pid": st.one_of(st.integers(-1, 3), st.just(2 ** 32), st.text(max_size=2)),
                           "runs": st.one_of(st.lists(st.lists(st.sampled_from(
                               [0, 1, 2, 0x1000, 0x1001, 2 ** 64 - 4096, 1 << 20, -4096]), min_size=0, max_size=3),
                               max_size=3), st.text(max_size=3), st.none())}),
    st.fixed_dictionaries({"root": st.sampled_from(["layer", "checkpoint"]), "path": paths,
                           "kind": st.sampled_from(["file", "dir", "symlink"]), "patch": st.just(True)},
                          optional={"id": st.integers(-1, 4), "size": st.integers(-1, 1 << 16),
                                    "patch_bytes": st.integers(-1, 1 << 16)}),
)


@st.composite
def adversarial_streams(draw) -> bytes:
    parts = [hello(draw(st.sampled_from([("checkpoint", "layer"), ("layer",), ("nope",)])),
                   draw(st.sampled_from([P.VERSION, P.VERSION, P.BASE_VERSION, 0, "1", True])))]
    for _unused in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["entry", "entry", "chunk", "badchunk", "raw", "abort", "end",
                                     "round_end", "precopy_entry", "warm_chunk", "keepalive"]))
        if kind == "entry":
            parts.append(entry(**draw(metas)))
        elif kind == "round_end":
            parts.append(P.json_frame(P.T_ROUND_END, draw(st.fixed_dictionaries({}, optional={
                "round": st.one_of(st.integers(-1, 3), st.text(max_size=2)),
                "files": st.integers(0, 3), "bytes": st.integers(0, 9000), "deleted": st.integers(0, 2)}))))
        elif kind == "keepalive":
            parts.append(P.frame(P.T_KEEPALIVE, draw(st.sampled_from([b"", b"", b"\x00", bytes(64)]))))
        elif kind == "precopy_entry":
            parts.append(entry(**draw(precopy_metas)))
        elif kind == "warm_chunk":
            data = draw(st.binary(max_size=4096))
            ref = P.REF.pack(draw(st.integers(0, 3)), draw(st.sampled_from([0, 0x1000, 0x1001, 2 ** 64 - 4096])))
            pagemap = draw(st.sampled_from([bytes([P.P_WARM]) + ref, bytes([P.P_WARM]) + ref[:5],
                                            bytes([P.P_WARM]) + ref + bytes([P.P_LITERAL]),
                                            bytes([P.P_REF]) + P.REF.pack(0, 0), b""]))
            raw_len = draw(st.sampled_from([len(data), 4096, 8192]))
            parts.append(chunk(draw(st.integers(0, 3)), draw(st.sampled_from([0, 10, 4096, 65536])), data,
                               raw_len=raw_len, crc=draw(st.sampled_from([None, 0])), pagemap=pagemap,
                               literal_len=len(data)))
        elif kind == "chunk":
            data = draw(st.binary(max_size=9000))
            parts.append(chunk(draw(st.integers(-1, 4).map(lambda v: v & 0xFFFFFFFF)),
                               draw(st.sampled_from([0, 1, 4096, 2 ** 63])), data,
                               crc=draw(st.sampled_from([None, 0])),
                               pagemap=draw(st.sampled_from([b"", b"\x00", b"\x01\x01", b"\x02" + P.REF.pack(0, 0),
                                                             b"\x02" + P.REF.pack(9, 1 << 40), b"\x07"]))))
        elif kind == "badchunk":
            head = P.CHUNK_HEAD.pack(draw(st.integers(0, 3)), draw(st.integers(0, 2 ** 64 - 1)),
                                     draw(st.integers(0, 255)), draw(st.integers(-128, 127)),
                                     draw(st.integers(0, 255)), draw(st.sampled_from([0, 1, P.MAX_CHUNK + 1, 2 ** 32 - 1])),
                                     draw(st.integers(0, 2 ** 32 - 1)), draw(st.integers(0, 2 ** 32 - 1)),
                                     draw(st.integers(0, 2 ** 32 - 1)))
            parts.append(P.frame(P.T_CHUNK, head + draw(st.binary(max_size=64))))
        elif kind == "raw":
            ftype = draw(st.integers(0, 255))
            length = draw(st.sampled_from([0, 5, P.MAX_FRAME + 1, 2 ** 32 - 1]))
            parts.append(P.HEADER.pack(draw(st.sampled_from([P.MAGIC, b"EMF2"])), ftype, length)
                         + draw(st.binary(max_size=32)))
        elif kind == "abort":
            parts.append(P.json_frame(P.T_ABORT, {"reason": "fuzz"}))
        else:
            parts.append(end(draw(st.one_of(st.none(), st.integers(0, 3))), draw(st.one_of(st.none(), st.integers(0, 9)))))
    data = b"".join(parts)
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]  # truncated stream
    return data


FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck), database=None)
SLOW = settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    run_stream(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_after_hello(data):
    run_stream(hello() + data)


@FUZZ
@given(adversarial_streams())
def test_adversarial_frames(data):
    run_stream(data)


# ---------------------------------------------------------------- fixed adversarial cases
def symlink_escape_streams() -> list[bytes]:
    """Plant a symlink pointing out, then try to write through it in every way."""
    out = []
    for link_target in ("..", "../..", "/", "/tmp", "../decoy-dir"):
        plant = hello() + entry(path="out", kind="symlink", target=link_target)
        out.append(plant + entry(path="out/x", id=0, size=3) + chunk(0, 0, b"pwn") + end())
        out.append(plant + entry(path="out/d", kind="dir") + end())
        out.append(plant + entry(path="out", id=0, size=3) + chunk(0, 0, b"pwn") + end())  # replace the link
        out.append(plant + entry(path="h", kind="hardlink", target="out") + end())
        out.append(plant + entry(path="out/../../decoy", kind="file", id=0, size=1) + end())
    return out


def duplicate_and_size_streams() -> list[bytes]:
    return [
        hello() + entry(path="f", id=0, size=3) + entry(path="f", id=1, size=3) + end(),
        hello() + entry(path="f", id=0, size=3) + entry(path="g", id=0, size=3) + end(),
        hello() + entry(path="f", id=0, size=3) + chunk(0, 0, b"abc") + chunk(0, 0, b"abc") + end(),
        hello() + entry(path="f", id=0, size=3) + chunk(0, 2, b"abc") + end(),
        # duplicate + missing: the byte count adds up (issue 12)
        hello() + entry(path="f", id=0, size=6) + chunk(0, 0, b"abc") + chunk(0, 0, b"abc") + end(1, 6),
        hello() + entry(path="f", id=0, size=6) + chunk(0, 3, b"def") + chunk(0, 0, b"abc") + end(1, 6),
        hello() + entry(path="f", id=0, size=4096)
        + chunk(0, 0, b"", raw_len=4096, pagemap=b"\x02" + P.REF.pack(0, 0), literal_len=0) + end(),
        hello() + entry(path="f", id=0, size=1 << 40) + end(),  # sparse, huge, never completed
        hello() + entry(path="f", id=0, size=3) + chunk(0, 0, b"abc", raw_len=P.MAX_CHUNK + 1) + end(),
        hello() + P.HEADER.pack(P.MAGIC, P.T_CHUNK, 2 ** 32 - 1),
        hello() + entry(path="f", id=0, size=3) + chunk(0, 0, b"abd", crc=zlib.crc32(b"abc")) + end(1, 3),
        hello() + entry(path="f", id=0, size=3) + chunk(0, 0, b"abc") + end(2, 3),
        hello() + entry(root="layer", path=".", kind="file", id=0, size=0) + end(),
        hello(("checkpoint", "layer")) + P.frame(P.T_ENTRY, b"[]") + end(),
        hello() + P.frame(P.T_ENTRY, b"{" * 5000) + end(),
        hello() + P.frame(P.T_ENTRY, b"x" * (P.MAX_JSON + 1)) + end(),
    ]


@st.composite
def shuffled_chunk_streams(draw) -> bytes:
    """A valid stream of a few multi-chunk files, then one chunk duplicated, moved or
    dropped-and-replaced (issue 12): byte counts may still add up, END must not succeed."""
    files = []
    for fid in range(draw(st.integers(1, 3))):
        pieces = [draw(st.binary(min_size=1, max_size=600)) for _piece in range(draw(st.integers(2, 4)))]
        files.append((fid, pieces))
    items = []  # (fid, offset, data) in stream order
    for fid, pieces in files:
        off = 0
        for piece in pieces:
            items.append((fid, off, piece))
            off += len(piece)
    n = len(items)
    how = draw(st.sampled_from(["duplicate", "swap", "dup_for_missing", "move"]))
    i = draw(st.integers(0, n - 1))
    j = draw(st.integers(0, n - 1).filter(lambda v: v != i))
    if how == "duplicate":
        items.insert(draw(st.integers(i + 1, n)), items[i])
    elif how == "swap":
        items[i], items[j] = items[j], items[i]
        if items[i][:2] == items[j][:2]:
            items.append(items[i])  # swapping equal positions changes nothing: duplicate instead
    elif how == "dup_for_missing":
        items[j] = items[i]
    else:
        moved = items.pop(i)
        items.insert(j, moved)
        if j == i:
            items.append(moved)
    # The order of offsets within each file must have changed or repeated, else this is valid.
    seen: dict[int, list[int]] = {}
    for fid, off, _data in items:
        seen.setdefault(fid, []).append(off)
    valid = all(offs == sorted(set(offs)) and len(offs) == len(files[fid][1]) for fid, offs in seen.items())
    if valid and len(seen) == len(files):
        items.append(items[0])  # e.g. chunks of different files swapped: make it a duplicate
    parts = [hello()]
    for fid, pieces in files:
        parts.append(entry(path=f"f{fid}", id=fid, size=sum(len(p) for p in pieces)))
    for fid, off, data in items:
        parts.append(chunk(fid, off, data))
    total = sum(len(p) for _path, pieces in files for p in pieces)
    parts.append(end(len(files), total))
    return b"".join(parts)


@FUZZ
@given(shuffled_chunk_streams())
def test_duplicated_or_reordered_chunk_never_ends_well(data):
    """A duplicated, reordered or dropped-and-duplicated chunk never yields a successful END."""
    before = TRIED["accepted"]
    run_stream(data)
    assert TRIED["accepted"] == before, "a stream with a duplicated or reordered chunk was accepted"


def test_shuffled_chunk_streams_baseline():
    """The same builder without the shuffle is accepted (so the test above tests the order rule)."""
    before = TRIED["accepted"]
    pieces = [b"a" * 300, b"b" * 200, b"c" * 5]
    data = hello() + entry(path="f0", id=0, size=505)
    off = 0
    for piece in pieces:
        data += chunk(0, off, piece)
        off += len(piece)
    run_stream(data + end(1, 505))
    assert TRIED["accepted"] == before + 1


def precopy_streams() -> list[bytes]:
    """Version 2: deletes and patches through planted symlinks, warm references never held."""
    warm_ref = bytes([P.P_WARM]) + P.REF.pack(1, 0x1000)
    mem = entry(root="warm", kind="mem", id=0, pid=1, runs=[[0x1000, 1]])
    rend = P.json_frame(P.T_ROUND_END, {"round": 1})
    out = []
    for link_target in ("..", "/", "../decoy-dir"):
        plant = hello() + entry(path="out", kind="symlink", target=link_target) + rend
        out.append(plant + entry(path="out/decoy", kind="delete") + end())
        out.append(plant + entry(path="out", kind="file", id=0, size=3, patch=True, patch_bytes=3)
                   + chunk(0, 0, b"pwn") + end())
        out.append(plant + entry(path="out/decoy", kind="file", id=0, size=3, patch=True, patch_bytes=3)
                   + chunk(0, 0, b"pwn") + end())
    out += [
        hello() + entry(path="p", id=0, size=4096, pages=True)
        + chunk(0, 0, b"", raw_len=4096, pagemap=warm_ref, literal_len=0) + end(),
        hello() + mem + chunk(0, 0, b"x" * 4096) + rend + entry(path="p", id=0, size=4096, pages=True)
        + chunk(0, 0, b"", raw_len=4096, pagemap=bytes([P.P_WARM]) + P.REF.pack(1, 0x2000), literal_len=0)
        + end(),
        hello() + mem + chunk(0, 0, b"x" * 4096) + chunk(0, 0, b"x" * 4096) + end(),
        hello() + mem + chunk(0, 0, b"x" * 100) + end(),
        hello() + entry(path=".", kind="delete") + end(),
        hello() + entry(path="f", id=0, size=3) + chunk(0, 0, b"abc") + entry(path="f", kind="delete") + end(),
        hello() + rend + rend + end(),
        hello(version=P.BASE_VERSION) + rend + end(),
        hello(version=P.BASE_VERSION) + mem + end(),
    ]
    return out


def test_fixed_adversarial_cases():
    cases = symlink_escape_streams() + duplicate_and_size_streams() + precopy_streams()
    for data in cases:
        run_stream(data)
        for cut in (1, len(data) // 2, len(data) - 1):
            run_stream(data[:cut])


def test_report_inputs_tried(capsys):
    """Runs last in this file: print how many inputs the fuzzer tried (issue 6 asks for the number)."""
    with capsys.disabled():
        print(f"\n[fuzz] receiver: {TRIED['inputs']} inputs tried, {TRIED['accepted']} accepted as valid "
              f"streams, {TRIED['rejected']} rejected with ProtocolError, 0 other exceptions, "
              "0 writes outside the destination")
    assert TRIED["inputs"] >= 3 * min(FUZZ_EXAMPLES, 100)


@pytest.fixture
def only_with_slow(request):
    """The long variants run only when asked for: ``pytest -m slow``."""
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("long fuzz run: select it with -m slow")


@pytest.mark.slow
def test_adversarial_frames_slow(only_with_slow):
    SLOW(given(adversarial_streams())(run_stream))()
    print(f"[fuzz] slow: {TRIED['inputs']} inputs tried so far")


@pytest.mark.slow
def test_random_bytes_after_hello_slow(only_with_slow):
    SLOW(given(st.binary(max_size=8192))(lambda data: run_stream(hello() + data)))()
    print(f"[fuzz] slow: {TRIED['inputs']} inputs tried so far")
