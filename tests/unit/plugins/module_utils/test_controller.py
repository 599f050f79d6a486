# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import math
import os

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.sender import controller as C
from ansible_collections.edgemig.migration.plugins.module_utils.sender.netmon import NetSample

MB = 1e6


def net(t, goodput=0.0, rtt=0.01, loss=0.0, delivery=0.0, app_limited=False, min_rtt=0.0):
    return NetSample(t=t, rtt_s=rtt, rtt_ratio=1.0, loss=loss, goodput_Bps=goodput,
                     delivery_rate_Bps=delivery, app_limited=app_limited, min_rtt_s=min_rtt)


# -- paper grid -------------------------------------------------------------

@pytest.mark.parametrize("rtt_ratio,loss,delta,state", [
    (0.5, 0.0, 4, 1), (1.0, 0.1, 2, 2), (1.5, 0.1, 0, 3),
    (0.5, 0.3, 3, 4), (1.0, 0.3, 1, 5), (1.5, 0.3, -1, 6),
    (0.5, 0.9, -2, 7), (1.0, 0.6, -3, 8), (2.0, 1.0, -4, 9),
])
def test_paper_grid_all_cells(rtt_ratio, loss, delta, state):
    assert C.paper_delta(rtt_ratio, loss) == delta
    assert C.paper_state(rtt_ratio, loss) == state


@pytest.mark.parametrize("rtt_ratio,loss,delta", [
    (0.85, 0.0, 2), (0.8499, 0.0, 4), (1.05, 0.0, 2), (1.0501, 0.0, 0),
    (1.0, 0.2, 1), (1.0, 0.1999, 2), (1.0, 0.5, 1), (1.0, 0.5001, -3),
    (0.0, 0.0, 4), (math.inf, 1.0, -4),
])
def test_paper_boundaries_fall_in_middle_band(rtt_ratio, loss, delta):
    assert C.paper_delta(rtt_ratio, loss) == delta


def test_paper_thresholds_are_parameters():
    assert C.paper_delta(1.0, 0.05, loss_thresholds=(0.01, 0.02)) == -3
    assert C.paper_delta(0.95, 0.0, rtt_thresholds=(0.97, 1.03)) == 4


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "x"])
def test_paper_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        C.paper_delta(bad, 0.0)
    with pytest.raises(ValueError):
        C.paper_delta(1.0, bad)


def test_paper_controller_steps_and_clamps():
    ctl = C.PaperController()
    assert ctl.current() == ("lz4", 4)
    ctl.observe_network(net(0.0, rtt=0.010))          # first sample: reference only
    assert ctl.current() == ("lz4", 4)
    ctl.observe_network(net(0.1, rtt=0.010))          # ratio 1.0, no loss: +2
    assert ctl.current() == ("lz4", 6)
    ctl.observe_network(net(0.2, rtt=0.005))          # ratio 0.5: +4, clamped
    assert ctl.current() == ("lz4", 9)
    ctl.observe_network(net(0.3, rtt=0.010, loss=0.9))  # ratio 2, heavy loss: -4
    assert ctl.current() == ("lz4", 5)
    for i in range(5):
        ctl.observe_network(net(0.4 + i, rtt=0.010, loss=0.9))  # -3 each
    assert ctl.current() == ("lz4", 1)
    d = ctl.describe()
    assert d["policy"] == "paper" and d["level"] == 1 and d["delta"] == -3 and d["state"] == 8


def test_paper_controller_clamps_initial_level_and_ignores_missing_rtt():
    assert C.PaperController(level=0).current() == ("lz4", 1)
    assert C.PaperController(level=42).current() == ("lz4", 9)
    ctl = C.PaperController()
    ctl.observe_network(net(0.0, rtt=0.0))
    ctl.observe_network(net(0.1, rtt=0.0))
    assert ctl.current() == ("lz4", 4)
    assert not ctl.wants_sample()


def test_paper_controller_min_interval():
    ctl = C.PaperController(min_interval_s=1.0)
    ctl.observe_network(net(0.0))
    ctl.observe_network(net(0.5))
    assert ctl.current() == ("lz4", 4)
    ctl.observe_network(net(1.0))
    assert ctl.current() == ("lz4", 6)


# -- fixed / factory --------------------------------------------------------

def test_fixed_controller():
    ctl = C.FixedController("zstd", 3)
    ctl.observe_network(net(0.0))
    ctl.observe_chunk("zstd", 3, 1000, 300, 0.001)
    assert ctl.current() == ("zstd", 3)
    assert ctl.describe()["policy"] == "fixed:zstd:3"
    assert ctl.totals()["zstd:3"]["raw"] == 1000
    with pytest.raises(ValueError):
        C.FixedController("lz4", 10)


