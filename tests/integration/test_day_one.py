# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Day one of a user: the documented command lines exactly as written, and the
user's own service from a Dockerfile, a registry digest or an archive.

The command lines are read from the README, the playbooks' header comments and
the roles' READMEs, with their optional ``[...]`` parts left out, and run from
the collection root with nothing added: a documented form that breaks fails here.
"""
from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import time

import pytest
from labutil import EDGES, REGISTRY, ROOT, docker, http_get, lab_is_up, run, running_on, user_inventory  # noqa: E402 (tests/integration is on sys.path via conftest)

pytestmark = pytest.mark.lab
EXAMPLE = os.path.join(ROOT, "docs", "examples", "counter")
# The user's services of these tests: an address of their own (the fault suite's secret
# service uses .104), taken off every edge again afterwards.
ADDRESS = "10.213.0.110"
# Run before the others: provision makes hosts ready, deploy puts the service somewhere.
ORDER = ("provision.yml", "images.yml", "deploy.yml", "migrate.yml")


@pytest.fixture(scope="module", autouse=True)
def lab():
    assert lab_is_up(), "the lab is not up: run `make provision` (or `make test`, which does it)"


def documented_commands() -> list[str]:
    """Every ``ansible-playbook`` line of the docs, optional parts and comments removed."""
    sources = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "playbooks", "*.yml"))),
               *sorted(glob.glob(os.path.join(ROOT, "roles", "*", "README.md")))]
    found = []
    for path in sources:
        with open(path) as fh:
            for line in fh:
                text = line.strip().lstrip("#").strip()
                if not text.startswith("ansible-playbook "):
                    continue
                text = re.sub(r"\s+#\s.*$", "", text)           # trailing comment
                text = re.sub(r"\s*\[[^\]]*\]", "", text)         # optional parts
                if "svc=counter" in text or "myedge" in text:     # the own-service example: its own test
                    continue
                if text not in found:
                    found.append(text)
    return sorted(found, key=lambda c: next((i for i, p in enumerate(ORDER) if p in c), len(ORDER)))


def test_the_docs_document_the_main_job():
    cmds = documented_commands()
    assert "ansible-playbook playbooks/migrate.yml -e svc=apache" in cmds, cmds
    assert any(c.startswith("ansible-playbook") and "deploy.yml -e svc=apache" in c and "host=" not in c
               for c in cmds), cmds


def test_documented_commands_as_written():
    cmds = documented_commands()
    assert len(cmds) >= 6, cmds
    for cmd in cmds:
        before = running_on("apache")
        proc = run(shlex.split(cmd))
        assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-2000:]}"
        if "migrate.yml" in cmd and "target=" not in cmd:
            after = running_on("apache")
            assert len(before) == 1 and len(after) == 1 and after != before, (cmd, before, after)
            assert "url: http://10.213.0.101:4004/" in proc.stdout, proc.stdout[-3000:]
            path = os.path.join(ROOT, "reports", "migrate-apache-latest.json")
            assert f"report: {path}" in proc.stdout, proc.stdout[-3000:]   # normalised, in the user's directory
            assert os.path.isfile(path)


def test_usage_errors_say_what_is_wrong():
    proc = run(["ansible-playbook", "playbooks/migrate.yml", "-e", "svc=nosuch"])
    assert proc.returncode != 0 and "svc=nosuch is not in the service catalog" in proc.stdout, proc.stdout[-2000:]
    proc = run(["ansible-playbook", "playbooks/migrate.yml"])
    assert proc.returncode != 0 and "svc is required" in proc.stdout, proc.stdout[-2000:]
    proc = run(["ansible-playbook", "playbooks/migrate.yml", "-e", "svc=apache", "-e", "target=edge9"])
    assert proc.returncode != 0 and "target=edge9 is not an edge host" in proc.stdout, proc.stdout[-2000:]
    for edge in EDGES:
        docker(edge, "rm", "-f", "tomcat", check=False)
    proc = run(["ansible-playbook", "playbooks/migrate.yml", "-e", "svc=tomcat"])
    assert proc.returncode != 0 and "not running on any edge host" in proc.stdout, proc.stdout[-2000:]


def counter_spec(**extra) -> dict:
    return {"env": {"GREETING": "hello {{ you }} {% raw %}"},
            "ports": [{"container": 8000, "host": 4010, "proto": "tcp"}],
            "address": ADDRESS,
            "health": {"type": "http", "port": 4010, "path": "/health", "timeout": 30},
            **extra}


def count(expect_greeting: bool = True) -> int:
    deadline = time.monotonic() + 30
    while True:
        try:
            status, body = http_get(ADDRESS, 4010, "/")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert status == 200, body
    if expect_greeting:
        assert body.splitlines()[0] == "hello {{ you }} {% raw %}", body   # passed literally
    return int(re.search(r"count=(\d+)", body).group(1))


def remove(svc: str) -> None:
    for edge in EDGES:
        docker(edge, "rm", "-f", svc, check=False)
        subprocess.run(["ip", "-n", edge, "addr", "del", f"{ADDRESS}/32", "dev", "eth0"], capture_output=True,
                       check=False)


def remove_image(*refs: str) -> None:
    """Leave the edges' images as we found them: an image built FROM apache's is a child of it,
    and a child makes apache's image impossible to remove (the fault suite removes it)."""
    for edge in EDGES:
        for ref in refs:
            docker(edge, "rmi", "-f", ref, check=False)


