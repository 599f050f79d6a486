# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import socket
import struct

from ansible_collections.edgemig.migration.plugins.module_utils.docker import garp

MAC = bytes.fromhex("020000000001")


def test_arp_packet_is_an_unsolicited_broadcast_reply():
    pkt = garp.arp_packet(MAC, "10.213.0.101")
    assert len(pkt) == 14 + 28
    assert pkt[:6] == b"\xff" * 6 and pkt[6:12] == MAC and pkt[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", pkt[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 2)       # Ethernet/IPv4, reply
    ip = socket.inet_aton("10.213.0.101")
    assert pkt[22:28] == MAC and pkt[28:32] == ip                         # sender = the new holder
    assert pkt[32:38] == b"\xff" * 6 and pkt[38:42] == ip                 # target IP = sender IP


def test_send_garp_sends_count_packets_on_the_interface(monkeypatch):
    sent = []

    class FakeSock:
        def __init__(self, *a):
            self.args = a

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, addr):
            sent.append(("bind", addr))

        def send(self, pkt):
            sent.append(("send", pkt))

    monkeypatch.setattr(garp.socket, "socket", FakeSock)
    garp.send_garp("eth0", "02:00:00:00:00:01", "10.213.0.101", count=2)
    assert sent[0] == ("bind", ("eth0", 0))
    assert sent[1:] == [("send", garp.arp_packet(MAC, "10.213.0.101"))] * 2
