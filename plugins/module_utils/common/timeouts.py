# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every bound a migration derives from its ``stall_timeout``, in one place.

The sender gives up when nothing was acknowledged for ``stall_timeout`` s;
everything else is sized from that, so that the side with the better message
(the sender) gives up first and the beats fit inside the other side's
watchdog (docs/design.md, "Phases, commit point, fencing"). A stall timeout
of 0 means "no watchdog": the sizes below say what each bound is then.
Imports nothing: both ends use it (the receiver ships it).
"""
from __future__ import annotations

COMMIT_TIMEOUT = 60.0  # the receiver's wait for COMMIT after ``verified`` without a stall timeout
# ``docker start --checkpoint``: every restore from a checkpoint (the receiver's after COMMIT, the
# recovery's, docker_checkpoint_restore's) waits this long for Docker and CRIU.
RESTORE_TIMEOUT_S = 300.0
# What the target may take after the restore and its health check: the address, ARP, the answer.
SWITCHOVER_MARGIN_S = 30.0


def receiver_idle_s(stall_timeout: float) -> float:
    """The receiver's idle watchdog (and its wait for COMMIT): twice the sender's, so the sender gives up first."""
    return 2 * stall_timeout


def commit_wait_s(stall_timeout: float) -> float:
    """How long the receiver waits for COMMIT after ``verified``."""
    return receiver_idle_s(stall_timeout) if stall_timeout else COMMIT_TIMEOUT


def keepalive_interval(stall_timeout: float) -> float:
    """KEEPALIVE frames between a pre-copy session's rounds: four beats fit in the receiver's watchdog."""
    return max(0.5, stall_timeout / 2)


def ssh_keepalive_s(stall_timeout: float) -> int:
    """SSH transport keepalives: a silent phase (checkpoint, restore) is not dropped and a dead peer is noticed."""
    return max(1, int(stall_timeout / 4) or 5)


def confirm_timeout_s(stall_timeout: float) -> float:
    """The stream's final confirmation after END (the stall watchdog covers unacknowledged bytes)."""
    return max(60.0, 4.0 * stall_timeout)


def outcome_limit_s(health_timeout: float) -> float:
    """The driver's wait for the receiver's answer after COMMIT: what the target may legitimately
    take (restore, health check, address)."""
    return RESTORE_TIMEOUT_S + health_timeout + SWITCHOVER_MARGIN_S


def outcome_silence_s(stall_timeout: float) -> float:
    """No line at all from the receiver after COMMIT for this long (it beats every 2 s): outcome unknown.
    0 without a stall timeout (only the overall limit counts)."""
    return max(10.0, 2.0 * stall_timeout) if stall_timeout else 0.0