def across_versions(inv: str, svc: str, home: str, n: int) -> int:
    """To edge3 (Docker 26) and back to ``home`` (Docker 20.10): the count goes on from ``n``."""
    for target in ("edge3", home):
        proc = run(["ansible-playbook", "-i", inv, "playbooks/migrate.yml", "-e", f"svc={svc}", "-e", f"target={target}"])
        assert proc.returncode == 0, proc.stdout[-5000:]
        assert running_on(svc) == [target]
        n += 1
        assert count() == n                                       # in-memory state survived
    return n


def image_ids(image: str) -> set:
    return {docker(e, "image", "inspect", "--format", "{{.Id}}", image, check=False).stdout.strip()
            for e in EDGES}


def test_own_service_from_a_dockerfile(tmp_path):
    """README "Your own service": a Dockerfile of the user's, deployed and migrated both ways."""
    shutil.copytree(EXAMPLE, tmp_path / "counter")
    inv = user_inventory(str(tmp_path), {"counter": {"image": "myorg/counter:1", "build": {"context": "../counter"},
                                                     **counter_spec()}})
    remove("counter")
    try:
        proc = run(["ansible-playbook", "-i", inv, "playbooks/deploy.yml", "-e", "svc=counter"])
        assert proc.returncode == 0, proc.stdout[-5000:]
        ids = image_ids("myorg/counter:1")
        assert len(ids) == 1 and "" not in ids, ids               # the same image ID on every edge
        assert [count(), count()] == [1, 2]
        first = running_on("counter")
        for n in (3, 4):
            proc = run(["ansible-playbook", "-i", inv, "playbooks/migrate.yml", "-e", "svc=counter"])
            assert proc.returncode == 0, proc.stdout[-5000:]
            assert running_on("counter") != first if n == 3 else running_on("counter") == first
            assert count() == n                                   # in-memory state survived
        across_versions(inv, "counter", first[0], 4)
        # Built once: a second deploy finds the image by its context digest and builds nothing.
        proc = run(["ansible-playbook", "-i", inv, "playbooks/deploy.yml", "-e", "svc=counter"])
        assert proc.returncode == 0, proc.stdout[-5000:]
        assert "Docker build on" not in proc.stdout, proc.stdout[-3000:]
    finally:
        remove("counter")
        remove_image("myorg/counter:1")


