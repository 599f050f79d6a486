# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checkpoint and restore timings on the Docker 26 edge (lab/docker26.sh), one method per row.

Each run starts a fresh container of the test image (``lab/docker26.sh image``: a
busybox loop printing a counter, ~8 MB of memory), lets it count, checkpoints it,
restores it into the same container and checks the counter went on (a cold start
would print 1 again). Methods:

- ``docker``: Docker's checkpoint call (its own checkpoint dir), then ``docker start
  --checkpoint`` at once: the content-store race (see docs/docker26.md).
- ``docker-wait``: the same, restore after ``--wait`` seconds.
- ``docker-tmpfs``: Docker's call with a checkpoint dir on the tmpfs (edgemig's fallback
  dump), restored at once by tmpfs_restore.start_from_checkpoint (a rollback on the source).
- ``docker-tmpfs-nolinks``: the same with the pages left in place (as when they cannot be
  set aside): the tar is then the very one Docker's checkpoint call left in containerd,
  unless the restore nonce makes it unique (``--no-nonce`` shows the race).
- ``ctr-tmpfs``: the dump through containerd with an image path (containerd_dump, with
  containerd 1.7's ctr), restored by tmpfs_restore.start_from_checkpoint.
- ``ctr-copy``: the same dump copied into the container's checkpoints dir, plain start.

Needs root and the Docker 26 daemon up. Prints one JSON line per run and a summary.

    python3 bench/docker26_restore.py [--runs 5] [--methods docker,ctr-tmpfs] [--wait 2]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from collection_path import ensure_collection_path  # noqa: E402

ensure_collection_path()

from ansible_collections.edgemig.migration.plugins.module_utils.docker import containerd_dump, tmpfs_restore  # noqa: E402
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import (  # noqa: E402
    DockerAPI,
    DockerAPIError,
    _demux,
)


def d26_env() -> dict:
    """``lab/docker26.sh env`` as a dict."""
    out = subprocess.run([os.path.join(ROOT, "lab", "docker26.sh"), "env"], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


IMAGE = "emig/bb:1"
NAME = "d26-bench"


def last_count(api: DockerAPI, name: str) -> int:
    raw = api.request("GET", f"/containers/{name}/logs", params={"stdout": 1, "tail": 1}, raw=True)
    text = _demux(raw).decode(errors="replace").split()
    return int(text[0]) if text else 0


def fresh(api: DockerAPI, name: str = NAME, settle: float = 1.5) -> str:
    api.remove_container(name)
    cid = api.create_container(name, {"Image": IMAGE, "HostConfig": {"NetworkMode": "none"}})
    api.start_container(cid)
    time.sleep(settle)
    return cid


def wait_exited(api: DockerAPI, cid: str, timeout: float = 10.0) -> None:
    end = time.time() + timeout
    while (api.inspect_container(cid)["State"] or {}).get("Running"):
        if time.time() > end:
            raise RuntimeError(f"{cid[:12]} still running after its checkpoint")
        time.sleep(0.02)


def restored(api: DockerAPI, cid: str, before: int) -> bool:
    time.sleep(0.5)
    state = api.inspect_container(cid)["State"]
    return bool(state.get("Running")) and last_count(api, cid) > before


@contextlib.contextmanager
def pages_in_place():
    """tmpfs_restore as if no page could be set aside (the pages travel through containerd)."""
    real = tmpfs_restore.set_pages_aside
    tmpfs_restore.set_pages_aside = lambda path, links=None: 0
    try:
        yield
    finally:
        tmpfs_restore.set_pages_aside = real


def run_once(api: DockerAPI, method: str, dump_root: str, data_root: str, wait: float) -> dict:
    cid = fresh(api)
    row: dict = {"method": method}
    name = f"cp{time.time_ns()}"
    parent = os.path.join(dump_root, name + ".d")
    path = os.path.join(parent, name)
    before = last_count(api, cid)
    t0 = time.perf_counter()
    if method in ("docker", "docker-wait"):
        api.create_checkpoint(cid, name, None)
    elif method.startswith("docker-tmpfs"):
        os.makedirs(parent)
        api.create_checkpoint(cid, name, parent)
    else:
        pid = api.inspect_container(cid)["State"]["Pid"]
        task = containerd_dump.task_of(cid, pid)
        if task is None:
            raise RuntimeError("no containerd task found for the container (ctr on PATH?)")
        os.makedirs(path)
        containerd_dump.dump(task, cid, path, os.path.join(parent, "work"))
    row["checkpoint_s"] = round(time.perf_counter() - t0, 3)
    wait_exited(api, cid)
    if method == "docker-wait":
        time.sleep(wait)
    if method == "ctr-copy":
        shutil.copytree(path, os.path.join(tmpfs_restore.checkpoints_dir(data_root, cid), name))
    t0 = time.perf_counter()
    try:
        if method in ("docker", "docker-wait", "ctr-copy"):
            api.start_container(cid, checkpoint=name)
        elif method == "docker-tmpfs-nolinks":
            with pages_in_place():
                tmpfs_restore.start_from_checkpoint(api, cid, path)
        else:
            tmpfs_restore.start_from_checkpoint(api, cid, path)
        row["restore_s"] = round(time.perf_counter() - t0, 3)
        row["ok"] = restored(api, cid, before)
    except (DockerAPIError, OSError) as exc:
        row["restore_s"] = round(time.perf_counter() - t0, 3)
        row["ok"] = False
        row["error"] = str(exc)[:200]
    shutil.rmtree(parent, ignore_errors=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--methods", default="docker,docker-wait,docker-tmpfs,docker-tmpfs-nolinks,ctr-tmpfs,ctr-copy")
    ap.add_argument("--wait", type=float, default=2.0, help="seconds before the docker-wait restore")
    ap.add_argument("--no-nonce", action="store_true", help="restore without tmpfs_restore's nonce file")
    args = ap.parse_args()
    if args.no_nonce:
        tmpfs_restore.write_nonce = lambda path: ""
    env = d26_env()
    # containerd 1.7's ctr (containerd_dump finds ctr on PATH).
    os.environ["PATH"] = os.path.dirname(env["D26_CTR"]) + os.pathsep + os.environ.get("PATH", "")
    api = DockerAPI(env["DOCKER_HOST"])
    dump_root = "/run/edgemig-d26/bench"  # the daemon's tmpfs
    os.makedirs(dump_root, exist_ok=True)
    rows = []
    try:
        for method in args.methods.split(","):
            for _run in range(args.runs):
                row = run_once(api, method, dump_root, env["D26_DATA_ROOT"], args.wait)
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        api.remove_container(NAME)
        shutil.rmtree(dump_root, ignore_errors=True)
    print("method                ok/runs  checkpoint_s (median, min-max)  restore_s of the ok ones (median, min-max)")
    for method in args.methods.split(","):
        mine = [r for r in rows if r["method"] == method]
        ok = [r for r in mine if r["ok"]]
        cps = [r["checkpoint_s"] for r in mine]
        rss = [r["restore_s"] for r in ok]

        def span(xs):
            return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})" if xs else "-"
        print(f"{method:21} {len(ok)}/{len(mine)}      {span(cps):30} {span(rss)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
