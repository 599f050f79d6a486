# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make clients of a migrated service notice at once that their connection is gone.

CRIU restores with ``tcp-close``: connections open at the freeze are dead on
the target. A client that had sent a request the source's kernel already
acknowledged does not retransmit anything; it waits for an answer until its
own read timeout (5 s in the soak writer, minutes for some clients). So after
the switch-over, for every connection that was established at the freeze, a
bare ACK with an arbitrary sequence number is sent to the client from the
service address. The client answers with its current ACK (RFC 793 / 5961),
which reaches the target; the target has no such connection and resets it
with exactly the sequence number the client expects, so the client's pending
read fails with ECONNRESET and it reconnects now.

With CRIU's network lock skipped (the criu role's default) the source's kernel
already closes these connections when the dumped process is killed, and the
client usually has its FIN or reset at the freeze; the ACK covers a close lost
on the way and edges that keep the lock.

Standard library only; Linux, IPv4.
"""
from __future__ import annotations

import os
import socket
import struct
import time

ESTABLISHED = "01"


def established_peers(proc_net_tcp: str, local_port: int) -> list[tuple[str, int]]:
    """(peer ip, peer port) of ESTABLISHED connections to ``local_port`` in a
    ``/proc/<pid>/net/tcp`` text."""
    out = []
    for line in proc_net_tcp.splitlines()[1:]:
        f = line.split()
        if len(f) < 4 or f[3] != ESTABLISHED:
            continue
        try:
            _unused, lport = f[1].split(":")
            rhex, rport = f[2].split(":")
            if int(lport, 16) != local_port:
                continue
            ip = socket.inet_ntoa(struct.pack("<I", int(rhex, 16)))
            out.append((ip, int(rport, 16)))
        except ValueError:
            continue
    return out


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ack_packet(src: str, sport: int, dst: str, dport: int, seq: int, ack: int) -> bytes:
    """An IPv4 packet carrying a bare TCP ACK (for an IP_HDRINCL raw socket)."""
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, 0x10, 1024, 0, 0)
    csum = _checksum(s + d + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, socket.IPPROTO_TCP, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + tcp


def poke_clients(address: str, port: int, peers: list[tuple[str, int]], rounds: int = 3,
                 spacing_s: float = 0.1) -> int:
    """Send the challenge ACKs; returns to how many clients. Best effort.

    Sent ``rounds`` times ``spacing_s`` apart: a client whose neighbour entry
    still points at the source (gratuitous ARP not yet applied) answers the
    first one towards the source, where nothing resets it; a later round
    gets through. After the reset a client answers with a harmless RST.
    """
    if not peers:
        return 0
    reached = set()
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        for r in range(rounds):
            if r:
                time.sleep(spacing_s)
            for ip, pport in peers:
                seq, ack = struct.unpack("!II", os.urandom(8))
                try:
                    sock.sendto(ack_packet(address, port, ip, pport, seq, ack), (ip, 0))
                    reached.add((ip, pport))
                except OSError:
                    continue
    return len(reached)
