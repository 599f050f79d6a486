# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Network monitoring of the migration stream's TCP socket.

:func:`read_tcp_info` reads Linux ``struct tcp_info`` (``TCP_INFO``
getsockopt) and :class:`NetMonitor` turns successive readings plus the
receiver's acknowledged byte counts into windowed :class:`NetSample`s: RTT,
RTT ratio (the paper's eq. 1 input), loss (retransmitted / sent data segments
over the window), goodput and TCP's delivery-rate estimate.

Standard library only: this file also runs inside the receiver bootstrap.
"""
from __future__ import annotations

import collections
import socket
import struct
from dataclasses import dataclass

# (name, struct format, offset) of struct tcp_info, include/uapi/linux/tcp.h
# (Linux 6.x).  The kernel copies min(optlen, sizeof) bytes, so fields past
# what an older kernel returns are simply absent from the result.
_U8_FIELDS = (
    ("state", 0), ("ca_state", 1), ("retransmits", 2), ("probes", 3),
    ("backoff", 4), ("options", 5),
)
_FIELDS = (
    ("rto", "I", 8), ("ato", "I", 12), ("snd_mss", "I", 16), ("rcv_mss", "I", 20),
    ("unacked", "I", 24), ("sacked", "I", 28), ("lost", "I", 32), ("retrans", "I", 36),
    ("fackets", "I", 40),
    ("last_data_sent", "I", 44), ("last_ack_sent", "I", 48),
    ("last_data_recv", "I", 52), ("last_ack_recv", "I", 56),
    ("pmtu", "I", 60), ("rcv_ssthresh", "I", 64), ("rtt", "I", 68), ("rttvar", "I", 72),
    ("snd_ssthresh", "I", 76), ("snd_cwnd", "I", 80), ("advmss", "I", 84),
    ("reordering", "I", 88), ("rcv_rtt", "I", 92), ("rcv_space", "I", 96),
    ("total_retrans", "I", 100),
    ("pacing_rate", "Q", 104), ("max_pacing_rate", "Q", 112),
    ("bytes_acked", "Q", 120), ("bytes_received", "Q", 128),
    ("segs_out", "I", 136), ("segs_in", "I", 140),
    ("notsent_bytes", "I", 144), ("min_rtt", "I", 148),
    ("data_segs_in", "I", 152), ("data_segs_out", "I", 156),
    ("delivery_rate", "Q", 160),
    ("busy_time", "Q", 168), ("rwnd_limited", "Q", 176), ("sndbuf_limited", "Q", 184),
    ("delivered", "I", 192), ("delivered_ce", "I", 196),
    ("bytes_sent", "Q", 200), ("bytes_retrans", "Q", 208),
    ("dsack_dups", "I", 216), ("reord_seen", "I", 220), ("rcv_ooopack", "I", 224),
    ("snd_wnd", "I", 228), ("rcv_wnd", "I", 232), ("rehash", "I", 236),
    ("total_rto", "H", 240), ("total_rto_recoveries", "H", 242), ("total_rto_time", "I", 244),
)
_STRUCTS = {f: struct.Struct("=" + f) for f in ("I", "Q", "H")}
TCP_INFO_LEN = 256
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_U32 = 1 << 32


def parse_tcp_info(buf: bytes) -> dict:
    """Decode a ``struct tcp_info`` buffer (as many fields as it holds).

    Times are as the kernel gives them (``rtt``/``rttvar``/``min_rtt``/``rto``
    in microseconds, ``busy_time`` etc. in microseconds, ``delivery_rate`` and
    ``pacing_rate`` in bytes/s).
    """
    n = len(buf)
    info: dict = {}
    for name, off in _U8_FIELDS:
        if off < n:
            info[name] = buf[off]
    if n > 6:
        info["snd_wscale"] = buf[6] & 0x0F
        info["rcv_wscale"] = buf[6] >> 4
    if n > 7:
        # bitfields are allocated from the LSB on the little-endian ABIs Linux
        # runs on: bit 0 = delivery_rate_app_limited, bits 1-2 = fastopen fail.
        info["delivery_rate_app_limited"] = bool(buf[7] & 0x01)
        info["fastopen_client_fail"] = (buf[7] >> 1) & 0x03
    for name, fmt, off in _FIELDS:
        st = _STRUCTS[fmt]
        if off + st.size <= n:
            info[name] = st.unpack_from(buf, off)[0]
    return info


def read_tcp_info(sock) -> dict:
    """``TCP_INFO`` of a connected TCP socket as a dict (see :func:`parse_tcp_info`).

    Raises ``OSError`` for sockets that are not TCP.
    """
    return parse_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, TCP_INFO_LEN))


@dataclass
class NetSample:
    """One windowed network measurement, fed to ``controller.observe_network``.

    ``rtt_s`` is the kernel's smoothed RTT (0.0 when unknown, e.g. no
    TCP_INFO); ``rtt_ratio`` = ``rtt_s`` / previous sample's ``rtt_s`` (1.0
    for the first sample or when unknown); ``loss`` = retransmitted / sent
    data segments over the window; ``goodput_Bps`` = receiver-acknowledged
    stream bytes per second over the window; ``delivery_rate_Bps`` = TCP's
    latest delivery-rate sample, ``app_limited`` = that sample was taken while
    the sender had nothing to send (so it is only a lower bound of the link).
    """

    t: float
    rtt_s: float
    rtt_ratio: float
    loss: float
    goodput_Bps: float
    delivery_rate_Bps: float
    app_limited: bool
    min_rtt_s: float = 0.0
    snd_cwnd: int = 0
    total_retrans: int = 0
    tcp_info_ok: bool = True

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class NetMonitor:
    """Windowed RTT / loss / goodput monitor of one TCP socket.

    Call :meth:`sample` periodically (every ~100 ms) with the number of
    stream bytes the receiver has acknowledged so far.  Loss and goodput are
    computed against the newest reading at least ``window_s`` old (or the
    oldest one while the window fills up), which smooths the 100 ms jitter
    without lagging much.

    ``tcp_info`` overrides how readings are taken (tests, or a non-TCP
    transport); when reading fails the sample carries ``tcp_info_ok=False``
    and neutral values, and goodput still works.
    """

    def __init__(self, sock=None, window_s: float = 0.5, tcp_info=None) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive, got %r" % (window_s,))
        self.sock = sock
        self.window_s = float(window_s)
        self._read = tcp_info if tcp_info is not None else (lambda: read_tcp_info(self.sock))
        # (t, acked, retrans, data_segs_out)
        self._hist: collections.deque = collections.deque()
        self._prev_rtt = 0.0
        self.last: NetSample | None = None

    def _reading(self) -> dict | None:
        # A monitor without a (TCP) socket still measures goodput.
        try:
            return self._read()
        except (OSError, AttributeError, TypeError):
            return None

    def sample(self, now: float, bytes_acked_by_receiver: int) -> NetSample:
        info = self._reading()
        ok = bool(info) and "rtt" in info
        retrans = int(info.get("total_retrans", 0)) if ok else 0
        segs = int(info.get("data_segs_out", info.get("segs_out", 0))) if ok else 0

        hist = self._hist
        hist.append((now, int(bytes_acked_by_receiver), retrans, segs))
        # Keep exactly one reading older than the window as the reference.
        while len(hist) >= 3 and hist[1][0] <= now - self.window_s:
            hist.popleft()
        t0, a0, r0, s0 = hist[0]
        dt = now - t0
        goodput = (int(bytes_acked_by_receiver) - a0) / dt if dt > 0 else 0.0
        d_retrans = (retrans - r0) % _U32
        d_segs = (segs - s0) % _U32
        loss = min(1.0, d_retrans / d_segs) if d_segs > 0 else 0.0

        rtt_s = info["rtt"] / 1e6 if ok else 0.0
        ratio = rtt_s / self._prev_rtt if (rtt_s > 0 and self._prev_rtt > 0) else 1.0
        if rtt_s > 0:
            self._prev_rtt = rtt_s
        s = NetSample(
            t=now,
            rtt_s=rtt_s,
            rtt_ratio=ratio,
            loss=loss,
            goodput_Bps=max(0.0, goodput),
            delivery_rate_Bps=float(info.get("delivery_rate", 0)) if ok else 0.0,
            app_limited=bool(info.get("delivery_rate_app_limited", True)) if ok else True,
            min_rtt_s=info.get("min_rtt", 0) / 1e6 if ok else 0.0,
            snd_cwnd=int(info.get("snd_cwnd", 0)) if ok else 0,
            total_retrans=retrans,
            tcp_info_ok=ok,
        )
        self.last = s
        return s
