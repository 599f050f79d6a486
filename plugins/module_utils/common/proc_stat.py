# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A process's start time from /proc/<pid>/stat: with the pid, what tells one process from a later one
given the same pid (the pre-copy's process identities, the parked note's owner)."""
from __future__ import annotations


def parse_start_time(stat_text: str) -> int:
    """Field 22 (starttime, clock ticks after boot) of a /proc/<pid>/stat text.

    Field 2 (comm, in parentheses) may hold spaces and parentheses itself: count
    from the last ``)``, after which field 3 comes."""
    try:
        rest = stat_text[stat_text.rindex(")") + 1:].split()
        return int(rest[22 - 3])
    except (ValueError, IndexError):
        raise ValueError(f"unparsable /proc/<pid>/stat: {stat_text[:120]!r}") from None
