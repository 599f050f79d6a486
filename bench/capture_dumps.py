# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Capture real CRIU dumps of the catalog services for the stream benchmark.

    flock /run/edgemig-lab.lock python3 bench/capture_dumps.py [apache mysql tomcat] [--force]

For each service: start it on lab edge1 from its catalog entry
(inventory/lab/group_vars/all/catalog.yml: image, env, volumes; the container is
named ``bench-<svc>`` and publishes no host port so it never collides with a
deployed service), put a little load / data in it (apache: requests; mysql:
a table with a few thousand rows; tomcat: hits on /app/), then
``docker checkpoint create --leave-running --checkpoint-dir`` into
``.cache/dumps/<svc>/checkpoint/`` and copy the container's overlay UpperDir
to ``.cache/dumps/<svc>/layer/`` and its named volumes to
``.cache/dumps/<svc>/volume/<name>/``. The container is removed afterwards.
A service whose ``.cache/dumps/<svc>/DONE`` exists is skipped (cache).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DUMPS = os.path.join(ROOT, ".cache", "dumps")
DOCKER = "/usr/bin/docker"
EDGE = "edge1"
SOCK = f"unix:///run/edgemig-lab/{EDGE}/docker.sock"
DEV_SOCK = "unix:///run/edgemig-dev/docker.sock"
NETNS = f"/var/run/netns/{EDGE}"


def sh(*args, check=True, capture=True, input=None, host=SOCK) -> str:
    cmd = [DOCKER, "-H", host, *args]
    r = subprocess.run(cmd, check=False, capture_output=capture, input=input)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.decode(errors='replace')}")
    return r.stdout.decode(errors="replace") if capture else ""


