# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a CRIU dump directory holds, as far as more than one part needs to know.

checkpoint.py counts the memory pages of a dump, the sender
(stream_sender.py) dedups them page by page. Both ask this
file, which imports nothing, so the Docker/CRIU side and the stream engine
share the rule without importing each other.
"""
from __future__ import annotations


def is_page_image(root: str, rel: str) -> bool:
    """CRIU keeps memory in ``pages-*.img``: page-aligned, worth page dedup."""
    base = rel.rsplit("/", 1)[-1]
    return root == "checkpoint" and base.startswith("pages-") and base.endswith(".img")
