# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import socket
import threading
import time

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.sender import netmon


@pytest.fixture
def tcp_pair():
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    client = socket.create_connection(lsock.getsockname())
    server, _unused = lsock.accept()
    lsock.close()
    yield client, server
    client.close()
    server.close()


def _drain(sock, n):
    got = 0
    while got < n:
        b = sock.recv(1 << 20)
        if not b:
            break
        got += len(b)


def test_tcp_info_layout_on_loopback(tcp_pair):
    client, server = tcp_pair
    n = 3_000_000
    t = threading.Thread(target=_drain, args=(server, n))
    t.start()
    client.sendall(b"x" * n)
    t.join()
    time.sleep(0.05)  # let the last ACKs arrive
    info = netmon.read_tcp_info(client)
    assert info["state"] == 1                      # TCP_ESTABLISHED
    # offset 200 (u64). tcpi_bytes_sent counts retransmitted bytes too, and loopback
    # retransmits under load: at least what was written, never less.
    assert info["bytes_sent"] >= n
    if info["bytes_retrans"] == 0:                 # offset 208: nothing sent twice, so exactly n
        assert info["bytes_sent"] == n
    assert info["bytes_acked"] in (n, n + 1)       # offset 120; the SYN may count
    assert info["bytes_received"] == 0
    assert 0 < info["rtt"] < 1_000_000             # microseconds, loopback
    assert info["rto"] >= 200_000                  # Linux minimum RTO is 200 ms
    assert info["snd_mss"] > 1000 and info["snd_cwnd"] >= 1
    assert info["data_segs_out"] >= n // info["snd_mss"]
    assert info["segs_out"] >= info["data_segs_out"]
    # Loopback may retransmit under load (nothing to assert about how often), but the
    # segment and byte counters of retransmissions agree on whether there were any.
    assert (info["total_retrans"] == 0) == (info["bytes_retrans"] == 0)
    assert info["delivery_rate"] > 0
    assert isinstance(info["delivery_rate_app_limited"], bool)
    assert info["unacked"] == 0 and info["notsent_bytes"] == 0
    srv = netmon.read_tcp_info(server)
    assert srv["bytes_received"] == n
    assert srv["data_segs_in"] <= info["data_segs_out"]          # a dropped segment: counted out twice, in once
    if info["total_retrans"] == 0:
        assert srv["data_segs_in"] == info["data_segs_out"]


def test_read_tcp_info_rejects_non_tcp():
    a, b = socket.socketpair()
    try:
        with pytest.raises(OSError):
            netmon.read_tcp_info(a)
    finally:
        a.close()
        b.close()


def test_parse_short_buffer():
    info = netmon.parse_tcp_info(bytes(104))       # an old kernel's struct
    assert info["total_retrans"] == 0 and "bytes_acked" not in info


class FakeInfo:
    def __init__(self):
        self.d = {"rtt": 10_000, "total_retrans": 0, "data_segs_out": 0, "delivery_rate": 5_000_000,
                  "delivery_rate_app_limited": False, "min_rtt": 8000, "snd_cwnd": 10}

    def __call__(self):
        return dict(self.d)


def test_monitor_window_loss_goodput_ratio():
    fake = FakeInfo()
    mon = netmon.NetMonitor(window_s=0.5, tcp_info=fake)
    s = mon.sample(0.0, 0)
    assert s.rtt_ratio == 1.0 and s.loss == 0.0 and s.goodput_Bps == 0.0 and s.tcp_info_ok
    acked = 0
    for i in range(1, 11):
        fake.d["data_segs_out"] += 100
        fake.d["total_retrans"] += 5
        acked += 1_000_000
        s = mon.sample(i * 0.1, acked)
    assert s.loss == pytest.approx(0.05)
    assert s.goodput_Bps == pytest.approx(10_000_000, rel=0.01)
    assert s.rtt_s == pytest.approx(0.01) and s.rtt_ratio == pytest.approx(1.0)
    assert s.delivery_rate_Bps == 5_000_000 and s.app_limited is False
    fake.d["rtt"] = 20_000
    s = mon.sample(1.1, acked)
    assert s.rtt_ratio == pytest.approx(2.0)
    assert mon.last is s


def test_monitor_counter_wraparound():
    fake = FakeInfo()
    fake.d["data_segs_out"] = (1 << 32) - 50
    fake.d["total_retrans"] = (1 << 32) - 1
    mon = netmon.NetMonitor(window_s=0.5, tcp_info=fake)
    mon.sample(0.0, 0)
    fake.d["data_segs_out"] = 50
    fake.d["total_retrans"] = 9
    assert mon.sample(0.6, 0).loss == pytest.approx(0.1)


def test_monitor_without_tcp_info_still_measures_goodput():
    a, b = socket.socketpair()
    try:
        mon = netmon.NetMonitor(a, window_s=1.0)
        mon.sample(0.0, 0)
        s = mon.sample(0.5, 1000)
        assert not s.tcp_info_ok and s.rtt_s == 0.0 and s.app_limited
        assert s.goodput_Bps == pytest.approx(2000)
    finally:
        a.close()
        b.close()


def test_monitor_on_live_socket(tcp_pair):
    client, server = tcp_pair
    mon = netmon.NetMonitor(client, window_s=0.2)
    mon.sample(time.monotonic(), 0)
    t = threading.Thread(target=_drain, args=(server, 1_000_000))
    t.start()
    client.sendall(b"y" * 1_000_000)
    t.join()
    time.sleep(0.02)
    s = mon.sample(time.monotonic(), 1_000_000)
    # Loopback can retransmit on a loaded machine: loss is a sane fraction, not always 0.
    assert s.tcp_info_ok and s.rtt_s > 0 and 0.0 <= s.loss <= 1.0 and s.goodput_Bps > 0
    assert set(s.as_dict()) >= {"t", "rtt_s", "rtt_ratio", "loss", "goodput_Bps", "delivery_rate_Bps", "app_limited"}


def test_monitor_rejects_bad_window():
    with pytest.raises(ValueError):
        netmon.NetMonitor(None, window_s=0)