def catalog() -> dict:
    import yaml
    with open(os.path.join(ROOT, "inventory/lab/group_vars/all/catalog.yml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)["edgemig_services"]


def ensure_image(image: str) -> None:
    if sh("images", "-q", image).strip():
        return
    print(f"  loading {image} from the dev daemon", flush=True)
    save = subprocess.Popen([DOCKER, "-H", DEV_SOCK, "save", image], stdout=subprocess.PIPE)
    subprocess.run([DOCKER, "-H", SOCK, "load"], stdin=save.stdout, check=True,
                   stdout=subprocess.DEVNULL)
    if save.wait() != 0:
        raise SystemExit(f"cannot save {image} from {DEV_SOCK}")


def in_edge(*cmd, check=True, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={NETNS}", *cmd], capture_output=True,
                          check=check, timeout=timeout)


def http_get(ip: str, port: int, path: str) -> bytes:
    r = in_edge("python3", "-c",
                "import sys,urllib.request;sys.stdout.buffer.write(urllib.request.urlopen("
                f"'http://{ip}:{port}{path}', timeout=5).read())", check=False, timeout=20)
    if r.returncode != 0:
        raise OSError(r.stderr.decode(errors="replace")[-300:])
    return r.stdout


def wait_for(fn, what: str, timeout: float = 90.0) -> None:
    t_end = time.monotonic() + timeout
    last = None
    while time.monotonic() < t_end:
        try:
            fn()
            return
        except Exception as exc:  # retried until the deadline
            last = exc
            time.sleep(1.0)
    raise SystemExit(f"{what} did not come up: {last}")


def load(svc: str, name: str, ip: str) -> dict:
    info = {}
    if svc == "apache":
        wait_for(lambda: http_get(ip, 80, "/server-status?auto"), "apache")
        for i in range(200):
            http_get(ip, 80, "/" if i % 2 else "/server-status?auto")
        info["requests"] = 200
    elif svc == "tomcat":
        wait_for(lambda: http_get(ip, 8080, "/app/health.txt"), "tomcat", 180)
        for _unused in range(100):
            http_get(ip, 8080, "/app/")
        info["requests"] = 100
    elif svc == "mysql":
        def ping():
            r = sh("exec", name, "mariadb", "-uroot", "-e", "select 1", check=False)
            if "1" not in r:
                raise OSError("not ready")
        wait_for(ping, "mysql", 120)
        sql = ["CREATE DATABASE IF NOT EXISTS benchdb;",
               "CREATE TABLE IF NOT EXISTS benchdb.t (id INT AUTO_INCREMENT PRIMARY KEY, "
               "name VARCHAR(64), payload TEXT, n DOUBLE);"]
        for b in range(40):
            vals = ",".join(f"('row{b}_{i}', REPEAT(MD5('{b}-{i}'), {1 + i % 8}), {b * 1000 + i}.5)"
                            for i in range(500))
            sql.append(f"INSERT INTO benchdb.t (name, payload, n) VALUES {vals};")
        sql.append("SELECT COUNT(*), SUM(n) FROM benchdb.t;")
        sql.append("SELECT name, LENGTH(payload) FROM benchdb.t ORDER BY payload LIMIT 5;")
        sh("exec", "-i", name, "mariadb", "-uroot", input="\n".join(sql).encode())
        info["rows"] = 20000
    return info


def capture(svc: str, spec: dict, force: bool) -> None:
    out = os.path.join(DUMPS, svc)
    if os.path.exists(os.path.join(out, "DONE")) and not force:
        print(f"{svc}: cached at {out}")
        return
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    name = f"bench-{svc}"
    ensure_image(spec["image"])
    sh("rm", "-f", "-v", name, check=False)
    for v in spec.get("volumes") or []:
        sh("volume", "rm", "-f", f"bench-{v['name']}", check=False)
    args = ["run", "-d", "--name", name]
    for k, v in (spec.get("env") or {}).items():
        args += ["-e", f"{k}={v}"]
    for v in spec.get("volumes") or []:
        args += ["--mount", f"type=volume,source=bench-{v['name']},target={v['path']}"]
    args.append(spec["image"])
    args += list(spec.get("command") or [])
    print(f"{svc}: starting {name}", flush=True)
    sh(*args)
    try:
        ip = json.loads(sh("inspect", name))[0]["NetworkSettings"]["IPAddress"]
        info = load(svc, name, ip)
        time.sleep(2)
        cp_dir = os.path.join(out, "cpdir")
        t0 = time.monotonic()
        sh("checkpoint", "create", "--leave-running", "--checkpoint-dir", cp_dir, name, "cp1")
        info["checkpoint_s"] = round(time.monotonic() - t0, 3)
        os.rename(os.path.join(cp_dir, "cp1"), os.path.join(out, "checkpoint"))
        os.rmdir(cp_dir)
        ins = json.loads(sh("inspect", name))[0]
        upper = ins["GraphDriver"]["Data"]["UpperDir"]
        # The upper dir can hold sockets/fifos/whiteouts: copy it as it is.
        subprocess.run(["cp", "-a", upper, os.path.join(out, "layer")], check=True)
        # The engine streams regular files, dirs and symlinks only: a live
        # unix socket file (mysqld.sock) is recreated by the restored process.
        subprocess.run(["find", os.path.join(out, "layer"), "-type", "s", "-delete"], check=True)
        for m in ins.get("Mounts") or []:
            if m.get("Type") == "volume":
                dst = os.path.join(out, "volume", m["Name"].removeprefix("bench-"))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                subprocess.run(["cp", "-a", m["Source"], dst], check=True)
        sizes = {}
        for part in ("checkpoint", "layer", "volume"):
            p = os.path.join(out, part)
            if os.path.isdir(p):
                du = subprocess.run(["du", "-sb", p], capture_output=True, text=True, check=True)
                sizes[part] = int(du.stdout.split()[0])
        pages = sum(os.path.getsize(os.path.join(out, "checkpoint", f))
                    for f in os.listdir(os.path.join(out, "checkpoint")) if f.startswith("pages-"))
        info.update({"svc": svc, "image": spec["image"], "sizes": sizes, "pages_bytes": pages,
                     "captured": time.strftime("%Y-%m-%dT%H:%M:%S")})
        with open(os.path.join(out, "DONE"), "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=1)
        print(f"{svc}: {json.dumps(info)}", flush=True)
    finally:
        sh("rm", "-f", "-v", name, check=False)
        for v in spec.get("volumes") or []:
            sh("volume", "rm", "-f", f"bench-{v['name']}", check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("services", nargs="*", default=["apache", "mysql", "tomcat"])
    ap.add_argument("--force", action="store_true", help="capture again even if cached")
    args = ap.parse_args()
    cat = catalog()
    for svc in args.services:
        if svc not in cat:
            raise SystemExit(f"{svc} is not in the catalog: {sorted(cat)}")
        capture(svc, cat[svc], args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
