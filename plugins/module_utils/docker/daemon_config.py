# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Merging the keys edgemig needs into a host's Docker ``daemon.json`` (docker_daemon_config module).

The file is the host's: a user's ``log-driver``, ``registry-mirrors``, ``data-root`` or
``default-address-pools`` stay as they are, and a key is written only where the daemon would
otherwise not do what edgemig needs. Where the running daemon already does it without the key
(``experimental`` given as ``--experimental`` in a unit drop-in, overlay2 as Docker's own default)
the key is not added: dockerd refuses to start when a directive is both a flag and in the file,
and an added key would restart Docker for nothing.

The storage driver is never switched on a host that has images under another one: Docker keeps
images per driver (``<data root>/image/<driver>/``), so they would vanish from view.
"""
from __future__ import annotations

import json
import os

STORAGE_DRIVER = "storage-driver"
# Keys whose effective value the running daemon reports (GET /info): key -> info field.
RUNNING_FACTS = {"experimental": "ExperimentalBuild", STORAGE_DRIVER: "Driver"}


class ConfigProblem(ValueError):
    """The file cannot be merged (unreadable JSON, or a storage driver switch that would hide images)."""


def parse(text: str | None, path: str = "daemon.json") -> dict:
    """The configuration in ``text`` (None or blank: no file, ``{}``)."""
    if text is None or not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigProblem(f"{path} is not valid JSON ({exc}); nothing was changed: fix it first (edgemig "
                            "changes only its own keys and never overwrites a file it cannot read)") from None
    if not isinstance(doc, dict):
        raise ConfigProblem(f"{path} holds a JSON {type(doc).__name__}, not an object; nothing was changed")
    return doc


def render(config: dict, like: str | None = None) -> str:
    """The file's text: the user's keys in their order, ours after them, indented as ``like`` (the old text) is.

    Keeping the user's indentation keeps ``--diff`` to the lines that changed.
    """
    indent: str | int = 2
    for line in (like or "").splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped.startswith('"') and stripped != line:
            indent = line[:len(line) - len(stripped)]
            break
    return json.dumps(config, indent=indent) + "\n"


def images_on_disk(data_root: str) -> dict[str, int]:
    """Images Docker keeps per storage driver under ``data_root`` (``image/<driver>/imagedb/content/sha256``).

    Read from disk so that a stopped daemon's images count too.
    """
    out: dict[str, int] = {}
    base = os.path.join(data_root, "image")
    try:
        drivers = sorted(os.listdir(base))
    except OSError:
        return out
    for driver in drivers:
        try:
            out[driver] = len(os.listdir(os.path.join(base, driver, "imagedb", "content", "sha256")))
        except OSError:
            continue
    return {k: v for k, v in out.items() if v}


def data_root(current: dict, running: dict | None) -> str:
    return current.get("data-root") or (running or {}).get("DockerRootDir") or "/var/lib/docker"


def _needed(key: str, value, current: dict, running: dict | None) -> bool:
    if key in current:
        return current[key] != value
    fact = RUNNING_FACTS.get(key)
    if fact and running is not None and fact in running:
        return running[fact] != value        # the daemon does it already (flag, default) or not
    return True                              # no daemon to ask: write it, as a fresh install needs


def _images_elsewhere(driver: str, running: dict | None, disk_images: dict[str, int]) -> dict[str, int]:
    """Images held under drivers other than ``driver`` (the daemon's count and the disk's)."""
    held = {d: n for d, n in disk_images.items() if d != driver and n}
    if running and running.get("Driver") and running["Driver"] != driver and running.get("Images"):
        held[running["Driver"]] = max(held.get(running["Driver"], 0), int(running["Images"]))
    return held


def plan(current: dict, wanted: dict, running: dict | None = None,
         disk_images: dict[str, int] | None = None, path: str = "daemon.json") -> dict:
    """What to write: ``{"config": merged, "changes": [{"key", "before", "after"}]}``.

    ``current``: the file's configuration; ``wanted``: the keys edgemig needs (the role's and the
    user's ``docker_engine_daemon_options``); ``running``: the daemon's ``GET /info`` (None: no daemon
    answered); ``disk_images``: :func:`images_on_disk`. Raises ConfigProblem for a storage driver
    switch on a host holding images under another driver. No change: ``changes == []`` and
    ``config == current``.
    """
    merged = dict(current)
    changes = []
    for key, value in wanted.items():
        if not _needed(key, value, current, running):
            continue
        before = current.get(key, (running or {}).get(RUNNING_FACTS.get(key, "")))
        if key == STORAGE_DRIVER:
            held = _images_elsewhere(value, running, disk_images or {})
            if held:
                what = ", ".join(f"{n} under {d}" for d, n in sorted(held.items()))
                raise ConfigProblem(
                    f"{path}: Docker here uses storage driver {before or '(its default)'} and holds images ({what}); "
                    f"switching to {value} would hide them (Docker keeps images per driver). Nothing was changed. "
                    f"edgemig needs {value} (it migrates the container's overlay2 upper layer): move the images "
                    f"yourself (docker save, switch the driver, docker load) or remove them, then run again")
        merged[key] = value
        changes.append({"key": key, "before": before, "after": value})
    return {"config": merged if changes else current, "changes": changes}


def describe(changes: list[dict]) -> str:
    """``experimental: false -> true, storage-driver: (absent) -> overlay2``."""
    def show(value):
        return "(absent)" if value is None else json.dumps(value)
    return ", ".join(f"{c['key']}: {show(c['before'])} -> {show(c['after'])}" for c in changes)
