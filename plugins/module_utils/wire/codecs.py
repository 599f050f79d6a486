# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Chunk codecs of the migration stream: ``none``, ``lz4``, ``zstd``, ``wkdm``.

This is the pipeline's hot path, and it runs on the sender (Ansible host
side) and inside the receiver process on the target host, so it only needs
the standard library plus whichever of ``lz4``, ``zstandard`` and ``numpy``
the codec in use needs.  A missing library only fails when its codec is used.

Every codec is "raw": no sizes, checksums or magic of its own, because the
chunk header of the stream already carries codec, level, raw length,
compressed length and a CRC32 of the raw bytes.  ``decompress`` always checks
that the output has exactly ``raw_len`` bytes.  Empty input compresses to
empty output with every codec (LZ4 cannot decode an empty raw block).

Levels
------

``none``  level 0 only.

``lz4``   1..9, the paper's nine lz4 strengths, mapped onto python-lz4's
          *block* API (no frame overhead, ``store_size=False``) the way the
          ``lz4`` command line does, with level 1 made faster than 2:

          ======  ============================================
          level   python-lz4 call
          ======  ============================================
          1       ``mode="fast", acceleration=8``
          2       ``mode="default"`` (LZ4_compress_default)
          3..9    ``mode="high_compression", compression=level``
          ======  ============================================

          On process-memory pages (``bench/codec_bench.py``, one core):
          level 1 0.33 ratio ~1.0 GB/s, level 2 0.29 ~0.9 GB/s, level 3 (HC)
          0.23 ~190 MB/s, level 9 0.22 ~45 MB/s.  The jump between 2 and 3 is
          LZ4's fast/HC cliff; there is no level in between.

``zstd``  -5..19 (zstd's negative "fast" levels down to -5, the ordinary
          levels up to 19; 20..22 need huge windows and are pointless for
          chunks).  Frames are written without content size and checksum.

``wkdm``  level 0 only (WKdm has no knob), see :mod:`wkdm`.

GIL: ``lz4.block`` and ``zstandard`` release the GIL while they work, and the
WKdm codec is a fixed number of large NumPy operations, so the pipeline
compresses chunks in a thread pool.  Nothing here does per-byte Python work.

