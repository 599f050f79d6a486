# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checkpoint a container's task through containerd, with CRIU writing straight into our directory.

Docker 20.10's checkpoint call asks containerd for the checkpoint as an image:
CRIU dumps into a directory containerd makes for the call, containerd packs it
into its content store, and Docker unpacks it into the directory we named.
All of it happens while the service is frozen and dead: for MariaDB's 88 MB of
pages 1.7 s of a 1.9 s checkpoint stage, against 0.13 s of CRIU's own freeze
(docs/benchmarks.md). Given an image path, containerd has runc hand that path
to CRIU and skips the content store (``ctr tasks checkpoint --image-path``):
one write, into the dump tmpfs, and the images never pass through
containerd's directories at all.

The container's own shim names the containerd and the namespace that run it
(``containerd-shim-runc-v2 -namespace moby -id <id> -address <socket>``), so
nothing needs configuring; where that is not so (another runtime, no ``ctr``),
:func:`task_of` says None and the caller takes Docker's call, slower only.

To Docker the task simply exits, exactly as after its own checkpoint call
(exit code 137, then ``docker start --checkpoint`` restores it).
"""
from __future__ import annotations

import os
import shutil
import subprocess

SHIM_PREFIX = "containerd-shim"


class ContainerdDumpError(Exception):
    pass


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def shim_flags(argv: list[str]) -> dict:
    """``-namespace``, ``-id``, ``-address`` of a containerd shim's argv (``-flag value`` or ``-flag=value``)."""
    flags: dict = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            key = arg.lstrip("-")
            if "=" in key:
                key, value = key.split("=", 1)
                flags[key] = value
            elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                flags[key] = argv[i + 1]
                i += 1
        i += 1
    return flags


def task_of(container_id: str, pid: int) -> dict | None:
    """``{"ctr", "address", "namespace"}`` to reach the containerd task of the container whose init
    process is ``pid``, or None when its parent is not a containerd shim of that very container,
    its socket is missing, or ``ctr`` is not installed."""
    ctr = shutil.which("ctr")
    parent = _parent(pid) if pid else None
    if not ctr or not parent:
        return None
    argv = _argv(parent)
    if not argv or not os.path.basename(argv[0]).startswith(SHIM_PREFIX):
        return None
    flags = shim_flags(argv)
    if flags.get("id") != container_id or not flags.get("namespace") or not flags.get("address"):
        return None
    if not os.path.exists(flags["address"]):
        return None
    return {"ctr": ctr, "address": flags["address"], "namespace": flags["namespace"]}


def dump(task: dict, container_id: str, image_path: str, work_path: str, exit_container: bool = True,
         timeout: float = 300.0) -> None:
    """CRIU dump of the task into ``image_path`` (its log and stats into ``work_path``).

    A failed dump leaves the processes running (CRIU thaws them) and raises
    ContainerdDumpError with ctr's message.
    """
    cmd = [task["ctr"], "--address", task["address"], "--namespace", task["namespace"],
           "tasks", "checkpoint", "--image-path", image_path, "--work-path", work_path]
    if exit_container:
        cmd.append("--exit")
    cmd.append(container_id)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ContainerdDumpError(f"ctr tasks checkpoint did not finish in {timeout:.0f} s") from None
    except OSError as exc:  # ctr removed since task_of found it
        raise ContainerdDumpError(f"cannot run {task['ctr']}: {exc}") from None
    if proc.returncode != 0:
        raise ContainerdDumpError((proc.stderr or proc.stdout or f"ctr exited {proc.returncode}").strip())
