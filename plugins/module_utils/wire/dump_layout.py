# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a CRIU dump directory holds, as far as more than one part needs to know.

checkpoint.py counts the memory pages of a dump, the sender
(stream_sender.py) dedups them page by page, and tmpfs_restore.py (on the
target, shipped with the receiver) sets them aside for the restore. All ask
this file, which imports nothing, so the Docker/CRIU side and the stream
engine share the rule without importing each other.
"""
from __future__ import annotations

import re

# CRIU's memory images: pages-<id>.img (page-aligned page contents).
PAGES_IMAGE = re.compile(r"^pages-\d+\.img$")


def is_pages_name(name: str) -> bool:
    """Whether the file name ``name`` is one of CRIU's ``pages-<id>.img``."""
    return PAGES_IMAGE.match(name) is not None


def is_page_image(root: str, rel: str) -> bool:
    """CRIU keeps memory in ``pages-*.img``: page-aligned, worth page dedup."""
    return root == "checkpoint" and is_pages_name(rel.rsplit("/", 1)[-1])
