# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The chaos soak's faults (issue 12, ``make soak CHAOS=1``, run by ``bench/soak.py --chaos``).

Which run gets which fault, and where in its window, is drawn up front from one
seeded RNG (``draw_plan``): the report names the seed, so the same sequence can
be asked for again (timing on the lab still varies). While the playbook runs,
an ``Injection`` thread waits for the fault's anchor (the receiver started, the
playbook started, or the target's record saying ``verified`` / ``committed``),
waits the drawn fraction of the window, names the phase the migration is in
(``phase_label`` over the two edges' records, the progress file and the
receiver) and hits it. The fault classes are those of the fault-injection suite
(tests/integration/test_faults.py) that can be injected from outside at a
random moment, plus its EDGEMIG_FAULTS hooks.

Pure parts (drawing, phase naming, windows, whether recover.yml is needed) are
unit-tested in tests/unit/bench/test_chaos.py; the injectors need the lab.
"""
from __future__ import annotations

import glob
import json
import os
import random
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lab"))
from labutil import STALL_TIMEOUT, faults_arg, nft_clear, nft_drop_edges, receiver_pids, sshd_session_of, state_phase  # noqa: E402

# How long a cut edge-to-edge link stays cut, drawn per run (s).
HOLD_RANGE_S = (2.0, 30.0)
# A pause hook opens the window the fault must land in; the injection stays in
# its first 80 % so that it comes before the pause ends (the commit, the restore).
PAUSE_SHARE = 0.8


@dataclass(frozen=True)
class FaultClass:
    """One kind of fault. ``anchor`` says when its window opens:

    * ``receiver``: the receiver process appeared on the target (pre-copy warm
      rounds, then the stream; the window is the receiver's lifetime);
    * ``start``: ansible-playbook started (the window is the whole playbook);
    * ``verified`` / ``committed``: the target's record says so (the window is
      the pause that ``hook`` opens there);
    * ``hook``: nothing to do from outside, ``hook`` (EDGEMIG_FAULTS) is the
      fault and ``phase`` the point where it bites.
    """

    name: str
    what: str
    anchor: str
    hook: dict = field(default_factory=dict)
    cuts_link: bool = False
    kills: str | None = None  # "receiver" | "sshd-session" | "controller"
    phase: str | None = None

    def pause_s(self) -> float:
        return float(self.hook.get("pause_verified") or self.hook.get("pause_restore") or 0.0)


FAULT_CLASSES = (
    FaultClass("kill-receiver", "SIGKILL to the receiver on the target", "receiver", kills="receiver"),
    FaultClass("link-drop", "edge1<->edge2 dropped (nft) for a drawn 2-30 s", "receiver", cuts_link=True),
    FaultClass("kill-sshd-session", "SIGKILL to the sshd session that runs the receiver", "receiver",
               kills="sshd-session"),
    FaultClass("kill-controller", "SIGKILL to ansible-playbook's process group", "start", kills="controller"),
    FaultClass("restore-fails", "the target's restore fails (EDGEMIG_FAULTS restore)", "hook",
               hook={"restore": True}, phase="restore"),
    FaultClass("health-fails", "the target's health check fails (EDGEMIG_FAULTS health)", "hook",
               hook={"health": True}, phase="health"),
    FaultClass("link-cut-after-verified", "sender holds 6 s after verified (pause_verified); the link is cut "
               "in that pause for a drawn 2-30 s", "verified", hook={"pause_verified": 6}, cuts_link=True),
    FaultClass("restore-held-session-killed-link-dropped", "target holds 4 s after COMMIT (pause_restore); in "
               "that pause the receiver's sshd session is killed and the link dropped for a drawn 2-30 s",
               "committed", hook={"pause_restore": 4}, cuts_link=True, kills="sshd-session"),
)
FAULTS = {f.name: f for f in FAULT_CLASSES}


# ------------------------------------------------------------------ the draw (pure)
@dataclass(frozen=True)
class Draw:
    """What run ``n`` (1-based) gets: a fault class or None, where in its window (0..1), how long a cut lasts."""

    n: int
    fault: str | None = None
    at: float = 0.0
    hold_s: float | None = None


def draw_plan(seed: int, count: int, classes: list[str] | tuple[str, ...] = tuple(FAULTS),
              ratio: float = 0.5) -> list[Draw]:
    """The soak's plan: about ``ratio`` of the runs get a fault.

    Which runs: a coin per run. Which class: shuffled rounds of all classes, so
    every class comes up about as often as the others (a plain random choice
    could leave one out of ~50 faulted runs). The same seed gives the same plan.
    """
    unknown = [c for c in classes if c not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault class(es) {unknown}: {list(FAULTS)}")
    if not classes and ratio > 0:
        raise ValueError("no fault class to draw from")
    rng = random.Random(seed)
    hit = [rng.random() < ratio for _unused in range(count)]
    queue: list[str] = []
    plan = []
    for n, faulted in enumerate(hit, start=1):
        if not faulted:
            plan.append(Draw(n))
            continue
        if not queue:
            queue = list(classes)
            rng.shuffle(queue)
        name = queue.pop()
        hold = round(rng.uniform(*HOLD_RANGE_S), 1) if FAULTS[name].cuts_link else None
        plan.append(Draw(n, name, round(rng.random(), 3), hold))
    return plan


def playbook_vars(fault: FaultClass | None, stall_timeout: int = STALL_TIMEOUT) -> list[str]:
    """Extra -e arguments of a chaos run. Every run, faulted or not, has the short stall timeout of
    the fault suite: a dropped link is then detected within the 2-30 s it lasts, and the runs
    without a fault are measured under the same settings."""
    if fault is not None and fault.hook:
        return faults_arg(stall_timeout, **fault.hook)
    return ["-e", f"edgemig_stall_timeout={stall_timeout}"]


# ------------------------------------------------------------------ phases (pure)
def phase_label(source: str | None, target: str | None, progress: str | None,
                receiver_alive: bool, receiver_seen: bool) -> str:
    """One name for where a migration is, from what the edges show at that moment.

    ``source`` / ``target``: the phase in each edge's ``.edgemig-state/<svc>.json``
    (None: no record); ``progress``: the phase in edge_migrate's progress file;
    the receiver: running now, and whether it was seen at all in this run.
    The records win over the progress file: they are what the recovery decides on.
    """
    p = (progress or "").lower()
    if source == "aborted" or p.startswith("rolling back"):
        return "rollback"
    if target in ("in_doubt", "fenced"):
        return target
    if source == "committed" or target == "committed":
        return "committed"
    if target == "verified":
        return "verified"
    if source == "frozen" or p.startswith(("streaming", "restoring")):
        return "stream"
    if p.startswith("checkpoint"):
        return "checkpoint"
    if p.startswith("warm"):
        return "warm"
    if receiver_alive or p.startswith("connecting"):
        return "prepare"
    # No record, no progress, no receiver: before edge_migrate (recovery, preflight,
    # prepare tasks) or after it (switched and cleaned: the report tasks).
    return "after-switch" if receiver_seen else "pre-tasks"


def progress_phase(since: float, pattern: str = "/tmp/edgemig-progress-*.json") -> str | None:
    """The phase in the newest progress file written since ``since`` (wall clock).

    The action plugin has edge_migrate write it on the source; the lab's edges
    share the host's file system, so it is readable here.
    """
    newest, phase = 0.0, None
    for path in glob.glob(pattern):
        try:
            mtime = os.stat(path).st_mtime
            if mtime >= since and mtime > newest:
                with open(path) as fh:
                    newest, phase = mtime, json.load(fh).get("phase")
        except (OSError, ValueError):
            continue  # removed or rewritten under us
    return phase


# ------------------------------------------------------------------ windows (pure)
@dataclass
class Windows:
    """How long the receiver lives and the playbook runs, from the runs without a fault (medians).

    A fault anchored there lands at the drawn fraction of it; the defaults hold
    until the first run without a fault has been measured.
    """

    receiver_default_s: float = 5.0
    playbook_default_s: float = 15.0
    receiver_s: list[float] = field(default_factory=list)
    playbook_s: list[float] = field(default_factory=list)

    def learn(self, receiver_s: float | None, playbook_s: float) -> None:
        if receiver_s:
            self.receiver_s.append(receiver_s)
        self.playbook_s.append(playbook_s)

    def of(self, fault: FaultClass) -> float:
        if fault.anchor == "receiver":
            return statistics.median(self.receiver_s) if self.receiver_s else self.receiver_default_s
        if fault.anchor == "start":
            return statistics.median(self.playbook_s) if self.playbook_s else self.playbook_default_s
        return PAUSE_SHARE * fault.pause_s()


def recover_needed(controller_killed: bool, rc: int | None, records: dict, running: list[str]) -> str | None:
    """Why recover.yml must run after this migration, or None.

    A killed controller never ran the playbook's rescue: always. A failed
    playbook whose rescue could not converge (an edge unreachable while the
    link was cut) leaves a record or not exactly one copy: the user runs
    recover.yml then, as the playbook's message says. A run that passed and
    left that behind is not "needed" but an invariant failure.
    """
    if controller_killed:
        return "the controller was killed: its rescue never ran"
    if rc not in (0, None) and (records or len(running) != 1):
        return f"playbook rc {rc}, not converged: records {records or 'none'}, running on {running or 'no edge'}"
    return None


# ------------------------------------------------------------------ on the lab
class ReceiverWatch(threading.Thread):
    """When the receiver of ``svc`` is first and last seen during one playbook run."""

    def __init__(self, svc: str, proc, step: float = 0.1):
        super().__init__(daemon=True, name="chaos-receiver-watch")
        self.svc, self.proc, self.step = svc, proc, step
        self.first: float | None = None
        self.last: float | None = None
        self.up = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set() and self.proc.poll() is None:
            if receiver_pids(self.svc):
                now = time.monotonic()
                self.first = self.first or now
                self.last = now
                self.up.set()
            time.sleep(self.step)

    def alive(self) -> bool:
        return bool(receiver_pids(self.svc))

    def lifetime(self) -> float | None:
        return round(self.last - self.first, 2) if self.first and self.last else None


class Injection(threading.Thread):
    """Inject one drawn fault into the migration ``proc`` runs; ``record`` says what happened.

    A link it cuts stays cut for the drawn time even when the playbook ends
    first (a real outage does not care); ``join()`` returns once it is healed.
    ``abort()`` heals at once (the soak is stopping).
    """

    def __init__(self, fault: FaultClass, draw: Draw, proc, svc: str, source: str, target: str,
                 window_s: float, watch: ReceiverWatch, started: float, started_wall: float):
        super().__init__(daemon=True, name=f"chaos-{fault.name}")
        self.fault, self.draw, self.proc, self.svc = fault, draw, proc, svc
        self.source, self.target = source, target
        self.window_s, self.watch = window_s, watch
        self.started, self.started_wall = started, started_wall
        self.record: dict = {"injected": False, "why": "not run"}
        self.controller_killed = False
        self._abort = threading.Event()

    def abort(self) -> None:
        self._abort.set()

    def run(self) -> None:
        try:
            self.record = self._inject()
        except Exception as exc:  # the soak records it and goes on
            self.record = {"injected": False, "why": f"injector error: {type(exc).__name__}: {exc}"}
        finally:
            if self.fault.cuts_link:
                nft_clear()

    def _running(self) -> bool:
        return self.proc.poll() is None and not self._abort.is_set()

    def _wait(self, cond, step: float = 0.02) -> bool:
        """Wait for ``cond()`` while the playbook runs."""
        while self._running():
            if cond():
                return True
            time.sleep(step)
        return False

    def _missed(self, why: str) -> dict:
        return {"injected": False, "why": why, "window_s": round(self.window_s, 2)}

    def _observe(self) -> dict:
        states = {"source": state_phase(self.source, self.svc), "target": state_phase(self.target, self.svc),
                  "progress": progress_phase(self.started_wall), "receiver": self.watch.alive()}
        states["phase"] = phase_label(states["source"], states["target"], states["progress"],
                                      states["receiver"], self.watch.first is not None)
        return states

    def _inject(self) -> dict:
        fault = self.fault
        if fault.anchor == "hook":
            # EDGEMIG_FAULTS did it: it bites at its own point of every migration.
            return {"injected": True, "phase": fault.phase, "detail": f"EDGEMIG_FAULTS {json.dumps(fault.hook)}"}
        opened = self._open_window()
        if opened is None:
            return self._missed(f"the playbook ended before the anchor ({fault.anchor})")
        delay = self.draw.at * self.window_s
        if not self._wait(lambda: time.monotonic() >= opened + delay):
            return self._missed(f"the playbook ended before the drawn point ({delay:.1f} s into the window)")
        states = self._observe()  # before the hit: the phase it hits
        done = self._hit()
        if done is None:
            return self._missed(f"nothing left to hit at the drawn point ({states['phase']}): "
                                f"the {self.fault.kills} had gone")
        out = {"injected": True, "phase": states.pop("phase"), "states": states, "detail": done,
               "at_s": round(time.monotonic() - self.started, 2), "window_s": round(self.window_s, 2)}
        if fault.cuts_link:
            # Healed by the time join() returns; a cut left behind would break the next run.
            self._abort.wait(self.draw.hold_s or HOLD_RANGE_S[0])
            nft_clear()
            out["link_down_s"] = round(time.monotonic() - self.started - out["at_s"], 1)
        return out

    def _open_window(self) -> float | None:
        """The moment the fault's window opened (monotonic), or None if the playbook ended first."""
        anchor = self.fault.anchor
        if anchor == "start":
            return self.started
        if anchor == "receiver":
            return self.watch.first if self._wait(self.watch.up.is_set) else None
        # verified / committed: the target's record (the pause hook holds the migration there)
        if self._wait(lambda: state_phase(self.target, self.svc) == anchor):
            return time.monotonic()
        return None

    def _hit(self) -> str | None:
        """Do it; a description, or None when there was nothing left to hit."""
        fault, done = self.fault, []
        if fault.kills in ("receiver", "sshd-session"):
            pids = receiver_pids(self.svc)
            if not pids:
                return None
            try:
                if fault.kills == "receiver":
                    os.kill(pids[0], signal.SIGKILL)
                    done.append(f"SIGKILL to the receiver pid {pids[0]}")
                else:
                    session = sshd_session_of(pids[0])
                    os.kill(session, signal.SIGKILL)
                    done.append(f"SIGKILL to the receiver's sshd session pid {session}")
            except (OSError, AssertionError, ValueError):
                return None  # it exited between the look and the kill
        elif fault.kills == "controller":
            if self.proc.poll() is not None:
                return None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.controller_killed = True
            done.append(f"SIGKILL to ansible-playbook's process group {self.proc.pid}")
        if fault.cuts_link:
            nft_drop_edges()
            done.append(f"edge1<->edge2 dropped for {self.draw.hold_s} s")
        return "; ".join(done)
