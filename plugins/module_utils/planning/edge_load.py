# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What an edge can still take, read from its Docker daemon and /proc (for the evacuation planner).

Pure parsers of what Docker and the kernel report; edge_load_info asks, these read the answers.
"""
from __future__ import annotations


def mem_available(meminfo: str) -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None when absent: the planner then does not compare memory)."""
    for line in meminfo.splitlines():
        key, _sep, rest = line.partition(":")
        if key.strip() == "MemAvailable":
            parts = rest.split()
            if parts and parts[0].isdigit():
                return int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return None


def memory_in_use(stats: dict) -> int:
    """A container's memory as ``docker stats`` shows it: usage less the inactive page cache (the part
    the kernel drops rather than a checkpoint dumps). 0 when the daemon gave no figure."""
    mem = (stats or {}).get("memory_stats") or {}
    usage = int(mem.get("usage") or 0)
    detail = mem.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0)) or 0
    return max(0, usage - int(cache)) if cache < usage else usage


def published_ports(containers: list) -> list[int]:
    """Host ports the running containers of ``GET /containers/json`` publish, sorted, each once."""
    ports = set()
    for c in containers or []:
        for p in (c or {}).get("Ports") or []:
            if isinstance(p, dict) and p.get("PublicPort"):
                ports.add(int(p["PublicPort"]))
    return sorted(ports)
