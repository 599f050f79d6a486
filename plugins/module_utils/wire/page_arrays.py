# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The page size and NumPy, for the modules that handle memory pages as arrays (wkdm,
criu_images, process_memory): one place for both.

NumPy is optional on an edge host: ``np`` is None when it does not import, and
``NUMPY_IMPORT_ERROR`` says why (the wkdm codec reports it; the others fall back to
plain Python). Imports nothing of the collection: it is shipped with the receiver.
"""
from __future__ import annotations

# What the page modules import from here (np is only re-exported).
__all__ = ["NUMPY_IMPORT_ERROR", "PAGE_SIZE", "np"]

try:
    import numpy as np
except ImportError as exc:  # pragma: no cover - depends on the host
    np = None  # type: ignore[assignment]
    NUMPY_IMPORT_ERROR: ImportError | None = exc
else:
    NUMPY_IMPORT_ERROR = None

# x86-64 and arm64 (4K) pages: the unit of CRIU's pagemaps and pages-*.img, of
# /proc/<pid>/pagemap, and of WKdm's dictionary resets.
PAGE_SIZE = 4096
