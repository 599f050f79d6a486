# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checkpoint a container into a tmpfs dump dir, and put it back when a migration fails."""
from __future__ import annotations

import os
import re
import shutil
import time

from ansible_collections.edgemig.migration.plugins.module_utils.container_spec import upper_dir, volumes
from ansible_collections.edgemig.migration.plugins.module_utils.docker_api import DockerAPI, DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.dump_layout import is_page_image
from ansible_collections.edgemig.migration.plugins.module_utils.host_readiness import fs_type


class CheckpointError(Exception):
    pass


def tree_size(path: str | None) -> int:
    total = 0
    if not path or not os.path.isdir(path):
        return 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += st.st_size
    return total


def checkpoint_sizes(ckpt_dir: str) -> dict:
    pages = other = 0
    for dirpath, _dirs, files in os.walk(ckpt_dir):
        for name in files:
            size = os.lstat(os.path.join(dirpath, name)).st_size
            rel = os.path.relpath(os.path.join(dirpath, name), ckpt_dir)
            if is_page_image("checkpoint", rel):
                pages += size
            else:
                other += size
    return {"pages": pages, "other": other}


def criu_errors(message: str, ckpt_dir: str, lines: int = 8) -> str:
    """The ``Error`` lines of the CRIU log that runc names in its message (or in the dump dir)."""
    candidates = re.findall(r"path=\s*(\S+\.log)", message)
    candidates += [os.path.join(ckpt_dir, "dump.log"), os.path.join(ckpt_dir, "criu.work", "dump.log")]
    for log in candidates:
        if os.path.isfile(log):
            with open(log, errors="replace") as fh:
                errors = [line.rstrip() for line in fh if "Error" in line]
            return "\n".join(errors[-lines:])
    return ""


def create(api: DockerAPI, container: str, dump_dir: str, checkpoint: str,
           exit_container: bool = True) -> dict:
    """Checkpoint ``container`` into ``dump_dir/<container>-<ts>/<checkpoint>``.

    If CRIU fails the container keeps running (CRIU thaws it); if Docker left
    it stopped anyway it is started again, so a failed checkpoint never takes
    the service down.
    """
    inspect = api.inspect_container(container)
    if inspect is None:
        raise CheckpointError(f"container {container!r} does not exist")
    if not inspect["State"].get("Running"):
        raise CheckpointError(f"container {container!r} is not running (status {inspect['State'].get('Status')})")
    os.makedirs(dump_dir, mode=0o700, exist_ok=True)
    work = os.path.join(dump_dir, f"{container}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    os.mkdir(work, 0o700)
    t0 = time.monotonic()
    try:
        api.create_checkpoint(inspect["Id"], checkpoint, work, exit_container=exit_container)
    except DockerAPIError as exc:
        tail = criu_errors(exc.message, os.path.join(work, checkpoint))
        after = api.inspect_container(container)
        restarted = False
        if after is not None and not after["State"].get("Running"):
            api.start_container(container)
            restarted = True
        shutil.rmtree(work, ignore_errors=True)
        msg = f"checkpoint of {container!r} failed: {exc.message}"
        if restarted:
            msg += " (the container had stopped and was started again)"
        if tail:
            msg += f"; CRIU says: {tail}"
        raise CheckpointError(msg) from None
    seconds = time.monotonic() - t0
    ckpt = os.path.join(work, checkpoint)
    sizes = checkpoint_sizes(ckpt)
    upper = upper_dir(inspect)
    vols = volumes(inspect)
    sizes["layer"] = tree_size(upper)
    sizes["volumes"] = sum(tree_size(v["path"]) for v in vols)
    sizes["total"] = sizes["pages"] + sizes["other"] + sizes["layer"] + sizes["volumes"]
    return {"work_dir": work, "checkpoint_dir": ckpt, "checkpoint": checkpoint,
            "container_id": inspect["Id"], "upper_dir": upper, "volumes": vols,
            "sizes": sizes, "durations": {"checkpoint_s": round(seconds, 4)},
            "dump_fs": fs_type(work) or "unknown"}
