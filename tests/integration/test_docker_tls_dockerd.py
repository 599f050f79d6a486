# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docker_api's ``tcp://`` with TLS against a real ``dockerd --tlsverify`` (issue 24).

A throw-away dockerd (this machine's, the lab's version) in a network and mount namespace of its own,
listening only on that namespace's loopback, with its own data root, exec root and containerd, and
certificates made here (tests/tls_pki.py). The lab's daemons are not touched. The client runs inside
that namespace (nsenter -n) and tries: the right CA and client certificate, another CA, no client
certificate, plain HTTP. The unit tests play the same against a fake TLS daemon
(tests/unit/plugins/module_utils/test_docker_tls.py).
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from collection_path import COLLECTIONS
from stop_process import stop
from tls_pki import CA

pytestmark = pytest.mark.lab
PORT = 2376

CLIENT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.edgemig.migration.plugins.module_utils.docker import docker_api as d
cases = json.loads(sys.argv[2])
out = {}
for name, tls in cases.items():
    try:
        api = d.DockerAPI("tcp://127.0.0.1:%d", timeout=15, tls=d.DockerTLS(**tls))
        out[name] = {"ok": True, "api_version": api.api_version, "version": api.version().get("Version")}
    except (d.DockerAPIError, ValueError) as exc:
        out[name] = {"ok": False, "error": str(exc)}
print(json.dumps(out))
""" % PORT


@pytest.fixture(scope="module")
def dockerd():
    if os.geteuid() != 0 or not shutil.which("dockerd") or not shutil.which("nsenter"):
        pytest.skip("needs root, dockerd and nsenter")
    work = tempfile.mkdtemp(prefix="edgemig-tls-", dir="/tmp")  # short: containerd's socket path lives under it
    ca = CA(pathlib.Path(work), "tls-ca")
    server_cert, server_key = ca.issue("dockerd", ["127.0.0.1"], server=True)
    client_cert, client_key = ca.issue("client", [], server=False)
    other = CA(pathlib.Path(work), "other-ca")
    with open(os.path.join(work, "daemon.json"), "w") as fh:
        fh.write("{}")  # not the host's /etc/docker/daemon.json
    script = (f"ip link set lo up && mkdir -p {work}/exec && mount -t tmpfs edgemig-tls {work}/exec && "
              f"exec dockerd --data-root {work}/root --exec-root {work}/exec/x -p {work}/exec/pid "
              f"--config-file {work}/daemon.json --tlsverify --tlscacert {ca.path} --tlscert {server_cert} "
              f"--tlskey {server_key} -H tcp://127.0.0.1:{PORT} --bridge none --iptables=false --ip-masq=false")
    log = open(os.path.join(work, "dockerd.log"), "w")
    # unshare execs bash, which execs dockerd: proc.pid is dockerd's, in its own namespaces.
    proc = subprocess.Popen(["unshare", "-n", "-m", "--propagation", "private", "bash", "-c", script],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "API listen on 127.0.0.1" not in _read(work, "dockerd.log"):
            assert proc.poll() is None, f"dockerd exited {proc.returncode}:\n{_read(work, 'dockerd.log')[-3000:]}"
            assert time.monotonic() < deadline, f"dockerd did not listen in 90 s:\n{_read(work, 'dockerd.log')[-3000:]}"
            time.sleep(0.3)
        yield {"pid": proc.pid, "ca": ca.path, "other_ca": other.path, "client_cert": client_cert,
               "client_key": client_key}
    finally:
        stop(proc, grace=30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def _read(work: str, name: str) -> str:
    with open(os.path.join(work, name), errors="replace") as fh:
        return fh.read()


def client(dockerd, cases: dict) -> dict:
    proc = subprocess.run(["nsenter", "-t", str(dockerd["pid"]), "-n", sys.executable, "-c", CLIENT, COLLECTIONS,
                           json.dumps(cases)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_real_dockerd_tlsverify(dockerd):
    verified = {"validate_certs": True, "ca_path": dockerd["ca"], "client_cert": dockerd["client_cert"],
                "client_key": dockerd["client_key"]}
    got = client(dockerd, {
        "verified": verified,
        "other_ca": {**verified, "ca_path": dockerd["other_ca"]},
        "no_client_cert": {"validate_certs": True, "ca_path": dockerd["ca"]},
        "plain": {"tcp_without_tls": True},
        "plain_not_asked_for": {},
    })
    assert got["verified"]["ok"] and got["verified"]["api_version"] == "1.41", got["verified"]
    assert got["verified"]["version"].startswith("20.10"), got["verified"]
    assert not got["other_ca"]["ok"] and "did not verify" in got["other_ca"]["error"], got["other_ca"]
    assert not got["no_client_cert"]["ok"] and "set client_cert and client_key" in got["no_client_cert"]["error"]
    assert not got["plain"]["ok"], got["plain"]
    assert "Client sent an HTTP request to an HTTPS server" in got["plain"]["error"], got["plain"]
    assert "speaks TLS: set validate_certs: true" in got["plain"]["error"], got["plain"]
    assert not got["plain_not_asked_for"]["ok"] and "without TLS" in got["plain_not_asked_for"]["error"]
