# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checkpoint a container into a tmpfs dump dir, and put it back when a migration fails."""
from __future__ import annotations

import os
import shutil
import time

from ansible_collections.edgemig.migration.plugins.module_utils.common.migration_state import (
    clear_held,
    held_dir_for,
    read_held,
    write_held,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker import containerd_dump
from ansible_collections.edgemig.migration.plugins.module_utils.docker.container_spec import upper_dir, volumes
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPI, DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.host_readiness import fs_type
from ansible_collections.edgemig.migration.plugins.module_utils.docker.tmpfs_restore import criu_log_errors
from ansible_collections.edgemig.migration.plugins.module_utils.wire.criu_images import ImageError, read_stats
from ansible_collections.edgemig.migration.plugins.module_utils.wire.dump_layout import is_page_image


class CheckpointError(Exception):
    pass


class RestartPolicyError(CheckpointError):
    """Docker refused to give a container back the restart policy a checkpoint held."""


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


# CRIU's log and stats of a dump through containerd: beside the images, on the same tmpfs, not sent.
CRIU_WORK = "criu.work"


def criu_errors(message: str, ckpt_dir: str, lines: int = 8) -> str:
    """The ``Error`` lines of the CRIU log that runc or containerd names in its message (or in the dump dir)."""
    return criu_log_errors(message, [os.path.join(ckpt_dir, "dump.log"), os.path.join(ckpt_dir, CRIU_WORK, "dump.log"),
                                     os.path.join(os.path.dirname(ckpt_dir), CRIU_WORK, "dump.log")], lines)


def criu_dump_stats(work: str) -> dict:
    """CRIU's own account of a dump through containerd (stats-dump): frozen, memdump, memwrite."""
    try:
        stats = read_stats(os.path.join(work, CRIU_WORK, "stats-dump")).get("dump") or {}
    except (OSError, ImageError):
        return {}
    return {f"criu_{k}": v for k, v in stats.items() if k in ("frozen_s", "memdump_s", "memwrite_s")}


def policy_of(inspect: dict) -> dict | None:
    """The container's restart policy, None for none (``no`` or unset)."""
    policy = (inspect.get("HostConfig") or {}).get("RestartPolicy") or {}
    if policy.get("Name") in (None, "", "no"):
        return None
    return {"Name": policy["Name"], "MaximumRetryCount": int(policy.get("MaximumRetryCount") or 0)}


def name_of(inspect: dict) -> str:
    """The container's name: what its held record is keyed by (a caller may have named it by id)."""
    return (inspect.get("Name") or inspect["Id"]).lstrip("/")


def describe(policy: dict | None) -> str:
    """A policy as ``docker run --restart`` spells it."""
    if not policy:
        return "no"
    retries = policy.get("MaximumRetryCount") or 0
    return f"{policy['Name']}:{retries}" if policy["Name"] == "on-failure" and retries else policy["Name"]


def hold_restarts(api: DockerAPI, inspect: dict, held_dir: str, **where) -> dict | None:
    """Set the container's restart policy to ``no`` for the checkpoint; returns the policy it had
    (None when it had none).

    To Docker a checkpoint that stops the container is an exit like any
    other: with ``always`` or ``unless-stopped`` (or ``on-failure``: the exit
    code is 137) it starts the container again, cold, on the source, while
    the target restores the checkpoint: two copies. The policy comes back
    with :func:`give_back` wherever the service runs again.

    First the held record (``held_dir``, on persistent storage; ``where``: the
    dump's paths) says durably that a checkpoint stops this container and which
    policy it had - also ``no``, so that a recovery after a reboot (which empties
    the dump tmpfs and its migration records) still knows to bring it back.
    Only then is the policy changed. Raises OSError (record) or DockerAPIError
    (policy); either way nothing is held then.
    """
    policy = policy_of(inspect)
    name = name_of(inspect)
    write_held(held_dir, name, inspect["Id"], policy, **where)
    if policy is None:
        return None
    try:
        api.update_container(inspect["Id"], {"RestartPolicy": {"Name": "no"}})
    except BaseException:
        # Docker may have applied it and lost the answer: the record goes only if the policy is unchanged.
        try:
            now = api.inspect_container(inspect["Id"])
        except Exception:
            now = None
        if now is not None and policy_of(now) == policy:
            clear_held(held_dir, name, inspect["Id"])
        raise
    return policy


def resume_restarts(api: DockerAPI, name: str, policy: dict | None) -> None:
    """Give the container back the restart policy :func:`hold_restarts` took (no-op for None).

    Raises RestartPolicyError naming the policy when Docker refuses: a source
    left at ``no`` silently would stay down after the next reboot.
    """
    if not policy:
        return
    try:
        api.update_container(name, {"RestartPolicy": policy})
    except DockerAPIError as exc:
        raise RestartPolicyError(
            f"the restart policy of {name!r} could not be given back: it was {describe(policy)!r} and stays "
            f"'no' until it is (docker update --restart {describe(policy)} {name}); Docker says: {exc.message}"
        ) from None


def give_back(api: DockerAPI, name: str, policy: dict | None, held_dir: str, container: str) -> None:
    """:func:`resume_restarts`, then drop the held record of ``container``: only once the policy is
    back (a refusal keeps the record, so that a recovery tries again)."""
    resume_restarts(api, name, policy)
    clear_held(held_dir, name, container)


def held_policy(held_dir: str, name: str, container: str) -> tuple[bool, dict | None]:
    """(whether a held record names ``container``, the policy it holds)."""
    held = read_held(held_dir, name)
    if held is None or held.get("container") not in (container, None):
        return False, None
    return True, held.get("restart_policy")


def held_dir_of(checkpoint_dir: str | None) -> str | None:
    """The held dir of the dump dir a checkpoint made by :func:`create` (or received by a
    target) lies in: ``<dump_dir>/<work>/<checkpoint>``. None without a checkpoint."""
    if not checkpoint_dir:
        return None
    return held_dir_for(os.path.dirname(os.path.dirname(os.path.normpath(checkpoint_dir))))


def dump(api: DockerAPI, inspect: dict, work: str, checkpoint: str, exit_container: bool) -> str:
    """CRIU dump into ``work/<checkpoint>``; returns which way: ``containerd`` or ``docker``.

    Through containerd when the container's shim says how to reach it (the
    images written once, straight into our tmpfs: containerd_dump), else
    Docker's checkpoint call. Raises DockerAPIError or ContainerdDumpError.
    """
    task = containerd_dump.task_of(inspect["Id"], int(inspect["State"].get("Pid") or 0))
    if task is None:
        api.create_checkpoint(inspect["Id"], checkpoint, work, exit_container=exit_container)
        return "docker"
    criu_work = os.path.join(work, CRIU_WORK)
    os.mkdir(criu_work, 0o700)
    containerd_dump.dump(task, inspect["Id"], os.path.join(work, checkpoint), criu_work,
                         exit_container=exit_container)
    return "containerd"


def create(api: DockerAPI, container: str, dump_dir: str, checkpoint: str,
           exit_container: bool = True, held_dir: str | None = None) -> dict:
    """Checkpoint ``container`` into ``dump_dir/<container>-<ts>/<checkpoint>``.

    If CRIU fails the container keeps running (CRIU thaws it); if Docker left
    it stopped anyway it is started again, so a failed checkpoint never takes
    the service down. A stopping checkpoint holds the container's restart
    policy (:func:`hold_restarts`); the result's ``restart_policy`` is what to
    give back where it runs again (None: nothing to give back), also kept on
    persistent storage in ``held_dir`` (default: ``held`` beside ``dump_dir``)
    until it is given back or the container is gone.
    """
    inspect = api.inspect_container(container)
    if inspect is None:
        raise CheckpointError(f"container {container!r} does not exist")
    if not inspect["State"].get("Running"):
        raise CheckpointError(f"container {container!r} is not running (status {inspect['State'].get('Status')})")
    os.makedirs(dump_dir, mode=0o700, exist_ok=True)
    work = os.path.join(dump_dir, f"{container}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    os.mkdir(work, 0o700)
    held_dir = held_dir or held_dir_for(dump_dir)
    try:
        held = hold_restarts(api, inspect, held_dir, work_dir=work,
                             checkpoint_dir=os.path.join(work, checkpoint)) if exit_container else None
    except (DockerAPIError, OSError) as exc:
        shutil.rmtree(work, ignore_errors=True)
        what = (f"could not be held: {exc.message}" if isinstance(exc, DockerAPIError)
                else f"could not be recorded in {held_dir}: {exc}")
        raise CheckpointError(f"checkpoint of {container!r} not started: its restart policy {what}") from None
    t0 = time.monotonic()
    try:
        via = dump(api, inspect, work, checkpoint, exit_container)
    except BaseException as exc:
        # Whatever stopped the dump, the policy comes back here (an unexpected error's rollback,
        # the caller's, then brings the service back, and gives back what is still held).
        refused = None
        if exit_container:
            try:
                give_back(api, name_of(inspect), held, held_dir, inspect["Id"])
            except RestartPolicyError as pe:
                refused = str(pe)
        if not isinstance(exc, (DockerAPIError, containerd_dump.ContainerdDumpError)):
            raise
        message = getattr(exc, "message", str(exc))
        tail = criu_errors(message, os.path.join(work, checkpoint))
        after = api.inspect_container(container)
        restarted = False
        if after is not None and not after["State"].get("Running"):
            api.start_container(container, allow_running=True)
            restarted = True
        shutil.rmtree(work, ignore_errors=True)
        msg = f"checkpoint of {container!r} failed: {message}"
        if restarted:
            msg += " (the container had stopped and was started again)"
        if tail:
            msg += f"; CRIU says: {tail}"
        if refused:
            raise RestartPolicyError(f"{msg}; and {refused}") from None
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
            "sizes": sizes, "durations": {"checkpoint_s": round(seconds, 4), **criu_dump_stats(work)},
            "checkpoint_via": via, "restart_policy": held,
            "held_dir": held_dir if exit_container else None,
            "held_fs": (fs_type(held_dir) or "unknown") if exit_container else None,
            "dump_fs": fs_type(work) or "unknown"}
