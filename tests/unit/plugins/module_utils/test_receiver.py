# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The receiving process's entry point (receiver.main), as the bootstrap runs it."""
from __future__ import annotations

import io
import json

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.protocol import ProtocolError
from ansible_collections.edgemig.migration.plugins.module_utils.receiver import main, parse_roots


def test_receiver_main_reports_error_line(tmp_path):
    out = io.BytesIO()
    dest = tmp_path / "d"
    dest.mkdir()
    rc = main(["--root", f"layer={dest}"], stdin=io.BytesIO(b"nonsense-garbage"), stdout=out)
    assert rc == 1
    msg = json.loads(out.getvalue().splitlines()[-1])
    assert "magic" in msg["error"]


def test_parse_roots():
    assert parse_roots(["layer=/a", "volume/x=/b/c"]) == {"layer": "/a", "volume/x": "/b/c"}
    for bad in ("layer", "=/a", "layer=rel"):
        with pytest.raises(ProtocolError, match="bad root spec"):
            parse_roots([bad])