Thread safety: ``zstandard`` (de)compressor objects must not be shared by
threads, so they are cached per thread and per level.
"""
from __future__ import annotations

import threading

try:
    import lz4.block as _lz4block
except ImportError as exc:  # pragma: no cover - depends on the host
    _lz4block = None
    LZ4_IMPORT_ERROR: ImportError | None = exc
else:
    LZ4_IMPORT_ERROR = None

try:
    import zstandard as _zstd
except ImportError as exc:  # pragma: no cover - depends on the host
    _zstd = None
    ZSTD_IMPORT_ERROR: ImportError | None = exc
else:
    ZSTD_IMPORT_ERROR = None

from ansible_collections.edgemig.migration.plugins.module_utils.wire import wkdm as _wkdm

CODECS = {"none": 0, "lz4": 1, "zstd": 2, "wkdm": 3}
CODEC_NAMES = {v: k for k, v in CODECS.items()}

LEVELS = {
    "none": (0, 0),
    "lz4": (1, 9),
    "zstd": (-5, 19),
    "wkdm": (0, 0),
}
# Pairs are enumerable, so validation on the hot path is one set lookup.
_VALID = frozenset((c, lv) for c, (lo, hi) in LEVELS.items() for lv in range(lo, hi + 1))

LZ4_FAST_ACCELERATION = 8


class CodecError(ValueError):
    """Bad codec/level, missing library, or data that does not decode."""


def available() -> dict[str, str | None]:
    """Codec name -> ``None`` if usable here, else why not (for diagnostics)."""
    return {
        "none": None,
        "lz4": None if _lz4block is not None else "python lz4 not importable: %s" % LZ4_IMPORT_ERROR,
        "zstd": None if _zstd is not None else "python zstandard not importable: %s" % ZSTD_IMPORT_ERROR,
        "wkdm": None if _wkdm.np is not None else "numpy not importable: %s" % _wkdm.NUMPY_IMPORT_ERROR,
    }


def validate(codec: str, level: int) -> None:
    """Raise :class:`CodecError` unless ``(codec, level)`` is usable."""
    # ints only: bools and 3.0 hash like ints.
    if isinstance(level, int) and not isinstance(level, bool) and (codec, level) in _VALID:
        return
    if codec not in LEVELS:
        raise CodecError("unknown codec %r (known: %s)" % (codec, ", ".join(CODECS)))
    lo, hi = LEVELS[codec]
    if lo == hi:
        raise CodecError("codec %r takes level %d only, got %r" % (codec, lo, level))
    raise CodecError("codec %r level must be an integer in %d..%d, got %r" % (codec, lo, hi, level))


_tls = threading.local()


def _zstd_compressor(level: int):
    try:
        cache = _tls.zc
    except AttributeError:
        cache = _tls.zc = {}
    c = cache.get(level)
    if c is None:
        if _zstd is None:
            raise CodecError("codec 'zstd' needs the python zstandard package: %s" % ZSTD_IMPORT_ERROR)
        # Raw length and CRC travel in the chunk header: skip both in the frame.
        c = cache[level] = _zstd.ZstdCompressor(level=level, write_content_size=False, write_checksum=False)
    return c


def _zstd_decompressor():
    try:
        return _tls.zd
    except AttributeError:
        if _zstd is None:
            raise CodecError("codec 'zstd' needs the python zstandard package: %s" % ZSTD_IMPORT_ERROR) from None
        d = _tls.zd = _zstd.ZstdDecompressor()
        return d


def _need_lz4() -> None:
    if _lz4block is None:
        raise CodecError("codec 'lz4' needs the python lz4 package: %s" % LZ4_IMPORT_ERROR)


def _c_none(level: int, data) -> bytes:
    return bytes(data)


def _c_lz4(level: int, data) -> bytes:
    _need_lz4()
    if level >= 3:
        return _lz4block.compress(data, mode="high_compression", compression=level, store_size=False)
    if level == 2:
        return _lz4block.compress(data, mode="default", store_size=False)
    return _lz4block.compress(data, mode="fast", acceleration=LZ4_FAST_ACCELERATION, store_size=False)


def _c_zstd(level: int, data) -> bytes:
    return _zstd_compressor(level).compress(data)


def _c_wkdm(level: int, data) -> bytes:
    try:
        return _wkdm.compress(data)
    except _wkdm.WKdmError as exc:
        raise CodecError(str(exc)) from exc


def _d_none(data, raw_len: int) -> bytes:
    return bytes(data)


def _d_lz4(data, raw_len: int) -> bytes:
    _need_lz4()
    try:
        # uncompressed_size is the buffer size; lz4 returns what it decoded.
        return _lz4block.decompress(data, uncompressed_size=raw_len)
    except _lz4block.LZ4BlockError as exc:
        raise CodecError("lz4: %s" % exc) from exc


def _d_zstd(data, raw_len: int) -> bytes:
    d = _zstd_decompressor()  # outside the try: raises CodecError itself without zstandard
    try:
        # zstandard trusts a content size in the frame header over
        # max_output_size: a corrupt header could make it allocate gigabytes.
        fcs = _zstd.frame_content_size(data)
        if fcs not in (-1, raw_len):
            raise CodecError("zstd: frame claims %d bytes, expected %d" % (fcs, raw_len))
        return d.decompress(data, max_output_size=raw_len)
    except _zstd.ZstdError as exc:
        raise CodecError("zstd: %s" % exc) from exc


def _d_wkdm(data, raw_len: int) -> bytes:
    try:
        return _wkdm.decompress(data, raw_len)
    except _wkdm.WKdmError as exc:
        raise CodecError("wkdm: %s" % exc) from exc


_COMPRESS = {"none": _c_none, "lz4": _c_lz4, "zstd": _c_zstd, "wkdm": _c_wkdm}
_DECOMPRESS = {"none": _d_none, "lz4": _d_lz4, "zstd": _d_zstd, "wkdm": _d_wkdm}


def compress(codec: str, level: int, data) -> bytes:
    """Compress a bytes-like ``data`` with ``codec`` at ``level``.

    Incompressible data can come out larger than it went in; the caller
    decides whether to send it raw instead.
    """
    if not isinstance(level, int) or isinstance(level, bool) or (codec, level) not in _VALID:
        validate(codec, level)
    if not len(data):
        return b""
    return _COMPRESS[codec](level, data)


def decompress(codec: str, level: int, data, raw_len: int) -> bytes:
    """Decompress ``data``; raise :class:`CodecError` unless exactly ``raw_len`` bytes result."""
    if not isinstance(level, int) or isinstance(level, bool) or (codec, level) not in _VALID:
        validate(codec, level)
    if not isinstance(raw_len, int) or raw_len < 0:
        raise CodecError("raw_len must be a non-negative integer, got %r" % (raw_len,))
    if raw_len == 0:
        if len(data):
            raise CodecError("%s: %d bytes of data for an empty chunk" % (codec, len(data)))
        return b""
    out = _DECOMPRESS[codec](data, raw_len)
    if len(out) != raw_len:
        raise CodecError("%s: decompressed to %d bytes, expected %d" % (codec, len(out), raw_len))
    return out
