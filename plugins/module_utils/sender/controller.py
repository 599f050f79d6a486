# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Compression controllers: which (codec, level) the next chunk gets.

* :class:`PaperController` - the paper's adaptive lz4 level (sec. III-C,
  eq. 1-2): level 1..9, default 4, moved by :func:`paper_delta` on every
  network sample.
* :class:`ModelController` - ours: the paper's transfer model (sec. V,
  eq. 9-11) used as a predictor, the way "agile VM handoff" (Ha et al.,
  SEC 2017) does: measure each candidate's compression speed and ratio on the
  data actually flowing, estimate the link capacity, predict each candidate's
  end-to-end raw throughput, pick the best.
* :class:`FixedController` - one (codec, level) throughout (baselines).

All share the pipeline contract (docs/design.md)::

    ctl.current() -> (codec, level)
    ctl.observe_chunk(codec, level, raw_len, comp_len, cpu_seconds)
    ctl.wants_sample() -> bool ; ctl.sample(data)
    ctl.observe_network(sample)          # netmon.NetSample, every ~100 ms
    ctl.seed_network(rate_Bps)           # link probe result before the stream
    ctl.describe() -> dict               # for the timeline

Standard library only (plus :mod:`codecs` for probing).
"""
from __future__ import annotations

import collections
import math
import time

from ansible_collections.edgemig.migration.plugins.module_utils.wire import codecs

PAPER_RTT_THRESHOLDS = (0.85, 1.05)
PAPER_LOSS_THRESHOLDS = (0.2, 0.5)
PAPER_DEFAULT_LEVEL = 4
PAPER_LEVEL_RANGE = (1, 9)
# _PAPER_GRID[loss band][rtt band]; bands 0 = below the low threshold,
# 1 = between the thresholds (inclusive), 2 = above the high threshold.
_PAPER_GRID = (
    (4, 2, 0),
    (3, 1, -1),
    (-2, -3, -4),
)


def _band(x: float, thresholds: tuple[float, float], what: str) -> int:
    if not isinstance(x, (int, float)) or math.isnan(x) or x < 0:
        raise ValueError("%s must be a non-negative number, got %r" % (what, x))
    lo, hi = thresholds
    if x < lo:
        return 0
    if x <= hi:
        return 1
    return 2


def paper_state(rtt_ratio: float, loss: float,
                rtt_thresholds: tuple[float, float] = PAPER_RTT_THRESHOLDS,
                loss_thresholds: tuple[float, float] = PAPER_LOSS_THRESHOLDS) -> int:
    """The paper's network state 1..9 (eq. 1), numbered row-major from the best.

    State = 3 * loss band + RTT band + 1, so state 1 is "RTT falling, loss low"
    (delta +4) and state 9 is "RTT rising, loss high" (delta -4).  The paper's
    Figure 4 numbering is not legible in the text; this one follows eq. (2)'s
    order of rows.  Boundaries as in :func:`paper_delta`.
    """
    return 3 * _band(loss, loss_thresholds, "loss") + _band(rtt_ratio, rtt_thresholds, "rtt_ratio") + 1


def paper_delta(rtt_ratio: float, loss: float,
                rtt_thresholds: tuple[float, float] = PAPER_RTT_THRESHOLDS,
                loss_thresholds: tuple[float, float] = PAPER_LOSS_THRESHOLDS) -> int:
    """Level change of the paper's eq. (2).

    ``rtt_ratio`` is the current RTT divided by the previous sample's RTT,
    ``loss`` the fraction of segments lost (0..1).

    =================  ===========  ==============  ===========
    loss \\ RTT ratio   < 0.85       0.85 .. 1.05    > 1.05
    =================  ===========  ==============  ===========
    < 0.2              +4           +2              0
    0.2 .. 0.5         +3           +1              -1
    > 0.5              -2           -3              -4
    =================  ===========  ==============  ===========

    Correction: eq. (2) as printed gives the cell (RTT 0.85-1.05, loss
    0.2-0.5) twice (as +1 and as -1) and never the cell (RTT > 1.05, loss
    0.2-0.5).  The only assignment consistent with the rest of the grid
    (values fall by one per step right in a row, and rows are ordered by
    loss) is -1 for (RTT > 1.05, loss 0.2-0.5), which is what this
    implements.

    Boundaries: the printed intervals are closed on both ends, so they
    overlap at the thresholds.  Here the middle band is closed:
    a value exactly equal to a threshold (0.85, 1.05, 0.2, 0.5) falls in the
    middle band; below the low threshold is the "better" band, above the high
    one the "worse" band.

    The loss thresholds (20 % / 50 %) are kept as printed although TCP sees
    such loss rates only on a broken path; they are parameters.
    """
    return _PAPER_GRID[_band(loss, loss_thresholds, "loss")][_band(rtt_ratio, rtt_thresholds, "rtt_ratio")]


def _clamp(x: int, lo: int, hi: int) -> int:
    return lo if x < lo else hi if x > hi else x


class _Base:
    """Common bookkeeping: totals per (codec, level) for describe()."""

    policy = "base"

    def __init__(self) -> None:
        self._totals: dict[tuple[str, int], list] = {}

    def _account(self, codec: str, level: int, raw_len: int, comp_len: int, cpu_seconds: float) -> None:
        t = self._totals.get((codec, level))
        if t is None:
            t = self._totals[(codec, level)] = [0, 0, 0.0, 0]
        t[0] += raw_len
        t[1] += comp_len
        t[2] += max(0.0, cpu_seconds)
        t[3] += 1

    def observe_chunk(self, codec: str, level: int, raw_len: int, comp_len: int, cpu_seconds: float) -> None:
        self._account(codec, level, raw_len, comp_len, cpu_seconds)

    def wants_sample(self) -> bool:
        return False

    def sample(self, data) -> None:
        return None

    def observe_network(self, sample) -> None:
        return None

    def seed_network(self, rate_Bps) -> None:
        return None

    def totals(self) -> dict:
        return {
            "%s:%d" % k: {"raw": v[0], "comp": v[1], "cpu_s": round(v[2], 6), "chunks": v[3]}
            for k, v in self._totals.items()
        }


class FixedController(_Base):
    """Always the same (codec, level); validated up front."""

    policy = "fixed"

    def __init__(self, codec: str, level: int) -> None:
        super().__init__()
        try:
            codecs.validate(codec, level)
        except codecs.CodecError as exc:
            raise ValueError(str(exc)) from exc
        self.codec = codec
        self.level = level

    def current(self) -> tuple[str, int]:
        return (self.codec, self.level)

    def describe(self) -> dict:
        return {"policy": "fixed:%s:%d" % (self.codec, self.level), "codec": self.codec, "level": self.level}


class PaperController(_Base):
    """The paper's adaptive lz4: level in [1, 9], moved by eq. (2).

    On each network sample the RTT ratio is this sample's smoothed RTT over
    the RTT of the previous sample the controller used, and the loss is the
    sample's windowed retransmitted/sent fraction.  The first sample (no
    previous RTT) and samples without RTT (no TCP_INFO) change nothing.
    ``min_interval_s`` > 0 ignores samples closer than that to the previous
    update (the paper does not say how often it adjusts).

    Note the grid raises the level when the network looks *good* (RTT falling
    or stable, little loss) and lowers it on heavy loss; on a steady link
    that is +2 per sample, so the level saturates at 9 within a few samples.
    That is the paper's algorithm as printed; we reproduce it, we do not fix
    it (the model controller is our answer).
    """

    policy = "paper"

    def __init__(self, level: int = PAPER_DEFAULT_LEVEL,
                 rtt_thresholds: tuple[float, float] = PAPER_RTT_THRESHOLDS,
                 loss_thresholds: tuple[float, float] = PAPER_LOSS_THRESHOLDS,
                 min_interval_s: float = 0.0) -> None:
        super().__init__()
        lo, hi = PAPER_LEVEL_RANGE
        self.level = _clamp(int(level), lo, hi)
        self.rtt_thresholds = tuple(rtt_thresholds)
        self.loss_thresholds = tuple(loss_thresholds)
        self.min_interval_s = float(min_interval_s)
        self._prev_rtt: float | None = None
        self._last_t: float | None = None
        self.last_state: int | None = None
        self.last_delta: int | None = None
        self.last_ratio: float | None = None
        self.last_loss: float | None = None
        self.updates = 0

    def current(self) -> tuple[str, int]:
        return ("lz4", self.level)

    def observe_network(self, sample) -> None:
        rtt = float(getattr(sample, "rtt_s", 0.0) or 0.0)
        if rtt <= 0:
            return
        t = float(sample.t)
        if self._prev_rtt is None:
            self._prev_rtt, self._last_t = rtt, t
            return
        if self._last_t is not None and t - self._last_t < self.min_interval_s:
            return
        ratio = rtt / self._prev_rtt
        loss = min(1.0, max(0.0, float(sample.loss)))
        self.last_state = paper_state(ratio, loss, self.rtt_thresholds, self.loss_thresholds)
        self.last_delta = paper_delta(ratio, loss, self.rtt_thresholds, self.loss_thresholds)
        lo, hi = PAPER_LEVEL_RANGE
        self.level = _clamp(self.level + self.last_delta, lo, hi)
        self.last_ratio, self.last_loss = ratio, loss
        self._prev_rtt, self._last_t = rtt, t
        self.updates += 1

    def describe(self) -> dict:
        return {
            "policy": "paper", "codec": "lz4", "level": self.level,
            "state": self.last_state, "delta": self.last_delta,
            "rtt_ratio": self.last_ratio, "loss": self.last_loss, "updates": self.updates,
        }


# Candidates of the model controller: the cheap end of lz4 (fast and two HC
# levels) and zstd from its fast negative levels up to 9.  wkdm is not a
# default candidate: on process memory it is dominated by lz4 level 2 in both
# speed and ratio (bench/codec_bench.py); pass it explicitly to try it.
DEFAULT_CANDIDATES: tuple[tuple[str, int], ...] = (
    ("none", 0),
    ("lz4", 1), ("lz4", 2), ("lz4", 3), ("lz4", 6),
    ("zstd", -3), ("zstd", -1), ("zstd", 1), ("zstd", 3), ("zstd", 6), ("zstd", 9),
)


class _Est:
    """EWMA estimates of one candidate (speeds in raw bytes per CPU second)."""

    __slots__ = ("speed", "ratio", "dspeed", "n")

    def __init__(self) -> None:
        self.speed = 0.0
        self.ratio = 1.0
        self.dspeed = 0.0
        self.n = 0

    def update(self, speed: float, ratio: float, dspeed: float, alpha: float) -> None:
        if self.n == 0:
            self.speed, self.ratio, self.dspeed = speed, ratio, dspeed
        else:
            self.speed += alpha * (speed - self.speed)
            self.ratio += alpha * (ratio - self.ratio)
            self.dspeed += alpha * (dspeed - self.dspeed)
        self.n += 1


def _cpu_time() -> float:
    return time.thread_time()


class ModelController(_Base):
    """Throughput-model controller (ours).

    For every candidate c it predicts the raw-data throughput the pipeline
    would reach, i.e. the paper's eq. (8) with eq. (6) for the network stage:

        T(c) = min(read_rate, cores * V_compress(c), net_rate / ratio(c),
                   rx_cores * V_decompress(c))
        T(none) = min(read_rate, net_rate)

    and picks the largest.  Eq. (11) (compression pays iff
    V_compress (1 - ratio) >= V_network) is the single-core, serial special
    case of comparing T(c) against T(none).

    Speeds and ratios come from probing: every ``sample_period_s`` (when
    :meth:`wants_sample` says so) the pipeline hands over a chunk and
    :meth:`sample` compresses and decompresses a ``sample_bytes`` slice of it
    with every candidate, timed in thread CPU time.  Probing is rescheduled so
    it stays under ``max_overhead`` of one core.  Probe figures of all
    candidates are comparable with each other; the real chunks of the active
    candidate (:meth:`observe_chunk`) then yield correction factors (real /
    probed speed and ratio, e.g. bigger chunks compress better, pool threads
    run slower than a lone probe) that are applied to every candidate, as Ha
    et al. do.

    The link capacity ``net_rate`` is the max, over the last ``net_window_s``,
    of the acknowledged goodput and of TCP's delivery rate from samples that
    were not application-limited.  Goodput only bounds the link from below
    when the sender is CPU-bound, so if most recent samples were
    app-limited the estimate is multiplied by ``probe_gain`` (as BBR probes
    for bandwidth): the controller then drifts towards faster codecs until
    the link, not the CPU, becomes the limit.  The newest sample's RTT
    against TCP's min RTT speeds both directions up: app-limited with no
    queue (RTT <= 2 x min RTT + ``queue_slack_s``) multiplies by
    ``room_gain`` instead (the link just got faster: climb quickly); a queue
    while not app-limited limits the max to the last ``net_recent_s`` (the
    link just got slower: forget the older, higher rates).  Before the first
    sample, :meth:`seed_network` may give the link probe's result.

    A switch needs a predicted gain above ``hysteresis`` and at least
    ``min_dwell_s`` since the previous switch.
    """

    policy = "model"

    def __init__(self, cores: int, candidates=DEFAULT_CANDIDATES, *,
                 rx_cores: int | None = None, read_rate_Bps: float = math.inf,
                 initial: tuple[str, int] = ("zstd", 1),
                 sample_bytes: int = 128 * 1024, sample_period_s: float = 0.5,
                 max_overhead: float = 0.03, alpha: float = 0.3,
                 hysteresis: float = 0.05, min_dwell_s: float = 0.3,
                 net_window_s: float = 1.5, probe_gain: float = 1.25,
                 warmup_samples: int = 3, room_gain: float = 2.0, queue_slack_s: float = 0.002,
                 net_recent_s: float = 0.5, clock=time.monotonic) -> None:
        super().__init__()
        if int(cores) < 1:
            raise ValueError("cores must be >= 1, got %r" % (cores,))
        self.cores = int(cores)
        self.rx_cores = int(rx_cores) if rx_cores else self.cores
        self.read_rate_Bps = float(read_rate_Bps)
        usable = codecs.available()
        cands = []
        for c, lv in candidates:
            try:
                codecs.validate(c, lv)
            except codecs.CodecError as exc:
                raise ValueError("bad model candidate: %s" % exc) from exc
            if usable.get(c) is None and (c, lv) not in cands:
                cands.append((c, lv))
        if ("none", 0) not in cands:
            cands.insert(0, ("none", 0))
        self.candidates = cands
        self._probe = [c for c in cands if c[0] != "none"]
        if initial not in cands:
            initial = self._probe[0] if self._probe else ("none", 0)
        self.active = initial
        self.sample_bytes = int(sample_bytes)
        self.sample_period_s = float(sample_period_s)
        self.max_overhead = float(max_overhead)
        self.alpha = float(alpha)
        self.hysteresis = float(hysteresis)
        self.min_dwell_s = float(min_dwell_s)
        self.net_window_s = float(net_window_s)
        self.probe_gain = float(probe_gain)
        self.room_gain = float(room_gain)
        self.queue_slack_s = float(queue_slack_s)
        self.net_recent_s = float(net_recent_s)
        self.warmup_samples = int(warmup_samples)
        self._warm = 0
        self._acc = bytearray()  # small pieces collected for the next probe
        self._clock = clock

        self.est: dict[tuple[str, int], _Est] = {c: _Est() for c in self._probe}
        self.corr_speed = 1.0
        self.corr_ratio = 1.0
        self._real: dict[tuple[str, int], list] = {}
        self._net: collections.deque = collections.deque()  # (t, goodput, non-app-limited delivery rate, app_limited)
        self.net_rate_Bps: float | None = None
        self.seeded_Bps: float | None = None
        self.net_probing = False
        self._next_sample = -math.inf
        self._sample_cpu = 0.0
        self._t0: float | None = None
        self._last_switch = -math.inf
        self._rot = 0
        self.switches = 0
        self.predicted: dict[tuple[str, int], float] = {}

    # -- contract -----------------------------------------------------------

    def current(self) -> tuple[str, int]:
        return self.active

    def wants_sample(self) -> bool:
        if not self._probe:
            return False
        # Warm-up: the first chunks are all probed (one 128 KiB slice rarely
        # speaks for a whole dump, and a small dump is gone within the first
        # sample period), then every sample_period_s within the CPU budget.
        return self._warm < self.warmup_samples or self._clock() >= self._next_sample

    def sample(self, data) -> None:
        """Probe every candidate on a slice of ``data`` (a chunk being sent).

        Data shorter than ``sample_bytes`` (CRIU's many small images, small
        layer files) is collected until there is enough: timing codecs on a
        few KiB measures call overhead, not speed, and such files compress
        unlike the pages that make up the bulk of a dump.
        """
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        mv = memoryview(data).cast("B")
        n = mv.nbytes
        if n == 0:
            return
        if n < self.sample_bytes:
            self._acc += mv
            if len(self._acc) < self.sample_bytes:
                return
            mv = memoryview(bytes(self._acc))
            n = mv.nbytes
            self._acc = bytearray()
        if n > self.sample_bytes:
            # Rotate the page-aligned offset so successive probes see
            # different parts of chunks (headers vs bodies of files, ...).
            span = (n - self.sample_bytes) // 4096 + 1
            off = (self._rot * 7919 % span) * 4096
            self._rot += 1
            mv = mv[off:off + self.sample_bytes]
            n = mv.nbytes
        spent = 0.0
        for cand in self._probe:
            c, lv = cand
            t0 = _cpu_time()
            comp = codecs.compress(c, lv, mv)
            t1 = _cpu_time()
            codecs.decompress(c, lv, comp, n)
            t2 = _cpu_time()
            spent += t2 - t0
            # A zero CPU delta (coarse clock) means "very fast": use 1 us.
            self.est[cand].update(n / max(t1 - t0, 1e-6), len(comp) / n, n / max(t2 - t1, 1e-6), self.alpha)
        self._sample_cpu += spent
        self._warm += 1
        # Keep probing below max_overhead of one core.
        self._next_sample = now + max(self.sample_period_s, spent / self.max_overhead)
        self._decide(now)

    def set_estimate(self, codec: str, level: int, speed_Bps: float, ratio: float,
                     dspeed_Bps: float = math.inf) -> None:
        """Set a candidate's estimates directly (tests, offline profiles)."""
        e = self.est.get((codec, level))
        if e is None:
            raise ValueError("%s:%d is not a candidate" % (codec, level))
        e.speed, e.ratio, e.dspeed, e.n = float(speed_Bps), float(ratio), float(dspeed_Bps), max(e.n, 1)

    def observe_chunk(self, codec: str, level: int, raw_len: int, comp_len: int, cpu_seconds: float) -> None:
        self._account(codec, level, raw_len, comp_len, cpu_seconds)
        key = (codec, level)
        if key not in self.est:
            return
        r = self._real.get(key)
        if r is None:
            r = self._real[key] = [0, 0, 0.0]
        r[0] += raw_len
        r[1] += comp_len
        r[2] += max(0.0, cpu_seconds)

    def observe_network(self, sample) -> None:
        now = float(sample.t)
        dr = 0.0 if sample.app_limited else float(sample.delivery_rate_Bps or 0.0)
        self._net.append((now, float(sample.goodput_Bps or 0.0), dr, bool(sample.app_limited)))
        while self._net and self._net[0][0] < now - self.net_window_s:
            self._net.popleft()
        # What the newest sample says about the bottleneck queue: RTT at its
        # minimum while we are app-limited means the link has room (our
        # codec, not the network, is the limit); RTT well above the minimum
        # while we are not app-limited means a queue, i.e. the link is full.
        rtt, min_rtt = float(sample.rtt_s or 0.0), float(sample.min_rtt_s or 0.0)
        known = rtt > 0 and min_rtt > 0
        roomy = known and sample.app_limited and rtt <= 2 * min_rtt + self.queue_slack_s
        queued = known and not sample.app_limited and rtt > 2 * min_rtt + self.queue_slack_s
        window = self._net
        if queued:
            # A full link: only the recent past counts (a rate drop must not
            # hide behind the window's older, higher maximum).
            window = [x for x in self._net if x[0] >= now - self.net_recent_s]
        best = max(max(g, d) for _unused, g, d, _unused in window)
        app_limited = roomy or sum(1 for *_unused, a in self._net if a) * 2 >= len(self._net)
        self.net_probing = app_limited
        gain = self.room_gain if roomy else self.probe_gain if app_limited else 1.0
        if best > 0:
            self.net_rate_Bps = best * gain
        # else: nothing acknowledged yet (first samples): keep the seed / last
        # estimate rather than forgetting what we knew.
        self._decide(self._clock())

    def seed_network(self, rate_Bps) -> None:
        """Start from a link estimate measured before the stream (PROBE frames).

        Without it the first decision waits for acknowledged goodput (~0.25-0.5
        s), and on a dump of a few MiB everything is compressed with the
        initial guess by then. The first real samples replace it.
        """
        if rate_Bps and rate_Bps > 0 and self.net_rate_Bps is None:
            self.net_rate_Bps = float(rate_Bps)
            self.seeded_Bps = float(rate_Bps)
            self._decide(self._clock())

    # -- model --------------------------------------------------------------

    def _fold_real(self) -> None:
        """Turn real chunk statistics into correction factors."""
        for key, (raw, comp, cpu) in list(self._real.items()):
            e = self.est[key]
            if raw < 256 * 1024 or e.n == 0:
                continue
            if e.ratio > 0:
                f = (comp / raw) / e.ratio
                self.corr_ratio += self.alpha * (min(4.0, max(0.25, f)) - self.corr_ratio)
            if cpu > 0 and e.speed > 0:
                f = (raw / cpu) / e.speed
                self.corr_speed += self.alpha * (min(4.0, max(0.25, f)) - self.corr_speed)
            del self._real[key]

    def predict(self, cand: tuple[str, int], net_rate: float | None = None) -> float | None:
        """Predicted raw-data throughput (bytes/s) of a candidate, None if unknown."""
        net = self.net_rate_Bps if net_rate is None else net_rate
        if net is None:
            return None
        if cand[0] == "none":
            return min(self.read_rate_Bps, net)
        e = self.est.get(cand)
        if e is None or e.n == 0:
            return None
        ratio = max(1e-6, e.ratio * self.corr_ratio)
        speed = e.speed * self.corr_speed
        return min(self.read_rate_Bps, self.cores * speed, net / ratio, self.rx_cores * e.dspeed)

    def _decide(self, now: float) -> None:
        self._fold_real()
        if self.net_rate_Bps is None:
            return
        if any(e.n == 0 for e in self.est.values()):
            # Not every candidate probed yet: only "none" could be predicted,
            # and switching to it on that basis would be a guess.
            return
        preds = {}
        for cand in self.candidates:
            p = self.predict(cand)
            if p is not None:
                preds[cand] = p
        self.predicted = preds
        if not preds:
            return
        best = max(preds, key=preds.__getitem__)
        if best == self.active:
            return
        cur = preds.get(self.active)
        if cur is not None and preds[best] <= cur * (1.0 + self.hysteresis):
            return
        if now - self._last_switch < self.min_dwell_s:
            return
        self.active = best
        self._last_switch = now
        self.switches += 1

    def describe(self) -> dict:
        now = self._clock()
        elapsed = (now - self._t0) if self._t0 is not None else 0.0
        return {
            "policy": "model",
            "codec": self.active[0],
            "level": self.active[1],
            "cores": self.cores,
            "net_rate_Bps": self.net_rate_Bps,
            "seeded_Bps": self.seeded_Bps,
            "net_probing": self.net_probing,
            "corr_speed": round(self.corr_speed, 4),
            "corr_ratio": round(self.corr_ratio, 4),
            "switches": self.switches,
            "sample_overhead": round(self._sample_cpu / elapsed, 5) if elapsed > 0 else None,
            "predicted_Bps": {"%s:%d" % k: round(v) for k, v in self.predicted.items()},
            "estimates": {
                "%s:%d" % k: {"speed_Bps": round(e.speed), "ratio": round(e.ratio, 4), "dspeed_Bps": round(e.dspeed) if math.isfinite(e.dspeed) else None}
                for k, e in self.est.items() if e.n
            },
        }


