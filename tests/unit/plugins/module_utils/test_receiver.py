# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The receiving process's serving loop (receiver.serve); the request and ticket: tests/security."""
from __future__ import annotations

import io
import json

from ansible_collections.edgemig.migration.plugins.module_utils.receiver.receiver import Session, serve


def test_receiver_main_reports_error_line(tmp_path):
    out = io.BytesIO()
    dest = tmp_path / "d"
    dest.mkdir()
    rc = serve(Session(roots={"layer": str(dest)}), stdin=io.BytesIO(b"nonsense-garbage"), stdout=out)
    assert rc == 1
    msg = json.loads(out.getvalue().splitlines()[-1])
    assert "magic" in msg["error"]
