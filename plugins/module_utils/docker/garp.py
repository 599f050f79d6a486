# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Gratuitous ARP, so neighbours learn at once that a service address moved."""
from __future__ import annotations

import socket
import struct

ARP_REQUEST = 1
ARP_REPLY = 2


def arp_packet(mac: bytes, ip: str, op: int = ARP_REQUEST) -> bytes:
    """A gratuitous ARP for ``ip`` from ``mac``, broadcast: sender IP = target IP.

    The request form (RFC 5227's ARP announcement, target MAC zero) is what Linux's own
    address changes send. A reply carries the sender's MAC as target MAC too: Linux takes
    an ARP as gratuitous, and lets it override a neighbour entry at once, only when a
    reply's target MAC equals its sender MAC (``arp_is_garp``); any other reply is ignored
    for ``locktime`` (1 s) after the entry last changed, so the old edge's MAC stayed until
    the entry's reachable time ran out (15-45 s) when the neighbour had talked to the
    service just before the switch.
    """
    ip_b = socket.inet_aton(ip)
    eth = b"\xff" * 6 + mac + struct.pack("!H", 0x0806)
    target_mac = mac if op == ARP_REPLY else b"\x00" * 6
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + ip_b + target_mac + ip_b
    return eth + arp


def send_garp(ifname: str, mac: str, ip: str, count: int = 3) -> None:
    """Broadcast ``count`` gratuitous ARPs for ``ip`` from ``mac`` (``aa:bb:..``),
    announcements and replies in turn (neighbours differ in which one they take).

    The MAC comes from netlink (``ip -j link``), not /sys/class/net: a process
    that entered a network namespace with nsenter still sees the root
    namespace's /sys.
    """
    hw = bytes.fromhex(mac.replace(":", ""))
    packets = [arp_packet(hw, ip, ARP_REQUEST), arp_packet(hw, ip, ARP_REPLY)]
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((ifname, 0))
        for n in range(count):
            sock.send(packets[n % 2])