@pytest.mark.parametrize("policy,expected", [
    ("fixed:lz4:4", ("lz4", 4)), ("fixed:none:0", ("none", 0)),
    ("fixed:zstd:3", ("zstd", 3)), ("fixed:wkdm:0", ("wkdm", 0)), ("fixed:zstd:-5", ("zstd", -5)),
    ("paper", ("lz4", 4)), ("model", ("zstd", 1)),
])
def test_make_controller(policy, expected):
    assert C.make_controller(policy, cores=2).current() == expected


@pytest.mark.parametrize("policy,msg", [
    ("", "policy"), ("fast", "unknown compression policy"), ("fixed", "unknown compression policy"),
    ("fixed:lz4", "fixed:<codec>:<level>"), ("fixed:lz4:4:1", "fixed:<codec>:<level>"),
    ("fixed:gzip:1", "unknown codec"), ("fixed:lz4:x", "not an integer"),
    ("fixed:lz4:0", "1..9"), ("fixed:none:1", "level 0 only"), (None, "policy"),
])
def test_make_controller_errors(policy, msg):
    with pytest.raises(ValueError, match=msg):
        C.make_controller(policy, cores=2)


def test_model_rejects_bad_args():
    with pytest.raises(ValueError):
        C.ModelController(0)
    with pytest.raises(ValueError, match="candidate"):
        C.ModelController(2, candidates=[("lz4", 12)])


# -- model controller -------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


# A plausible profile (speeds per core, bytes/s; ratios on memory pages).
PROFILE = {
    ("lz4", 1): (1000 * MB, 0.33, 3000 * MB),
    ("lz4", 2): (900 * MB, 0.29, 3000 * MB),
    ("lz4", 3): (190 * MB, 0.23, 3000 * MB),
    ("lz4", 6): (110 * MB, 0.225, 3000 * MB),
    ("zstd", -3): (860 * MB, 0.26, 1500 * MB),
    ("zstd", -1): (770 * MB, 0.215, 1500 * MB),
    ("zstd", 1): (690 * MB, 0.198, 1200 * MB),
    ("zstd", 3): (500 * MB, 0.183, 1200 * MB),
    ("zstd", 6): (170 * MB, 0.171, 1200 * MB),
    ("zstd", 9): (105 * MB, 0.169, 1200 * MB),
}


def primed(cores=2, **kw):
    clock = Clock()
    ctl = C.ModelController(cores, clock=clock, **kw)
    for (c, lv), (s, r, d) in PROFILE.items():
        ctl.set_estimate(c, lv, s, r, d)
    return ctl, clock


def feed(ctl, clock, seconds, goodput, app_limited=False, delivery=None):
    for _unused in range(int(seconds * 10)):
        clock.t += 0.1
        ctl.observe_network(net(clock.t, goodput=goodput, app_limited=app_limited,
                                delivery=goodput if delivery is None else delivery))


def test_model_keeps_initial_choice_without_network_estimate():
    ctl, clock = primed()
    assert ctl.current() == ("zstd", 1)
    assert ctl.describe()["net_rate_Bps"] is None


def test_model_fast_network_picks_none_or_lz4_fast():
    ctl, clock = primed()
    feed(ctl, clock, 2, goodput=10_000 * MB)          # 10 GB/s link, 2 cores
    assert ctl.current() == ("none", 0)
    ctl, clock = primed()
    feed(ctl, clock, 2, goodput=1_000 * MB)           # 1 GB/s link
    assert ctl.current()[0] in ("lz4", "zstd") and ctl.current() in (("lz4", 1), ("lz4", 2), ("zstd", -3), ("zstd", -1))


def test_model_slow_network_picks_strong_zstd():
    ctl, clock = primed()
    feed(ctl, clock, 2, goodput=10 * MB)
    assert ctl.current() in (("zstd", 6), ("zstd", 9))
    preds = ctl.describe()["predicted_Bps"]
    assert preds["none:0"] == 10 * MB


def test_model_switches_when_network_changes():
    ctl, clock = primed()
    feed(ctl, clock, 2, goodput=10_000 * MB)
    assert ctl.current() == ("none", 0)
    feed(ctl, clock, 3, goodput=10 * MB)            # link collapses: old max ages out
    assert ctl.current() in (("zstd", 6), ("zstd", 9))
    feed(ctl, clock, 3, goodput=200 * MB)
    assert ctl.current() in (("zstd", 1), ("zstd", 3))
    assert ctl.describe()["switches"] >= 3


