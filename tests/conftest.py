# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.edgemig.migration`` importable from the checkout (see collection_path.py)."""
from __future__ import annotations

import os

from collection_path import ensure_collection_path

ensure_collection_path()

# A stdin of the test session's own (a fresh, blocking /dev/null): ansible refuses a
# non-blocking stdin, and the one a CI run hands us may be shared with processes that
# change its flags.
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
