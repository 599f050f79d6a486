# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""edgemig's checkpoint and restore on Docker 26 / containerd 1.7 (lab/docker26.sh up; root).

Not under tests/integration on purpose: that suite holds the two-edge lab's lock for
the whole session, and this daemon is not the lab's. Skipped when the daemon is down.

    lab/docker26.sh up && python3 -m pytest -q -m docker26 tests/docker26
"""
from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.docker26


def _bench():
    spec = importlib.util.spec_from_file_location("docker26_restore", os.path.join(ROOT, "bench", "docker26_restore.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def d26():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    bench = _bench()
    try:
        env = bench.d26_env()
    except Exception as exc:  # noqa: BLE001 - any failure to ask means: not here
        pytest.skip(f"lab/docker26.sh env: {exc}")
    api = bench.DockerAPI(env["DOCKER_HOST"])
    try:
        version = api.version()
    except bench.DockerAPIError:
        pytest.skip("the Docker 26 daemon is not up (lab/docker26.sh up)")
    if api.inspect_image(bench.IMAGE) is None:
        pytest.skip(f"no {bench.IMAGE} (lab/docker26.sh image)")
    os.environ["PATH"] = os.path.dirname(env["D26_CTR"]) + os.pathsep + os.environ.get("PATH", "")
    dump_root = "/run/edgemig-d26/pytest"
    os.makedirs(dump_root, exist_ok=True)
    yield bench, api, env, dump_root, version
    api.remove_container(bench.NAME)
    os.rmdir(dump_root)


def test_the_daemon_is_docker_26_and_takes_our_api_version(d26):
    _bench, api, _env, _dump, version = d26
    assert version["Version"].startswith("26.") and version["ApiVersion"] == "1.45"
    assert tuple(map(int, version["MinAPIVersion"].split("."))) <= (1, 41)  # docker_api pins /v1.41
    assert api.info()["ExperimentalBuild"] is True


@pytest.mark.parametrize("method", ["ctr-tmpfs", "docker-tmpfs", "docker-tmpfs-nolinks"])
def test_checkpoint_and_restore_keep_the_process_state(d26, method):
    # ctr-tmpfs: edgemig's path (containerd dump with an image path, tmpfs restore).
    # docker-tmpfs*: the fallback dump, restored at once on the same daemon (a rollback): with
    # the pages left in place only the restore nonce keeps containerd from refusing the tar.
    bench, api, env, dump_root, _version = d26
    for _attempt in range(3):
        row = bench.run_once(api, method, dump_root, env["D26_DATA_ROOT"], 0)
        assert row["ok"], row
