# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import socket
import struct

from ansible_collections.edgemig.migration.plugins.module_utils.docker import tcp_reset as T

PROC = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 1 1 0000000000000000 100 0 0 10 0
   1: 020011AC:0CEA 0100D50A:D758 01 00000000:00000000 00:00000000 00000000   101        0 2 1 0000000000000000 20 4 30 10 -1
   2: 020011AC:0CEA 0100D50A:D759 06 00000000:00000000 00:00000000 00000000   101        0 3 1 0000000000000000 20 4 30 10 -1
   3: 020011AC:9C40 0100D50A:0CEA 01 00000000:00000000 00:00000000 00000000   101        0 4 1 0000000000000000 20 4 30 10 -1
"""


def test_established_peers_of_the_service_port_only():
    # 0x0CEA = 3306; 0100D50A little-endian = 10.213.0.1; 0xD758 = 55128
    assert T.established_peers(PROC, 3306) == [("10.213.0.1", 55128)]
    assert T.established_peers("garbage\nnot a table\n", 3306) == []


def test_ack_packet_checksums_verify():
    pkt = T.ack_packet("10.213.0.102", 3306, "10.213.0.1", 55128, 123, 456)
    assert len(pkt) == 40
    assert T._checksum(pkt[:20]) == 0                       # IP header
    src, dst, tcp = pkt[12:16], pkt[16:20], pkt[20:]
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    assert T._checksum(pseudo + tcp) == 0                   # TCP incl. pseudo header
    sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", tcp[:14])
    assert (sport, dport, seq, ack, off >> 4, flags) == (3306, 55128, 123, 456, 5, 0x10)


def test_poke_nobody_sends_nothing():
    assert T.poke_clients("10.213.0.102", 3306, []) == 0
