# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.edgemig.migration`` importable from the checkout (see collection_path.py)."""
from __future__ import annotations

from collection_path import ensure_collection_path

ensure_collection_path()
