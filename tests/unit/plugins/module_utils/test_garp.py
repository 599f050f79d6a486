# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import socket
import struct

from ansible_collections.edgemig.migration.plugins.module_utils.docker import garp

MAC = bytes.fromhex("020000000001")


def fields(pkt: bytes) -> tuple:
    assert len(pkt) == 14 + 28
    assert pkt[:6] == b"\xff" * 6 and pkt[6:12] == MAC and pkt[12:14] == b"\x08\x06"   # broadcast ARP
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", pkt[14:22])
    assert (htype, ptype, hlen, plen) == (1, 0x0800, 6, 4)                # Ethernet/IPv4
    return op, pkt[22:28], pkt[28:32], pkt[32:38], pkt[38:42]


def test_the_announcement_is_a_request_for_its_own_address():
    ip = socket.inet_aton("10.213.0.101")
    assert fields(garp.arp_packet(MAC, "10.213.0.101")) == (1, MAC, ip, b"\0" * 6, ip)


def test_the_reply_names_its_sender_as_target_so_linux_takes_it_as_gratuitous():
    # Linux's arp_is_garp: a reply whose target MAC is not its sender MAC (broadcast, say)
    # is no gratuitous ARP, and an entry updated within locktime keeps the old MAC.
    ip = socket.inet_aton("10.213.0.101")
    assert fields(garp.arp_packet(MAC, "10.213.0.101", garp.ARP_REPLY)) == (2, MAC, ip, MAC, ip)


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
    garp.send_garp("eth0", "02:00:00:00:00:01", "10.213.0.101", count=3)
    assert sent[0] == ("bind", ("eth0", 0))
    request, reply = garp.arp_packet(MAC, "10.213.0.101"), garp.arp_packet(MAC, "10.213.0.101", garp.ARP_REPLY)
    assert sent[1:] == [("send", request), ("send", reply), ("send", request)]
