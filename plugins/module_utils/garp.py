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


def interface_mac(ifname: str) -> bytes:
    with open(f"/sys/class/net/{ifname}/address", encoding="ascii") as fh:
        return bytes.fromhex(fh.read().strip().replace(":", ""))


def send_garp(ifname: str, ip: str, count: int = 3) -> None:
    mac = interface_mac(ifname)
    pkt = arp_packet(mac, ip)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((ifname, 0))
        for _ in range(count):
            sock.send(pkt)