def test_own_service_from_the_registry_pinned_by_digest(tmp_path):
    ref = f"{REGISTRY}/edgemig-test/counter"
    (tmp_path / "ctx").mkdir()
    shutil.copy(os.path.join(EXAMPLE, "counter.pl"), tmp_path / "ctx" / "counter.pl")
    # A build of its own (a label makes its ID unique to this run), pushed, then
    # removed from the edge: every edge has to pull it by digest.
    (tmp_path / "ctx" / "Dockerfile").write_text(
        f"FROM edgemig/apache:bookworm\nLABEL run={time.time_ns()}\nCOPY counter.pl /usr/local/bin/counter.pl\n"
        'CMD ["/usr/bin/perl", "/usr/local/bin/counter.pl"]\n')
    docker("edge1", "build", "-q", "-t", f"{ref}:1", str(tmp_path / "ctx"))
    docker("edge1", "push", f"{ref}:1")
    pinned = docker("edge1", "image", "inspect", "--format", "{{index .RepoDigests 0}}", f"{ref}:1").stdout.strip()
    assert "@sha256:" in pinned, pinned
    want = docker("edge1", "image", "inspect", "--format", "{{.Id}}", f"{ref}:1").stdout.strip()
    docker("edge1", "rmi", f"{ref}:1")
    assert image_ids(pinned) == {""}
    inv = user_inventory(str(tmp_path), {"regcounter": {"image": pinned, **counter_spec()}})
    remove("regcounter")
    try:
        proc = run(["ansible-playbook", "-i", inv, "playbooks/deploy.yml", "-e", "svc=regcounter"])
        assert proc.returncode == 0, proc.stdout[-5000:]
        assert image_ids(pinned) == {want}
        assert count() == 1
        proc = run(["ansible-playbook", "-i", inv, "playbooks/migrate.yml", "-e", "svc=regcounter"])
        assert proc.returncode == 0, proc.stdout[-5000:]
        assert count() == 2
        across_versions(inv, "regcounter", running_on("regcounter")[0], 2)
    finally:
        remove("regcounter")
        remove_image(pinned)


def test_own_service_from_an_archive(tmp_path):
    (tmp_path / "ctx").mkdir()
    shutil.copy(os.path.join(EXAMPLE, "counter.pl"), tmp_path / "ctx" / "counter.pl")
    (tmp_path / "ctx" / "Dockerfile").write_text(
        f"FROM edgemig/apache:bookworm\nLABEL run={time.time_ns()}\nCOPY counter.pl /usr/local/bin/counter.pl\n"
        'CMD ["/usr/bin/perl", "/usr/local/bin/counter.pl"]\n')
    docker("edge1", "build", "-q", "-t", "myorg/archived:1", str(tmp_path / "ctx"))
    want = docker("edge1", "image", "inspect", "--format", "{{.Id}}", "myorg/archived:1").stdout.strip()
    docker("edge1", "save", "-o", str(tmp_path / "archived.tar"), "myorg/archived:1")
    docker("edge1", "rmi", "myorg/archived:1")
    inv = user_inventory(str(tmp_path), {"archived": {"image": "myorg/archived:1", "archive": "../archived.tar",
                                                      **counter_spec()}})
    remove("archived")
    try:
        proc = run(["ansible-playbook", "-i", inv, "playbooks/deploy.yml", "-e", "svc=archived"])
        assert proc.returncode == 0, proc.stdout[-5000:]
        assert image_ids("myorg/archived:1") == {want}
        assert count() == 1
    finally:
        remove("archived")
        remove_image("myorg/archived:1")


@pytest.mark.parametrize("entry, reason", [
    ({"image": "myorg/nowhere:1"}, "is on no host and the catalog says neither where to get it"),
    ({"image": "myorg/nodockerfile:1", "build": {"context": "../empty"}}, "has no Dockerfile"),
    ({"image": "myorg/noarchive:1", "archive": "../missing.tar"}, "is not a file"),
    ({"image": "myorg/both:1", "archive": "../x.tar", "build": {"context": "../empty"}}, "not both"),
])
def test_an_image_that_cannot_be_made_identical_is_refused_before_deploying(tmp_path, entry, reason):
    (tmp_path / "empty").mkdir()
    inv = user_inventory(str(tmp_path), {"broken": {**counter_spec(), **entry}})
    remove("broken")
    proc = run(["ansible-playbook", "-i", inv, "playbooks/deploy.yml", "-e", "svc=broken"])
    assert proc.returncode != 0
    assert "broken" in proc.stdout and reason in proc.stdout, proc.stdout[-3000:]
    assert running_on("broken") == []
