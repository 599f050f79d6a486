# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault injection for the fault suite (docs/reliability.md): an environment variable that the
playbook sets on the source's migration module and on the target's prepare, never a module option
and never anything a sender edge can send (the target's faults travel in the ticket the controller
has the target write)."""
from __future__ import annotations

import json
import os

FAULTS_ENV = "EDGEMIG_FAULTS"
FAULT_KEYS = {"corrupt_every": int, "restore": bool, "health": bool, "pause_verified": float,
              "pause_restore": float}


def read_faults(environ: dict | None = None) -> dict:
    """Fault injection for the fault suite only (docs/reliability.md), never a module option.

    ``EDGEMIG_FAULTS`` is a JSON object set in the module's environment by
    migrate.yml from ``edgemig_faults`` (the target's: into its ticket): ``corrupt_every`` (the receiver flips
    a byte in every n-th chunk), ``restore`` (the target restores a checkpoint
    that does not exist), ``health`` (the target's health check fails),
    ``pause_verified`` (s the sender waits after ``verified`` before it
    commits), ``pause_restore`` (s the receiver waits after COMMIT before it
    restores). Unknown keys or bad JSON raise ValueError.
    """
    raw = (os.environ if environ is None else environ).get(FAULTS_ENV, "").strip()
    out = {key: kind() for key, kind in FAULT_KEYS.items()}
    if not raw:
        return out
    faults = json.loads(raw)
    if not isinstance(faults, dict) or set(faults) - set(FAULT_KEYS):
        raise ValueError(f"{FAULTS_ENV} must be a JSON object with keys among {sorted(FAULT_KEYS)}, got {raw!r}")
    out.update({key: FAULT_KEYS[key](value or 0) for key, value in faults.items()})
    return out