def test_model_single_core_is_cpu_bound_sooner():
    ctl, clock = primed(cores=1)
    feed(ctl, clock, 2, goodput=200 * MB)
    one = ctl.current()
    ctl, clock = primed(cores=8)
    feed(ctl, clock, 2, goodput=200 * MB)
    many = ctl.current()
    assert PROFILE[one][1] >= PROFILE[many][1]   # more cores afford a better ratio


def test_model_hysteresis_and_dwell():
    ctl, clock = primed(hysteresis=0.05, min_dwell_s=1.0)
    feed(ctl, clock, 2, goodput=10 * MB)
    first = ctl.current()
    before = ctl.switches
    feed(ctl, clock, 0.5, goodput=10.2 * MB)        # tiny change: no switch
    assert ctl.current() == first and ctl.switches == before


def test_model_app_limited_goodput_is_treated_as_lower_bound():
    """CPU-bound sender: goodput under-estimates the link, so the model probes upwards."""
    ctl, clock = primed()
    feed(ctl, clock, 2, goodput=50 * MB, app_limited=True, delivery=40 * MB)
    d = ctl.describe()
    assert d["net_probing"] is True
    assert d["net_rate_Bps"] == pytest.approx(50 * MB * 1.25)


def test_model_uses_delivery_rate_only_when_not_app_limited():
    ctl, clock = primed()
    feed(ctl, clock, 1, goodput=20 * MB, delivery=500 * MB, app_limited=False)
    assert ctl.net_rate_Bps == pytest.approx(500 * MB)
    ctl, clock = primed()
    feed(ctl, clock, 1, goodput=20 * MB, delivery=500 * MB, app_limited=True)
    assert ctl.net_rate_Bps == pytest.approx(20 * MB * 1.25)


def test_model_real_sampling_on_data():
    clock = Clock()
    ctl = C.ModelController(2, clock=clock, sample_bytes=64 * 1024)
    data = (os.urandom(512) + bytes(1536) + b"edge migration " * 100) * 64
    for _unused in range(ctl.warmup_samples):         # warm-up: the first chunks are all probed
        assert ctl.wants_sample()
        ctl.sample(data)
    assert not ctl.wants_sample()               # then rescheduled
    est = ctl.describe()["estimates"]
    assert set(est) == {"%s:%d" % c for c in C.DEFAULT_CANDIDATES if c[0] != "none"}
    assert all(0 < e["ratio"] < 1 and e["speed_Bps"] > 0 for e in est.values())
    clock.t += 10
    assert ctl.wants_sample()
    feed(ctl, clock, 1, goodput=5 * MB)
    assert ctl.current()[0] == "zstd"


def test_model_sampling_overhead_budget():
    clock = Clock()
    ctl = C.ModelController(2, clock=clock, max_overhead=0.03, sample_period_s=0.01)
    ctl.sample(os.urandom(256 * 1024))
    spent = ctl._sample_cpu
    # next probe no sooner than spent / 3 %
    assert ctl._next_sample >= spent / 0.03 - 1e-9


def test_model_observe_chunk_corrects_estimates():
    ctl, clock = primed()
    feed(ctl, clock, 1, goodput=100 * MB)
    cur = ctl.current()
    speed, ratio, _unused = PROFILE[cur]
    # real chunks compress 20 % better and run at half the probed speed
    for _unused in range(10):
        ctl.observe_chunk(cur[0], cur[1], 1 << 20, int((1 << 20) * ratio * 0.8), (1 << 20) / (speed / 2))
    feed(ctl, clock, 0.5, goodput=100 * MB)
    assert ctl.corr_ratio < 1.0 and ctl.corr_speed < 1.0
    ctl.observe_chunk("none", 0, 100, 100, 0.0)     # ignored by the model, still counted
    assert ctl.totals()["none:0"]["raw"] == 100


def test_describe_is_json_serialisable():
    import json
    ctl, clock = primed()
    feed(ctl, clock, 1, goodput=100 * MB)
    # The report stores it as JSON: it must come back as it went in, naming the policy that ran.
    described_by = [(ctl.describe(), "model"), (C.PaperController().describe(), "paper"),
                    (C.FixedController("lz4", 1).describe(), "fixed:lz4:1")]
    for described, policy in described_by:
        assert json.loads(json.dumps(described)) == described
        assert described["policy"] == policy and isinstance(described["codec"], str)


