# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A report's plot drawn off the play's path (issue 26): a detached process draws it, the PNG appears whole.

Drawing (matplotlib's import and render) costs about 0.7 s of wall time that the play need not wait
for. ``draw_detached`` forks a drawer the way Ansible's async_wrapper detaches (fork, setsid, fork;
stdio on /dev/null, no other descriptor kept), so the module's process ends at once and Ansible, which
reads the module's pipes to their end, does not wait for the drawing.

What a reader sees: no PNG until the whole one is in place (drawn to a temporary name in the same
directory, then ``os.replace``); a failed drawing leaves no PNG and no temporary file, and its reason in
``<name>.plot-error.txt``. Replacing the report and removing its old plot (``report_dir_lock``) and
putting a plot in place happen under one lock on the directory, and a drawer puts its plot (or its
error) in place only while its report is still the current one: a drawer of an earlier migration still
running when the next report is saved never leaves its plot beside the new report.
"""
from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import sys
import tempfile

from ansible_collections.edgemig.migration.plugins.module_utils.driver import timeline_plot

ERROR_SUFFIX = ".plot-error.txt"


def error_path(png: str) -> str:
    """Where a failed drawing of ``<name>.png`` says why: ``<name>.plot-error.txt``."""
    return (png[:-4] if png.endswith(".png") else png) + ERROR_SUFFIX


@contextlib.contextmanager
def report_dir_lock(directory: str):
    """An exclusive lock on the report directory (flock on the directory itself: no file of its own)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # releases the lock


def identity(path: str) -> tuple:
    """What tells one saved report from the next one at the same path (each is a new file, os.replace'd)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


def remove_plot(png: str) -> str:
    """Remove an earlier plot and its error file (call under ``report_dir_lock``); a note if one stays."""
    notes = []
    for stale in (png, error_path(png)):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
        except OSError as exc:
            notes.append(f"the earlier {stale} could not be removed ({exc})")
    return "; ".join(notes)


def why_not(report: dict) -> str:
    """Why no plot can be drawn, found cheaply before a drawer starts; empty when one can."""
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return f"matplotlib is not importable by {sys.executable}"
    try:
        timeline_plot.drawable(report)
    except ValueError as exc:
        return str(exc)
    return ""


def draw(report: dict, png: str, report_path: str, report_id: tuple) -> None:
    """Draw ``png`` for the report saved at ``report_path`` as ``report_id``; never raises.

    The PNG appears whole or not at all; on a failure, ``<name>.plot-error.txt`` says why. Neither is
    put in place once a newer report has replaced this one.
    """
    directory, name = os.path.split(png)
    tmp, error = "", ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".partial", dir=directory)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)   # as an ordinary new file (mkstemp makes it 0600)
        os.close(fd)
        timeline_plot.plot(report, tmp)
    except ImportError as exc:
        error = f"matplotlib is not importable by {sys.executable} ({exc})"
    except Exception as exc:  # pylint: disable=broad-exception-caught  # any failure is said in the file
        error = f"{type(exc).__name__}: {exc}"
    try:
        with report_dir_lock(directory):
            try:
                current = identity(report_path) == report_id
            except OSError:
                current = False
            if current and not error:
                os.replace(tmp, png)
                tmp = ""
            elif current:
                _write_whole(error_path(png), f"no plot: {error}\n")
    except OSError:
        pass   # nobody to tell: the module has returned; no PNG stands for this report
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _write_whole(path: str, text: str) -> None:
    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def draw_detached(*args) -> int:
    """Run ``draw(*args)`` in a detached grandchild (async_wrapper's way); returns its pid at once.

    OSError when it cannot be started.
    """
    read_end, write_end = os.pipe()
    try:
        child = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if child == 0:   # the intermediate child: a session of its own, then the drawer, then gone
        code = 1
        try:
            os.close(read_end)
            os.setsid()
            drawer = os.fork()
            if drawer == 0:
                os.close(write_end)
                _run_detached(args)
            os.write(write_end, str(drawer).encode())
            code = 0
        finally:
            os._exit(code)   # pylint: disable=protected-access  # never back into the module's code
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        said = fh.read()
    os.waitpid(child, 0)
    if not said.strip().isdigit():
        raise OSError("the drawing process could not be started")
    return int(said)


def _run_detached(args: tuple) -> None:
    """In the drawer: nothing of the module's process held (its pipes, its directory), then draw; exits."""
    code = 1
    try:
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        with contextlib.suppress(OSError):
            os.nice(10)   # the play's next tasks (an evacuation's next freeze) come first
        draw(*args)
        code = 0
    finally:
        os._exit(code)   # pylint: disable=protected-access  # no atexit of the module's process
