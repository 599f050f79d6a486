# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A service address moved with ``set_address`` is reached on its new edge at once by a neighbour
that talked to it an instant before the move.

The case a migration makes: the controller (a neighbour on the lab's bridge) has just used the
address, so its ARP entry was confirmed less than ``locktime`` (1 s) ago. Linux then ignores a
reply-form ARP for the address unless it counts as gratuitous (``arp_is_garp``); the entry kept
the old edge's MAC until its reachable time ran out, and the clean-clone CI of f25f480 saw the
user's counter unreachable for 30 s after a successful migrate.yml (test_day_one).
"""
from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest
from labutil import ROOT, address_on, lab_is_up  # noqa: E402 (tests/integration is on sys.path via conftest)

pytestmark = pytest.mark.lab
ADDRESS = "10.213.0.126"   # this test's own: on no edge before or after it


def set_address(edge: str, present: bool, wait: bool = False) -> subprocess.Popen:
    """The production call, run in ``edge``'s namespace as the source's driver and the receiver run it;
    with ``wait``, started now and run when a line arrives on its stdin (python's start-up off the clock)."""
    code = ("import sys\n"
            "from ansible_collections.edgemig.migration.plugins.module_utils.docker.switchover import set_address\n"
            + ("sys.stdin.readline()\n" if wait else "")
            + f"set_address('eth0', {ADDRESS!r}, {present!r})\n")
    proc = subprocess.Popen(["ip", "netns", "exec", edge, "python3", "-c", code], stdin=subprocess.PIPE, text=True,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": f"{ROOT}/.cache/collections"})
    if not wait:
        assert proc.wait(30) == 0
    return proc


def mac(edge: str) -> str:
    out = subprocess.run(["ip", "-n", edge, "-j", "link", "show", "eth0"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]["address"]


def neighbour() -> dict:
    out = subprocess.run(["ip", "-j", "neigh", "show", ADDRESS], check=True, capture_output=True, text=True).stdout
    entries = json.loads(out or "[]")
    return entries[0] if entries else {}


def reached() -> bool:
    """Whether the edge holding the address answers: a TCP connect to a closed port is refused by it
    (a reset), and dropped in silence by an edge without the address."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        try:
            sock.connect((ADDRESS, 9))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return True


def clean() -> None:
    for edge in address_on(ADDRESS):
        subprocess.run(["ip", "-n", edge, "addr", "del", f"{ADDRESS}/32", "dev", "eth0"], check=False)
    subprocess.run(["ip", "neigh", "flush", ADDRESS], capture_output=True, check=False)


@pytest.mark.parametrize("source, target", [("edge1", "edge2"), ("edge2", "edge3")])
def test_a_moved_address_is_reached_on_its_new_edge_at_once(source, target):
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"
    clean()
    try:
        set_address(source, True)
        move = set_address(target, True, wait=True)
        t0 = time.monotonic()
        assert reached() and neighbour().get("lladdr") == mac(source), neighbour()   # resolved: the entry's update
        subprocess.run(["ip", "-n", source, "addr", "del", f"{ADDRESS}/32", "dev", "eth0"], check=True)
        move.stdin.write("go\n")
        move.stdin.flush()
        assert move.wait(30) == 0
        moved_in = time.monotonic() - t0
        entry = neighbour()
        # Only meaningful while the entry is still locked (locktime 1 s after it was resolved; this
        # takes ~0.1 s): after that any ARP reply overrides it, and the check could not fail.
        if moved_in < 0.9:
            assert entry.get("lladdr") == mac(target), (entry, mac(target), f"moved {moved_in:.2f} s after resolving")
        assert reached(), neighbour()
    finally:
        clean()