def test_model_seed_decides_before_the_first_network_sample():
    ctl, clock = primed()
    ctl.seed_network(1 * MB)                       # probe said: slow link
    assert ctl.current() in (("zstd", 6), ("zstd", 9))
    assert ctl.describe()["seeded_Bps"] == 1 * MB
    clock.t += 0.3
    ctl.observe_network(net(clock.t, goodput=0))   # nothing acked yet: seed kept
    assert ctl.net_rate_Bps == 1 * MB


def test_model_seed_is_replaced_by_measurements():
    ctl, clock = primed()
    ctl.seed_network(1 * MB)
    feed(ctl, clock, 2, goodput=10_000 * MB)
    assert ctl.current() == ("none", 0)
    ctl.seed_network(5 * MB)                       # a late seed never overrides a measurement
    assert ctl.net_rate_Bps == 10_000 * MB


def test_model_without_probed_estimates_never_switches():
    """With a link estimate but no codec estimates only "none" is predictable:
    that is no reason to drop compression."""
    ctl = C.ModelController(2, clock=Clock())
    ctl.seed_network(10_000 * MB)
    assert ctl.current() == ("zstd", 1)


def test_model_seed_then_first_sample_decides_for_that_chunk():
    """The pipeline samples before asking current(): with a seeded slow link
    the very first chunk already goes out with a dense codec."""
    clock = Clock()
    ctl = C.ModelController(2, clock=clock, sample_bytes=64 * 1024)
    ctl.seed_network(0.6 * MB)                  # 5 Mbit/s, measured by the link probe
    assert ctl.current() == ("zstd", 1)         # no codec estimates yet: no decision
    page_like = (os.urandom(256) + bytes(1024) + b"GET /index.html HTTP/1.1\r\n" * 30) * 128
    ctl.sample(page_like)
    codec, level = ctl.current()
    ratio = {k: v["ratio"] for k, v in ctl.describe()["estimates"].items()}
    assert ratio["%s:%d" % (codec, level)] <= min(ratio.values()) * 1.05


def test_model_collects_small_pieces_before_probing():
    """A few KiB (CRIU's small images) say nothing about codec speed: they
    are gathered until sample_bytes, then probed once."""
    clock = Clock()
    ctl = C.ModelController(2, clock=clock, sample_bytes=64 * 1024)
    piece = (os.urandom(300) + bytes(3796))     # 4 KiB
    for _unused in range(15):
        ctl.sample(piece)
    assert ctl.describe()["estimates"] == {}    # 60 KiB so far: nothing probed
    ctl.sample(piece)
    assert set(ctl.describe()["estimates"]) == {"%s:%d" % c for c in C.DEFAULT_CANDIDATES if c[0] != "none"}


def test_model_climbs_fast_when_app_limited_without_queue():
    """Link 10 Mbit/s -> 1 Gbit/s: the slow codec now limits goodput, the RTT
    falls to its minimum; the estimate doubles per sample instead of x1.25."""
    ctl, clock = primed()
    for _unused in range(10):                            # 1.25 MB/s, queue at the bottleneck
        clock.t += 0.1
        ctl.observe_network(net(clock.t, goodput=1.25 * MB, delivery=1.25 * MB, rtt=0.05, min_rtt=0.0002))
    assert ctl.current() in (("zstd", 6), ("zstd", 9))
    for _unused in range(6):                             # 0.6 s of the fast link, CPU-bound on zstd:9
        clock.t += 0.1
        ctl.observe_network(net(clock.t, goodput=30 * MB, app_limited=True, rtt=0.0003, min_rtt=0.0002))
    assert ctl.net_rate_Bps == pytest.approx(60 * MB)   # x2, not x1.25
    first = ctl.current()
    assert first != ("zstd", 9)
    for _unused in range(4):                             # the faster codec gets more through: climb on
        clock.t += 0.1
        ctl.observe_network(net(clock.t, goodput=60 * MB, app_limited=True, rtt=0.0003, min_rtt=0.0002))
    assert ctl.net_rate_Bps == pytest.approx(120 * MB)
    assert PROFILE[ctl.current()][0] > PROFILE[first][0]   # a faster codec again


def test_model_forgets_old_rate_when_a_queue_builds():
    ctl, clock = primed()
    feed(ctl, clock, 1, goodput=100 * MB)
    assert ctl.net_rate_Bps == pytest.approx(100 * MB)
    for _unused in range(6):                             # drop to 2.5 MB/s, queue grows
        clock.t += 0.1
        ctl.observe_network(net(clock.t, goodput=2.5 * MB, delivery=2.5 * MB, rtt=0.08, min_rtt=0.0002))
    assert ctl.net_rate_Bps == pytest.approx(2.5 * MB)
    assert ctl.current() in (("zstd", 6), ("zstd", 9))
