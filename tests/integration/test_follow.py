# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 15 on the lab: ansible-rulebook with extensions/eda/rulebooks/follow.yml moves apache after its user.

Warm ahead (approach, target prepared and parked, then the handover moves it),
cold (a handover alone), a border ping-pong that moves nothing, and a prepared
target that nobody came to removed at its TTL. Every wait is bounded. Every
request carries the source's bearer token (issue 23).
"""
from __future__ import annotations

import time

import pytest
from followutil import Prober, Rulebook, place  # noqa: E402 (lab/ is on sys.path via conftest)
from labutil import catalog, docker, http_get, lab_is_up, running_on, wait_answering  # noqa: E402

pytestmark = pytest.mark.lab
APACHE = catalog()["apache"]
PORT = APACHE["ports"][0]["host"]


@pytest.fixture(scope="module", autouse=True)
def lab():
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"


def exists(edge: str, name: str) -> bool:
    return docker(edge, "inspect", name, check=False).returncode == 0


def answers() -> bool:
    try:
        return http_get(APACHE["address"], PORT, "/", timeout=2)[0] < 400
    except OSError:
        return False


def test_apache_follows_its_user(tmp_path):
    place("apache", "edge1")
    # a precondition, not what is tested: on a loaded machine the first answer after a move that
    # place() made (or the suite's test before) can take longer than answers()' 2 s
    wait_answering(APACHE, timeout=60)
    probe = Prober(APACHE["address"], PORT)
    probe.start()
    try:
        with Rulebook(dwell_s=1.5, ttl_s=10, locations={"apache": "edge1"}, workdir=str(tmp_path)) as rb:
            # Warm ahead: the approach prepares edge2 and parks the run at the gate.
            rb.event("edge2", "approach", confidence=0.9)
            rb.wait_parked("apache", 120)
            assert exists("edge2", "apache") and running_on("apache") == ["edge1"]
            time.sleep(1.5)  # the approach was dwell_s ago: the handover moves at once
            t_event = time.time()
            rb.event("edge2", "handover")
            st = rb.wait(lambda s: s["policy"]["location"].get("apache") == "edge2", 90, "apache on edge2")
            warm = (probe.back_after(t_event, time.time()) or time.time()) - t_event
            assert running_on("apache") == ["edge2"] and answers()
            assert st["policy"]["counts"]["moves"] == 1

            # Cold: a handover alone; the target is prepared now, the move waits for dwell and prepare.
            t_event = time.time()
            rb.event("edge1", "handover")
            rb.wait(lambda s: s["policy"]["location"].get("apache") == "edge1", 150, "apache back on edge1")
            cold = (probe.back_after(t_event, time.time()) or time.time()) - t_event
            assert running_on("apache") == ["edge1"] and answers()
            rb.wait_idle("apache")

            # Border ping-pong, 0.5 s < dwell_s: nothing moves; the prepared target expires at its TTL.
            for i in range(8):
                rb.event("edge2" if i % 2 == 0 else "edge1", "handover")
                time.sleep(0.5)
            st = rb.wait_idle("apache", 120)
            assert st["policy"]["counts"]["moves"] == 2 and st["policy"]["counts"]["avoided"] >= 1
            assert running_on("apache") == ["edge1"] and not exists("edge2", "apache") and answers()
        print(f"\nreaction warm {warm:.2f} s, cold {cold:.2f} s")
    finally:
        probe.stop()