def parse_policy(policy) -> tuple[str, str | None, int | None]:
    """Check a policy string: ``("model"|"paper", None, None)`` or ``("fixed", codec, level)``.

    Raises ValueError saying what is wrong. Modules call it before anything
    is frozen; ``make_controller`` calls it too, so both accept the same.
    """
    if not isinstance(policy, str) or not policy:
        raise ValueError("compression policy must be 'model', 'paper' or 'fixed:<codec>:<level>', got %r" % (policy,))
    p = policy.strip()
    if p in ("model", "paper"):
        return p, None, None
    if p.startswith("fixed:"):
        parts = p.split(":")
        if len(parts) != 3:
            raise ValueError("fixed policy must look like 'fixed:<codec>:<level>' (e.g. fixed:lz4:4), got %r" % policy)
        _unused, codec, lv = parts
        if codec not in codecs.CODECS:
            raise ValueError("unknown codec %r in policy %r (known: %s)" % (codec, policy, ", ".join(codecs.CODECS)))
        try:
            level = int(lv)
        except ValueError:
            raise ValueError("level %r in policy %r is not an integer" % (lv, policy)) from None
        return "fixed", codec, level
    raise ValueError("unknown compression policy %r: use 'model', 'paper' or 'fixed:<codec>:<level>'" % policy)


def make_controller(policy: str, cores: int, **kwargs):
    """Controller for a policy string: ``model``, ``paper`` or ``fixed:<codec>:<level>``.

    ``kwargs`` go to the controller's constructor (``ModelController`` /
    ``PaperController`` options). The string is checked by ``parse_policy``.
    """
    kind, codec, level = parse_policy(policy)
    if kind == "model":
        return ModelController(cores, **kwargs)
    if kind == "paper":
        return PaperController(**kwargs)
    return FixedController(codec, level)
