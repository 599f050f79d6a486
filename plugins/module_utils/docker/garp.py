# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Gratuitous ARP, so neighbours learn at once that a service address moved."""
from __future__ import annotations

import socket
import struct


def arp_packet(mac: bytes, ip: str) -> bytes:
    """An unsolicited ARP reply (sender = target = ``ip``) to broadcast."""
    ip_b = socket.inet_aton(ip)
    eth = b"\xff" * 6 + mac + struct.pack("!H", 0x0806)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac + ip_b + b"\xff" * 6 + ip_b
    return eth + arp


def send_garp(ifname: str, mac: str, ip: str, count: int = 3) -> None:
    """Broadcast ``count`` gratuitous ARPs for ``ip`` from ``mac`` (``aa:bb:..``).

    The MAC comes from netlink (``ip -j link``), not /sys/class/net: a process
    that entered a network namespace with nsenter still sees the root
    namespace's /sys.
    """
    pkt = arp_packet(bytes.fromhex(mac.replace(":", "")), ip)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((ifname, 0))
        for _unused in range(count):
            sock.send(pkt)
