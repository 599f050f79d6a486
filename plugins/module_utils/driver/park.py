# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A move parked ahead (issue 26): the gate a connected, warm migration waits at before its freeze.

edge_migrate's ``park`` option: once the target is connected and the warm rounds ran, the driver
waits here, with the service running, until a file ``go`` or ``nogo`` appears in ``park.dir`` (the
action plugin writes it on the source when the controller's gate answers), or ``park.timeout`` ends.
So a handover pays only the freeze path: no task start, no module start, no SSH to the target.

The gate directory is the release: whoever can create a file in it can start the freeze. It must
be a directory (not a link) of this user that nobody else may write (the action plugin's job
directory, mode 0700), and hold neither file when the migration starts: a left-over ``go`` would
release at once, a left-over ``nogo`` would give up at once, neither on anyone's word now.
"""
from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable

# edge_migrate's ``park`` suboptions (its DOCUMENTATION repeats these defaults; validate-modules
# holds them equal). Declared here, driver side: options.py ships in the receiver bundle.
PARK_OPTIONS = dict(
    dir=dict(type="path", required=True),
    timeout=dict(type="float", default=900.0),
    refresh_s=dict(type="float", default=10.0),
    lease_s=dict(type="float", default=0.0),
)
# The controller's side (edge_migrate's action plugin, its ``gate`` option): how long it waits for the
# gate's answer, and how much longer the parked module waits for the file that answer becomes.
GATE_TIMEOUT_S = 900.0
PARK_GRACE_S = 30.0
# The controller renews a gated park (touches ``lease`` in park.dir) every PARK_CHECK_S while it asks
# the gate; the module gives up, nothing frozen, when LEASE_S pass without a renewal: a controller
# that died (killed, its host down) leaves nothing parked for long, whatever the gate's timeout.
PARK_CHECK_S = 10.0
LEASE_S = 45.0
LEASE = "lease"
RELEASES = ("nogo", "go")       # nogo first: when both are there, nothing moves
PARKED = "parked (service running, connected, warm)"
PARKED_COLD = "parked (service running; stop-and-copy: connects at the go)"
POLL_S = 0.02                   # the gate is looked at this often: a go costs at most this much
CHECK_S = 1.0                   # the session to the target is checked this often while parked
# A refresh round starts at most this often relative to its own length: the parked source spends
# at most ~1/(PACE + 1) of its time on rounds (reading and hashing memory, the link).
PACE = 9.0


def park_problem(park: dict | None) -> str | None:
    """What is wrong with ``park`` (a message for fail_json), before anything is connected or frozen."""
    if not park:
        return None
    if not park.get("timeout") or park["timeout"] <= 0:
        return f"park.timeout must be > 0 s, not {park.get('timeout')}; nothing was frozen"
    if park.get("refresh_s") is None or park["refresh_s"] < 0:
        return f"park.refresh_s must be >= 0 s (0: no refresh rounds), not {park.get('refresh_s')}; nothing was frozen"
    if (park.get("lease_s") or 0) < 0:
        return f"park.lease_s must be >= 0 s (0: no lease), not {park.get('lease_s')}; nothing was frozen"
    gate = park.get("dir") or ""
    try:
        st = os.lstat(gate)
    except OSError as exc:
        return f"park.dir={gate!r}: {exc.strerror or exc}; nothing was frozen"
    if not stat.S_ISDIR(st.st_mode):
        return f"park.dir={gate!r} is not a directory (a link is refused); nothing was frozen"
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return (f"park.dir={gate!r} must belong to this user and be writable by nobody else (mode "
                f"{stat.S_IMODE(st.st_mode):04o}, owner {st.st_uid}): a file there releases the freeze; "
                "nothing was frozen")
    there = [name for name in RELEASES if os.path.lexists(os.path.join(gate, name))]
    if there:
        return (f"park.dir={gate!r} already holds {' and '.join(there)} (left from an earlier run?): remove it; "
                "nothing was frozen")
    return None


def released(gate: str) -> str | None:
    """``nogo`` or ``go`` once its file is in ``gate`` (nogo wins), else None."""
    for name in RELEASES:
        if os.path.lexists(os.path.join(gate, name)):
            return name
    return None


class LeaseEnded(Exception):
    """Nobody renewed the park's lease in time: the controller that would answer the gate is gone."""


def check_lease(gate: str, since: float, lease_s: float, now: float | None = None) -> None:
    """Raise LeaseEnded when ``lease_s`` (> 0) passed since the last renewal: the mtime of ``lease`` in
    ``gate``, or ``since`` (wall-clock time the park began) when it is older or missing."""
    if not lease_s:
        return
    try:
        renewed = max(since, os.lstat(os.path.join(gate, LEASE)).st_mtime)
    except OSError:
        renewed = since
    now = time.time() if now is None else now
    if now - renewed > lease_s:
        raise LeaseEnded(f"the controller stopped renewing the park (no renewal for {now - renewed:.0f} s, "
                         f"lease {lease_s:g} s)")


def wait_release(gate: str, until: float, clock: Callable[[], float] = time.monotonic,
                 check: Callable[[], None] | None = None, sleep: Callable[[float], None] = time.sleep) -> str | None:
    """``go`` or ``nogo`` as soon as its file appears (looked for every ``POLL_S``), None at ``until``
    (``clock``'s time). ``check()`` raises when the session the migration holds is gone; it runs
    about every ``CHECK_S``, so a receiver that died ends the park instead of a freeze later."""
    next_check = clock() + CHECK_S
    while True:
        answer = released(gate)
        if answer is not None:
            return answer
        now = clock()
        if now >= until:
            return None
        if check is not None and now >= next_check:
            check()
            next_check = now + CHECK_S
        sleep(min(POLL_S, until - now))
