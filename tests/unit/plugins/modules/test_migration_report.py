# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""migration_report: the report at once, its plot drawn in the background (issue 26).

The drawings the module starts are real detached processes (forked from this one, so a fake ``plot``
set here is the one they run). A fake that waits for a gate file holds a drawing open as long as a test
needs: what must be true while it draws is checked then, with no timing assumed; what must be true
after it is waited for with a generous deadline (a loaded 2-core machine).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from collection_path import COLLECTIONS
from fakes import run_module

from ansible_collections.edgemig.migration.plugins.module_utils.driver import background_plot, timeline_plot
from ansible_collections.edgemig.migration.plugins.modules import migration_report as mod

REPORT = {"service": "apache", "source": "edge1", "target": "edge2", "downtime_s": 0.8,
          "stages_s": {"checkpoint_s": 0.4, "transfer_s": 0.1, "restore_s": 0.3}}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64
DEADLINE_S = 60


def wait_for(predicate, deadline_s: float = DEADLINE_S) -> bool:
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def partials(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".partial"))


@pytest.fixture
def gated_plot(tmp_path, monkeypatch):
    """``plot`` replaced by one that writes half a PNG, waits for the gate file, then writes the rest
    (or raises ``fail`` when set). Returns the gate's path and a dict to set ``fail`` in."""
    gate = tmp_path / "gate"
    how: dict = {}

    def slow_plot(_report, out):
        with open(out, "wb") as fh:
            fh.write(PNG[:len(PNG) // 2])
            fh.flush()
            if not wait_for(gate.exists):
                raise TimeoutError("the test never opened the gate")
            if how.get("fail"):
                raise how["fail"]
            fh.write(PNG[len(PNG) // 2:])
        return out

    monkeypatch.setattr(timeline_plot, "plot", slow_plot)
    # The fake needs no matplotlib; whether this machine has one is not what these tests are about.
    monkeypatch.setattr(background_plot, "why_not", lambda _report: "")
    return gate, how


def drawer_pid(res: dict) -> int:
    note = res["plot_note"]
    assert note.startswith("drawing in the background (pid ") and note.endswith(")"), note
    return int(note[len("drawing in the background (pid "):-1])


def test_check_mode_writes_nothing(tmp_path):
    failed, res = run_module(mod, {"report": REPORT, "dest_dir": str(tmp_path / "r"), "name": "m"}, check_mode=True)
    assert not failed and res["plot"] == str(tmp_path / "r" / "m.png") and res["plot_note"] == "check mode"
    assert not (tmp_path / "r").exists()


def test_the_report_and_its_real_plot(tmp_path):
    pytest.importorskip("matplotlib")
    failed, res = run_module(mod, {"report": REPORT, "dest_dir": str(tmp_path / "r" / ".." / "r"), "name": "m"})
    assert not failed and res["changed"]
    assert res["path"] == str(tmp_path / "r" / "m.json")                   # normalised
    assert json.loads((tmp_path / "r" / "m.json").read_text()) == REPORT
    assert res["plot"] == str(tmp_path / "r" / "m.png") and drawer_pid(res) > 0
    assert wait_for((tmp_path / "r" / "m.png").exists), "no plot within the deadline"
    assert (tmp_path / "r" / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "r" / "m.png").stat().st_mode & 0o077 != 0o000     # an ordinary file, not mkstemp's 0600
    assert partials(tmp_path / "r") == [] and not (tmp_path / "r" / "m.plot-error.txt").exists()


def test_a_name_with_a_path_is_refused(tmp_path):
    failed, res = run_module(mod, {"report": REPORT, "dest_dir": str(tmp_path), "name": "../x"})
    assert failed and "plain file name" in res["msg"]


def test_the_module_returns_while_the_plot_is_drawn_and_the_png_appears_whole(tmp_path, gated_plot):
    gate, _how = gated_plot
    (tmp_path / "m.png").write_bytes(b"an earlier migration's plot")
    (tmp_path / "m.plot-error.txt").write_text("an earlier migration's failure")
    failed, res = run_module(mod, {"report": REPORT, "dest_dir": str(tmp_path), "name": "m"})
    # Returned while the drawer is held at the gate: the report is there, no plot is, not even the old one.
    assert not failed and res["plot"] == str(tmp_path / "m.png") and drawer_pid(res) > 0
    assert json.loads((tmp_path / "m.json").read_text()) == REPORT
    assert not (tmp_path / "m.png").exists() and not (tmp_path / "m.plot-error.txt").exists()
    # Half drawn, under a temporary name only.
    assert wait_for(lambda: partials(tmp_path) != []), "the drawer never started"
    assert not (tmp_path / "m.png").exists()
    gate.touch()
    assert wait_for((tmp_path / "m.png").exists), "no plot within the deadline"
    assert (tmp_path / "m.png").read_bytes() == PNG                       # whole when it first appears
    assert partials(tmp_path) == [] and not (tmp_path / "m.plot-error.txt").exists()


def test_a_failed_drawing_leaves_no_png_nor_temporary_file_and_says_why(tmp_path, gated_plot):
    gate, how = gated_plot
    how["fail"] = ValueError("a timeline point without a number")
    failed, res = run_module(mod, {"report": REPORT, "dest_dir": str(tmp_path), "name": "m"})
    assert not failed and res["plot"] == str(tmp_path / "m.png")
    assert wait_for(lambda: partials(tmp_path) != []), "the drawer never started"
    gate.touch()
    assert wait_for((tmp_path / "m.plot-error.txt").exists), "no error file within the deadline"
    text = (tmp_path / "m.plot-error.txt").read_text()
    assert text.startswith("no plot: ValueError: a timeline point without a number")
    assert not (tmp_path / "m.png").exists()
    assert wait_for(lambda: partials(tmp_path) == []), partials(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["gate", "m.json", "m.plot-error.txt"]


def test_a_report_matplotlib_cannot_draw_fails_in_the_background(tmp_path):
    """Bad data only matplotlib's drawing finds (a time that is no number): the real plot, in the background."""
    pytest.importorskip("matplotlib")
    report = dict(REPORT, timeline=[{"t": "soon", "codec": "lz4", "level": 1, "raw_Bps": 1, "wire_Bps": 1}])
    failed, res = run_module(mod, {"report": report, "dest_dir": str(tmp_path), "name": "m"})
    assert not failed and res["plot"] and drawer_pid(res) > 0
    assert wait_for((tmp_path / "m.plot-error.txt").exists), "no error file within the deadline"
    assert "ValueError" in (tmp_path / "m.plot-error.txt").read_text()
    assert wait_for(lambda: partials(tmp_path) == []), partials(tmp_path)
    assert not (tmp_path / "m.png").exists()


def test_without_matplotlib_the_module_says_so_itself_and_draws_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # as if not installed
    monkeypatch.setattr(background_plot, "draw_detached", lambda *a: pytest.fail("a drawer was started"))
    (tmp_path / "m.png").write_bytes(b"an earlier migration's plot")
    failed, res = run_module(mod, {"report": REPORT, "dest_dir": str(tmp_path), "name": "m"})
    assert not failed and res["plot"] == ""
    assert res["plot_note"] == f"no plot: matplotlib is not importable by {sys.executable}"
    assert sorted(os.listdir(tmp_path)) == ["m.json"]


def test_nothing_to_draw_is_said_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(background_plot, "draw_detached", lambda *a: pytest.fail("a drawer was started"))
    monkeypatch.setattr(background_plot.importlib.util, "find_spec", lambda _name: object())  # matplotlib or not
    failed, res = run_module(mod, {"report": {"service": "x"}, "dest_dir": str(tmp_path), "name": "m"})
    assert not failed and res["plot"] == "" and "neither stage durations nor timeline points" in res["plot_note"]
    assert sorted(os.listdir(tmp_path)) == ["m.json"]


def test_without_a_plot_an_earlier_one_is_not_left_beside_the_new_report(tmp_path, monkeypatch):
    monkeypatch.setattr(background_plot, "draw_detached", lambda *a: pytest.fail("a drawer was started"))
    (tmp_path / "m.png").write_bytes(b"an earlier migration's plot")
    (tmp_path / "m.plot-error.txt").write_text("an earlier migration's failure")
    (tmp_path / "other.png").write_bytes(b"not ours")
    failed, res = run_module(mod, {"report": REPORT, "dest_dir": str(tmp_path), "name": "m", "plot": False})
    assert not failed and res["plot"] == "" and res["plot_note"] == "plot=false"
    assert sorted(os.listdir(tmp_path)) == ["m.json", "other.png"]
    assert json.loads((tmp_path / "m.json").read_text()) == REPORT


def test_a_drawer_of_an_earlier_report_never_puts_its_plot_beside_a_newer_one(tmp_path, gated_plot):
    gate, _how = gated_plot
    failed, res = run_module(mod, {"report": REPORT, "dest_dir": str(tmp_path), "name": "m"})
    assert not failed and drawer_pid(res) > 0
    assert wait_for(lambda: partials(tmp_path) != []), "the drawer never started"
    newer = dict(REPORT, downtime_s=0.5)
    failed, res = run_module(mod, {"report": newer, "dest_dir": str(tmp_path), "name": "m", "plot": False})
    assert not failed and res["plot"] == ""
    gate.touch()
    # The earlier drawer is done once its temporary file is gone (put in place or removed).
    assert wait_for(lambda: partials(tmp_path) == []), partials(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["gate", "m.json"]
    assert json.loads((tmp_path / "m.json").read_text()) == newer


def test_ansible_does_not_wait_for_the_drawing(tmp_path):
    """The module as Ansible runs it: ``ansible localhost -m`` returns while the drawer is still held.

    A stand-in matplotlib (on PYTHONPATH, this test's only) holds the drawer until the gate file exists,
    then fails to import. Had Ansible waited for the drawer, the drawer would have given up at its own
    deadline and written its error file before Ansible returned.
    """
    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (tmp_path / "fake" / "gate_path").write_text(str(tmp_path / "gate"))
    (fake / "__init__.py").write_text(
        "import os, time\n"
        "here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))\n"
        "gate = open(os.path.join(here, 'gate_path')).read()\n"
        "open(os.path.join(here, 'started'), 'w').close()\n"
        "end = time.monotonic() + 120\n"
        "while not os.path.exists(gate) and time.monotonic() < end:\n"
        "    time.sleep(0.05)\n"
        "raise ImportError('the test stand-in for matplotlib')\n")
    (tmp_path / "vars.json").write_text(json.dumps({"r": REPORT}))
    out = tmp_path / "reports"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1",
               PYTHONPATH=os.pathsep.join([str(tmp_path / "fake")] + sys.path))
    proc = subprocess.run(["ansible", "localhost", "-m", "edgemig.migration.migration_report",
                           "-e", f"@{tmp_path / 'vars.json'}", "-e", "ansible_python_interpreter=" + sys.executable,
                           "-a", f"report={{{{ r }}}} dest_dir={out} name=m"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "drawing in the background (pid " in proc.stdout, proc.stdout
    assert json.loads((out / "m.json").read_text()) == REPORT
    assert not (out / "m.plot-error.txt").exists(), "Ansible waited for the drawing"
    assert wait_for((tmp_path / "fake" / "started").exists), "the drawer never imported matplotlib"
    (tmp_path / "gate").touch()
    assert wait_for((out / "m.plot-error.txt").exists), "no error file within the deadline"
    assert "the test stand-in for matplotlib" in (out / "m.plot-error.txt").read_text()
    assert wait_for(lambda: partials(out) == []), partials(out)
    assert sorted(os.listdir(out)) == ["m.json", "m.plot-error.txt"]
