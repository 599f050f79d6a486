# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for the two-edge lab, shared by the lab tests (tests/integration) and
the benchmarks (bench/): playbooks, docker on an edge, service probes, the
tc rate schedule, and the fault helpers of the fault suite and the chaos soak
(a playbook in the background, its receiver, nft link cuts, what a migration
leaves behind). One home for both; each puts this directory on sys.path.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable

import svcclients  # lab/, beside this file
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INVENTORY = os.path.join(ROOT, "inventory", "lab", "hosts.yml")
# The lab's service catalog lives with the lab's inventory (group_vars beside hosts.yml).
CATALOG = os.path.join(ROOT, "inventory", "lab", "group_vars", "all", "catalog.yml")
RUNC_CONF = "/etc/criu/runc.conf"  # the lab's: runc hands it to CRIU on every edge (one file system)
LAB = "/var/lib/edgemig-lab"  # the edges' Docker data roots and dump tmpfs live under it
LAB_IMAGE_CACHE = "{{ inventory_dir }}/../../.cache/images"
EDGES = ("edge1", "edge2", "edge3")  # edge3: Docker 26 (lab/docker26.sh)
DOCKER = "/usr/bin/docker"  # the 20.10 client (API 1.41: Docker 26 on edge3 accepts it too)


def catalog() -> dict:
    with open(CATALOG) as fh:
        return yaml.safe_load(fh)["edgemig_services"]


def env() -> dict:
    e = dict(os.environ)
    e["ANSIBLE_CONFIG"] = os.path.join(ROOT, "ansible.cfg")
    e["ANSIBLE_COLLECTIONS_PATH"] = os.path.join(ROOT, ".cache", "collections")
    e["PWD"] = ROOT  # playbooks run in ROOT, as from a shell there (reports/ goes under it)
    e.setdefault("ANSIBLE_NOCOLOR", "1")
    return e


def playbook(name: str, *extra: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = ["ansible-playbook", "-i", INVENTORY, os.path.join(ROOT, "playbooks", name), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return proc


def recap_changed(output: str) -> int:
    return sum(int(n) for n in re.findall(r"changed=(\d+)", output.split("PLAY RECAP")[-1]))


def docker(edge: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [DOCKER, "-H", f"unix:///run/edgemig-lab/{edge}/docker.sock", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: {proc.stderr}")
    return proc


def running_on(svc: str) -> list[str]:
    out = []
    for edge in EDGES:
        proc = docker(edge, "inspect", "-f", "{{.State.Running}}", svc, check=False)
        if proc.returncode == 0 and proc.stdout.strip() == "true":
            out.append(edge)
    return out


def http_get(host: str, port: int, path: str, timeout: float = 3.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def sql(spec: dict, query: str, params: tuple = (), host: str | None = None, commit: bool = False):
    import pymysql
    probe = spec["uptime_probe"]
    conn = pymysql.connect(host=host or spec["address"], port=probe["port"], user=probe["user"],
                           password=probe["password"], database=probe.get("database"), connect_timeout=5,
                           read_timeout=10, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
        if commit:
            conn.commit()
        return rows
    finally:
        conn.close()


def uptime(spec: dict, host: str | None = None) -> float:
    """The service's own uptime in seconds, read through its stable address."""
    probe = spec["uptime_probe"]
    addr = host or spec["address"]
    if probe["type"] == "sql":
        rows = sql(spec, probe["query"], host=host)
        value = float(dict(rows)[probe["key"]])
    elif probe["type"] == "redis":
        with svcclients.Redis(addr, probe["port"]) as r:
            value = float(r.info("server")[probe.get("key", "uptime_in_seconds")])
    elif probe["type"] == "postgres":
        with svcclients.pg_connect(spec, host=host) as conn:
            value = float(conn.execute(probe["query"]).fetchone()[0])
    elif probe["type"] == "mqtt":
        value = svcclients.mqtt_sys_uptime(addr, probe["port"])
    else:
        status, body = http_get(host or spec["address"], probe["port"], probe["path"])
        assert status == 200, f"uptime probe answered {status}"
        m = re.search(rf"{re.escape(probe['key'])}\s*[:=]\s*([0-9.]+)", body)
        assert m, f"no {probe['key']} in {body[:300]!r}"
        value = float(m.group(1))
    return value / 1000.0 if probe.get("unit") == "ms" else value


def wait_answering(spec: dict, timeout: float = 30.0) -> float:
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        try:
            return uptime(spec)
        except Exception as exc:  # still switching over
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"service at {spec['address']} does not answer: {last}")


class Writer(threading.Thread):
    """A MariaDB client that commits one row at a time through the service address
    (PyMySQL, autocommit off, one INSERT + COMMIT per row) and remembers every row
    whose COMMIT was acknowledged: after a migration each of them must be in the
    table. Shared by the soak (bench/soak.py) and the migration benchmark.

    ``table`` needs a ``v CHAR(32)`` column. ``rate`` paces the commits at that
    many rows/s (no catching up after a gap); without it the writer sleeps 10 ms
    after each commit (the soak's pace).
    """

    def __init__(self, spec: dict, table: str = "soak", rate: float | None = None, name: str = "soak-writer"):
        super().__init__(daemon=True, name=name)
        self.spec = spec
        self.table = table
        self.rate = rate
        self.acked: list[str] = []
        self.commit_times: list[float] = []
        self.errors = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        import pymysql
        probe = self.spec["uptime_probe"]
        conn = None
        nxt = time.monotonic()
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = pymysql.connect(host=self.spec["address"], port=probe["port"], user=probe["user"],
                                           password=probe["password"], database=probe.get("database"),
                                           connect_timeout=2, read_timeout=5, write_timeout=5, autocommit=False)
                value = uuid.uuid4().hex
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (v) VALUES (%s)", (value,))
                conn.commit()
                with self.lock:  # acknowledged: it must survive
                    self.acked.append(value)
                    self.commit_times.append(time.monotonic())
                if self.rate:
                    nxt = max(nxt + 1.0 / self.rate, time.monotonic() - 1.0 / self.rate)
                    time.sleep(max(0.0, nxt - time.monotonic()))
                else:
                    time.sleep(0.01)
            except Exception:
                self.errors += 1
                try:
                    if conn is not None:
                        conn.close()
                except Exception:
                    pass
                conn = None
                time.sleep(0.05)
                nxt = time.monotonic()

    def rows_between(self, t0: float, t1: float) -> int:
        with self.lock:
            return sum(1 for t in self.commit_times if t0 <= t <= t1)

    def longest_gap(self, t0: float, t1: float) -> float:
        with self.lock:
            times = [t for t in self.commit_times if t0 - 5 <= t <= t1 + 5]
        times = [t0] + [t for t in times if t0 <= t <= t1] + [t1]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def snapshot(self) -> list[str]:
        """The rows acknowledged so far (a copy: the thread keeps appending)."""
        with self.lock:
            return list(self.acked)

    def finish(self) -> list[str]:
        """Stop writing; the rows acknowledged in all."""
        self.stop.set()
        self.join(timeout=15)
        return self.snapshot()


EDGE_IP = {"edge1": "10.213.0.11", "edge2": "10.213.0.12", "edge3": "10.213.0.13"}


def port_open(edge: str, port: int) -> bool:
    """Does the edge host itself accept connections on ``port``?"""
    import socket
    try:
        with socket.create_connection((EDGE_IP[edge], port), timeout=2):
            return True
    except OSError:
        return False


def other(edge: str) -> str:
    return "edge2" if edge == "edge1" else "edge1"


def wait_for(cond: Callable[[], object], timeout: float, step: float = 0.05, what: str = "condition"):
    """``cond()``'s first truthy value, polled every ``step`` s; AssertionError after ``timeout`` s."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ------------------------------------------------------------ playbooks run in the background
# The fault suite (tests/integration/test_faults.py) and the chaos soak (bench/soak.py --chaos)
# inject faults while a playbook runs: these start it, find the processes to hit and undo the faults.
def ansible_cmd(name: str, *extra: str) -> list[str]:
    return ["ansible-playbook", "-i", INVENTORY, os.path.join(ROOT, "playbooks", name), *extra]


def start_playbook(name: str, *extra: str) -> subprocess.Popen:
    """ansible-playbook in its own process group (so Ctrl-C can be sent to it as a terminal would)."""
    # stdin of its own: a killed ansible-playbook cannot restore the O_NONBLOCK it set on a
    # shared one, and every later ansible run would refuse it ("requires blocking IO").
    return subprocess.Popen(ansible_cmd(name, *extra), cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen, timeout: int = 600) -> str:
    out, _unused = proc.communicate(timeout=timeout)
    return out or ""


# EDGEMIG_FAULTS hooks (docs/reliability.md): keys corrupt_every, restore, health, pause_verified,
# pause_restore. The stall timeout comes with them: the faults that cut the link need it short.
STALL_TIMEOUT = 8


def faults_arg(stall_timeout: int = STALL_TIMEOUT, **faults) -> list[str]:
    return ["-e", json.dumps({"edgemig_faults": faults}), "-e", f"edgemig_stall_timeout={stall_timeout}"]


def receiver_pids(svc: str) -> list[int]:
    """The receiver's argv carries the tag ``edgemig-receiver:<svc>`` (its comm is edgemig-recv)."""
    proc = subprocess.run(["pgrep", "-f", f"edgemig-receiver:{svc}"], capture_output=True, text=True, check=False)
    return [int(p) for p in proc.stdout.split()]


def module_pids(module: str = "edge_migrate") -> list[int]:
    """Processes running an Ansible module on an edge (the edges share the host's process table):
    modules run from a file ``AnsiballZ_<module>.py`` (async_wrapper's, or edge_migrate's detached
    job directory) go on when the controller is killed."""
    proc = subprocess.run(["pgrep", "-f", f"AnsiballZ_{module}"], capture_output=True, text=True, check=False)
    return [int(p) for p in proc.stdout.split()]


def sshd_session_of(pid: int) -> int:
    """The sshd session process that runs ``pid`` (the receiver): its nearest sshd ancestor."""
    ppid = pid
    for _unused in range(5):
        ppid = int(open(f"/proc/{ppid}/stat").read().rsplit(")", 1)[1].split()[1])
        if open(f"/proc/{ppid}/comm").read().strip() == "sshd":
            return ppid
    raise AssertionError(f"no sshd among the parents of pid {pid}")


def nft_drop_edges(one: str = "edge1", two: str = "edge2") -> None:
    """Drop every packet between two edges on the lab bridge (the controller's own SSH is untouched)."""
    a, b = EDGE_IP[one], EDGE_IP[two]
    rules = (f"table bridge edgemig_fault {{\n chain cut {{\n  type filter hook forward priority -200; policy accept;\n"
             f"  ip saddr {a} ip daddr {b} drop\n  ip saddr {b} ip daddr {a} drop\n }}\n}}\n")
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)


def nft_clear() -> None:
    subprocess.run(["nft", "delete", "table", "bridge", "edgemig_fault"], capture_output=True, check=False)


# ------------------------------------------------------------ what a migration leaves behind
def dump_dir(edge: str) -> str:
    return f"{LAB}/{edge}/dumps"


def empty_dump_dir(edge: str) -> None:
    """What a reboot does to ``edge``'s dump tmpfs: everything in it gone."""
    d = dump_dir(edge)
    for entry in os.listdir(d):
        path = os.path.join(d, entry)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)


def leftover_dumps(svc: str, target_side: bool = True) -> dict[str, list[str]]:
    """What a migration of ``svc`` left in each edge's dump tmpfs: a source's dump dirs (``<svc>-*``)
    and, with ``target_side``, a target's checkpoint (``<svc>.restore``) or warm pages (``<svc>.warm``)
    holding any file - memory, all of it."""
    def holds_files(path: str) -> bool:
        return any(files for _d, _s, files in os.walk(path))

    out = {}
    for edge in EDGES:
        d = dump_dir(edge)
        names = os.listdir(d) if os.path.isdir(d) else []
        left = [n for n in names if n.startswith(f"{svc}-")]
        if target_side:
            left += [n for n in names if n in (f"{svc}.restore", f"{svc}.warm") and holds_files(os.path.join(d, n))]
        if left:
            out[edge] = left
    return out


def state_phase(edge: str, svc: str) -> str | None:
    """The phase in ``edge``'s migration record of ``svc`` (``.edgemig-state/<svc>.json``), or None."""
    try:
        with open(os.path.join(dump_dir(edge), ".edgemig-state", f"{svc}.json")) as fh:
            return json.load(fh).get("phase")
    except (OSError, ValueError):
        return None


def address_on(address: str) -> list[str]:
    """The edges whose eth0 holds ``address``."""
    out = []
    for edge in EDGES:
        proc = subprocess.run(["ip", "-n", edge, "-j", "addr", "show", "dev", "eth0"], capture_output=True, text=True,
                              check=False)
        links = json.loads(proc.stdout or "[]")
        if any(a.get("local") == address for link in links for a in link.get("addr_info", [])):
            out.append(edge)
    return out


def report(svc: str) -> dict:
    with open(os.path.join(ROOT, "reports", f"migrate-{svc}-latest.json")) as fh:
        return json.load(fh)


def lab_is_up() -> bool:
    proc = subprocess.run(["bash", os.path.join(ROOT, "lab", "lab.sh"), "status"], capture_output=True, text=True, check=False)
    return proc.returncode == 0 and "dockerd pid" in proc.stdout


# The lab's registry (lab.sh: namespace emigreg); the lab's dockerds trust it over plain HTTP.
REGISTRY = "10.213.0.5:5000"


def user_inventory(directory: str, services: dict) -> str:
    """An inventory of the user's own, as a user makes one: ``directory/inventory/hosts.yml``
    (the lab's hosts) and its ``group_vars`` (the lab's catalog plus ``services``); relative
    build contexts and archives are taken from ``directory/inventory``. Returns the inventory file's path."""
    inv = os.path.join(directory, "inventory")
    os.makedirs(os.path.join(inv, "group_vars", "all"), exist_ok=True)
    with open(INVENTORY) as src:
        hosts = src.read()
    # The lab's image cache is <checkout>/.cache/images, two levels above inventory/lab/; this
    # inventory is one level down: its cache stays <directory>/.cache/images.
    assert LAB_IMAGE_CACHE in hosts, LAB_IMAGE_CACHE
    with open(os.path.join(inv, "hosts.yml"), "w") as dst:
        dst.write(hosts.replace(LAB_IMAGE_CACHE, "{{ inventory_dir }}/../.cache/images"))
    merged = {**catalog(), **services}
    with open(os.path.join(inv, "group_vars", "all", "catalog.yml"), "w") as fh:
        yaml.safe_dump({"edgemig_services": merged}, fh, sort_keys=False)
    return os.path.join(inv, "hosts.yml")


def run(cmd: list[str], cwd: str = ROOT, timeout: int = 900, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """A command line as a user types it in ``cwd``: no ANSIBLE_* from the test's environment."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    e["ANSIBLE_NOCOLOR"] = "1"
    e["PWD"] = cwd  # what a shell in cwd would export
    e.update(extra_env or {})
    return subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


class RateSchedule(threading.Thread):
    """Apply link rates at given offsets while a transfer or a migration runs.

    ``steps`` are ``(offset_s, rate_mbit)``; ``apply(rate_mbit)`` changes the
    link (a ``tc qdisc change``). Offsets count from the thread's start, or,
    with ``anchor_dir``, from the moment an entry named ``prefix*`` appears
    there (a migration's dump dir: the freeze), so the Ansible run before it
    does not shift the steps off the stream. ``stop()`` ends it early;
    ``applied`` lists what was applied when (``t`` from the anchor).
    """

    def __init__(self, apply: Callable[[float], None], steps: list[tuple[float, float]],
                 anchor_dir: str | None = None, prefix: str = ""):
        super().__init__(daemon=True)
        self.apply, self.steps = apply, list(steps)
        self.anchor_dir, self.prefix = anchor_dir, prefix
        self._stop_ev = threading.Event()
        self.applied: list[dict] = []
        self.t0: float | None = None
        self.anchored_after_s: float | None = None

    def stop(self) -> None:
        self._stop_ev.set()
        if self.is_alive():
            self.join()

    def _wait_anchor(self) -> bool:
        start = time.monotonic()
        while not self._stop_ev.wait(0.02):
            try:
                if any(n.startswith(self.prefix) for n in os.listdir(self.anchor_dir)):
                    self.anchored_after_s = round(time.monotonic() - start, 3)
                    return True
            except FileNotFoundError:
                pass
        return False

    def run(self) -> None:
        if self.anchor_dir and not self._wait_anchor():
            return
        self.t0 = time.monotonic()
        for offset, rate in self.steps:
            if self._stop_ev.wait(max(0.0, self.t0 + offset - time.monotonic())):
                return
            self.apply(rate)
            self.applied.append({"t": round(time.monotonic() - self.t0, 3), "rate_mbit": rate,
                                 "wall": time.time()})


# CRIU images on persistent storage (issue 13): the checks of test_security and test_services.
CRIU_IMAGE = re.compile(r"^(pages|pagemap|core|mm|pstree|inventory|ids|fdinfo|files|tcp-stream)"
                        r"(-\d+)?\.img$")
# File systems that hold nothing once the machine is off (overlay mounts are views of layers on disk,
# which are walked where they lie).
VOLATILE = {"tmpfs", "ramfs", "proc", "sysfs", "devtmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "nsfs",
            "overlay", "bpf", "tracefs", "debugfs", "securityfs", "pstore", "fusectl", "configfs", "hugetlbfs",
            "autofs", "binfmt_misc"}


# Where a migration could leave a CRIU image on disk: the edges' Docker data roots lie under /var
# (LAB/<edge>/docker), so walking /var covers them once.
PERSISTENT_ROOTS = ("/var", "/tmp")


def mounts() -> list[tuple[str, str]]:
    """(mount point, file system type) of every mount this process sees, from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _sep, right = line.partition(" - ")
            out.append((left.split()[4].replace("\\040", " "), right.split()[0]))
    return out


def volatile_mounts() -> set[str]:
    return {point for point, fstype in mounts() if fstype in VOLATILE}


def criu_images_on_disk(since: float, roots=PERSISTENT_ROOTS) -> list[str]:
    """CRIU images created (ctime) since ``since`` anywhere under ``roots`` but on volatile mounts."""
    skip = volatile_mounts()
    found = []
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in skip]
            for name in files:
                if CRIU_IMAGE.match(name):
                    path = os.path.join(dirpath, name)
                    try:
                        if os.lstat(path).st_ctime >= since:
                            found.append(path)
                    except FileNotFoundError:
                        pass
    return found


# ------------------------------------------------------------ runc.conf with a line more, for a test
def runc_conf_overlays() -> int:
    """How many mounts sit on the lab's runc.conf (a test's bind mounts; 0 normally)."""
    return sum(1 for point, _fstype in mounts() if point == RUNC_CONF)


@contextlib.contextmanager
def runc_conf_plus(text: str):
    """The lab's runc.conf plus ``text`` (CRIU options, one per line), bind-mounted over it while the
    block runs: runc hands the one file to CRIU on every edge. A mount a killed run left is undone first
    (it would otherwise be copied into this one), and this one is undone whatever the block raised."""
    while runc_conf_overlays():
        subprocess.run(["umount", RUNC_CONF], check=True)
    fd, conf = tempfile.mkstemp(prefix="edgemig-runc-conf-", dir="/run")
    try:
        with os.fdopen(fd, "w") as fh, open(RUNC_CONF) as lab_conf:
            fh.write(lab_conf.read().rstrip("\n") + "\n" + text.strip("\n") + "\n")
        os.chmod(conf, 0o644)
        subprocess.run(["mount", "--bind", conf, RUNC_CONF], check=True)
        try:
            yield conf
        finally:
            subprocess.run(["umount", RUNC_CONF], check=False)
    finally:
        os.unlink(conf)
