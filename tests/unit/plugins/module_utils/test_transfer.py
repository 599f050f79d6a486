# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Sender and receiver together through send_local, and the receiver bundle."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from stream_fixtures import make_tree, snapshot

from ansible_collections.edgemig.migration.plugins.module_utils import protocol as P, transfer
from ansible_collections.edgemig.migration.plugins.module_utils.controller import make_controller
from ansible_collections.edgemig.migration.plugins.module_utils.stream_sender import AckState, StreamSender
from ansible_collections.edgemig.migration.plugins.module_utils.transfer import send_local


@pytest.mark.parametrize("policy", ["fixed:none:0", "fixed:lz4:1", "fixed:lz4:9", "fixed:zstd:3", "model", "paper"])
@pytest.mark.parametrize("pipelined", [True, False])
def test_round_trip(tmp_path, policy, pipelined):
    ck, layer, pages = make_tree(tmp_path)
    d_ck, d_layer = tmp_path / "dck", tmp_path / "dlayer"
    d_ck.mkdir()
    d_layer.mkdir()
    res = send_local([("checkpoint", str(ck)), ("layer", str(layer))],
                     {"checkpoint": str(d_ck), "layer": str(d_layer)}, policy=policy,
                     chunk_size=64 * 1024, pipelined=pipelined)
    assert res["receiver"]["ok"]
    assert snapshot(ck) == snapshot(d_ck)
    assert snapshot(layer) == snapshot(d_layer)
    # Every file's bytes once; a second name of a file (layer/hard) travels as a hard link.
    assert res["bytes_raw"] == sum(len(e.get("data", b"")) for e in snapshot(ck).values()) + \
        sum(len(e.get("data", b"")) for e in snapshot(layer).values()) - os.path.getsize(layer / "hard")
    assert os.stat(d_layer / "hard").st_ino == os.stat(d_layer / "etc" / "deep" / "f.txt").st_ino
    assert res["zero_pages"] > 0 and res["dup_pages"] > 0
    if policy != "fixed:none:0":
        assert res["bytes_wire"] < res["bytes_raw"] * 0.5


def test_dedup_off_still_round_trips(tmp_path):
    ck, layer, pages = make_tree(tmp_path)
    d = tmp_path / "d"
    d.mkdir()
    res = send_local([("checkpoint", str(ck))], {"checkpoint": str(d)}, policy="fixed:none:0", dedup=False)
    assert (d / "pages-1.img").read_bytes() == pages
    assert res["dup_pages"] == 0


def test_corrupted_chunk_is_detected(tmp_path):
    ck, layer, pages = make_tree(tmp_path)
    d = tmp_path / "d"
    d.mkdir()

    def flip(ch):
        data = bytearray(ch["data"])
        data[len(data) // 2] ^= 0x01
        ch["data"] = bytes(data)
    with pytest.raises(P.ProtocolError, match="checksum|decompress|receiver failed"):
        send_local([("checkpoint", str(ck))], {"checkpoint": str(d)}, policy="fixed:none:0",
                   corrupt_hook=flip)


def test_unix_sockets_are_skipped(tmp_path):
    import socket
    layer = tmp_path / "layer"
    (layer / "run").mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(layer / "run" / "mysqld.sock"))
    (layer / "run" / "pid").write_text("1")
    dest = tmp_path / "dest"
    dest.mkdir()
    try:
        res = send_local([("layer", str(layer))], {"layer": str(dest)}, policy="fixed:none:0")
    finally:
        sock.close()
    assert res["receiver"]["ok"]
    assert (dest / "run" / "pid").read_text() == "1"
    assert not (dest / "run" / "mysqld.sock").exists()


@pytest.mark.parametrize("policy", ["fixed:none:0", "model"])
def test_round_trip_with_tight_in_flight_limit(tmp_path, policy):
    """The sender waits for acks once 64 KiB are in flight: no deadlock, same bytes."""
    ck, layer, pages = make_tree(tmp_path)
    d = tmp_path / "d"
    d.mkdir()
    res = send_local([("checkpoint", str(ck))], {"checkpoint": str(d)}, policy=policy,
                     chunk_size=16 * 1024, min_inflight=64 * 1024)
    assert res["receiver"]["ok"]
    assert (d / "pages-1.img").read_bytes() == pages


# -- the receiver bundle (what is shipped to the target) ---------------------

MU = "ansible_collections.edgemig.migration.plugins.module_utils"
MU_DIR = os.path.dirname(transfer.__file__)
# Sender-only code: never shipped to a target.
SENDER_ONLY = {"stream_sender", "tree_reader", "transfer", "controller", "netmon", "checkpoint", "precopy",
               "process_memory", "container_spec", "tcp_reset", "module_common", "host_readiness", "dump_layout"}


def imports_of(short: str) -> set[str]:
    with open(os.path.join(MU_DIR, f"{short}.py"), encoding="utf-8") as fh:
        found = transfer.module_utils_imports(fh.read(), f"{MU}.{short}")
    return {name.rsplit(".", 1)[1] for name in found}


def test_bundle_holds_exactly_what_the_receiver_imports():
    bundle = json.loads(transfer.receiver_bundle())
    shipped = {name.rsplit(".", 1)[1] for name in bundle}
    assert "receiver" in shipped
    for short in shipped:
        missing = imports_of(short) - shipped
        assert not missing, f"{short} imports {missing}, not in the bundle"
    assert not shipped & SENDER_ONLY, f"sender-only code shipped: {shipped & SENDER_ONLY}"
    assert shipped == {"receiver", "stream_receiver", "tree_writer", "warm_store", "protocol", "codecs", "wkdm",
                       "switchover", "tmpfs_restore", "docker_api", "health", "garp", "migration_state",
                       "criu_images"}  # CRIU's restore stats (tmpfs_restore.criu_restore_stats)
    for name, src in bundle.items():
        with open(os.path.join(MU_DIR, name.rsplit(".", 1)[1] + ".py"), encoding="utf-8") as fh:
            assert src == fh.read()


def test_import_forms_are_understood():
    src = ("from ansible_collections.edgemig.migration.plugins.module_utils.protocol import X\n"
           "from ansible_collections.edgemig.migration.plugins.module_utils import wkdm as w\n"
           "import ansible_collections.edgemig.migration.plugins.module_utils.garp\n"
           "from ..module_utils.health import y\n"
           "from .codecs import z\n"
           "from . import docker_api\n"
           "def f():\n    from ansible_collections.edgemig.migration.plugins.module_utils.netmon import n\n"
           "import os\nfrom ansible.module_utils.basic import AnsibleModule\n")
    found = transfer.module_utils_imports(src, f"{MU}.receiver")
    assert found == {f"{MU}.{m}" for m in ("protocol", "wkdm", "garp", "health", "codecs", "docker_api", "netmon")}


def stream_frames(src) -> bytes:
    frames = []
    acks = AckState()
    acks.done.set()  # nobody answers here: do not wait for acks
    StreamSender([("layer", str(src))], make_controller("fixed:lz4:1", 1), frames.append, acks,
                 workers=1).run()
    return b"".join(frames)


def launch(tmp_path, installed, original_command: str | None, stdin: bytes = b"", argv: list[str] = ()):
    """Run the installed launcher as sshd runs a forced command: SSH_ORIGINAL_COMMAND set, no collection."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_COLLECTIONS_PATH")}
    if original_command is not None:
        env["SSH_ORIGINAL_COMMAND"] = original_command
    return subprocess.run([os.path.join(installed, transfer.LAUNCHER_NAME), *argv], input=stdin, cwd=tmp_path,
                          env=env, capture_output=True, timeout=60, check=False)


@pytest.fixture
def installed(tmp_path):
    d = tmp_path / "receiver"
    (tmp_path / "allowed").mkdir()
    assert transfer.install_receiver(str(d), sys.executable, [str(tmp_path / "allowed")])
    assert not transfer.install_receiver(str(d), sys.executable, [str(tmp_path / "allowed")])  # idempotent
    return str(d)


def test_pinned_receiver_runs_from_its_installed_sources_alone(tmp_path, installed):
    """The target has no collection and the sender sends no code: the installed receiver does the work."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"edgemig" * 1000)
    dest = tmp_path / "allowed" / "dest"
    dest.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_COLLECTIONS_PATH")}
    assert subprocess.run(["python3", "-c", "import ansible_collections.edgemig"], cwd=tmp_path, env=env,
                          capture_output=True, check=False).returncode != 0, "the collection must not be importable here"
    cmd = transfer.receiver_command(os.path.join(installed, transfer.LAUNCHER_NAME), {"layer": str(dest)})
    proc = launch(tmp_path, installed, cmd, stream_frames(src))
    last = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 0 and last.get("ok"), (last, proc.stderr.decode()[-2000:])
    assert (dest / "d" / "f").read_bytes() == b"edgemig" * 1000


@pytest.mark.parametrize("command, why", [
    ("id", "this key only starts the edgemig receiver"),
    ("python3 -c 'import os; os.system(\"id\")'", "this key only starts the edgemig receiver"),
    ("/usr/local/lib/edgemig/receiver/edgemig-receiver --expect-version 0000 --root layer=/tmp", "version"),
])
def test_the_launcher_refuses_anything_but_the_receiver(tmp_path, installed, command, why):
    proc = launch(tmp_path, installed, command)
    assert proc.returncode == 3, proc
    assert why in json.loads(proc.stdout.splitlines()[-1])["error"]


def test_the_launcher_refuses_a_root_outside_the_allowed_dirs(tmp_path, installed):
    cmd = transfer.receiver_command("edgemig-receiver", {"layer": "/root/.ssh"})
    proc = launch(tmp_path, installed, cmd)
    assert proc.returncode == 3
    assert "outside the directories this receiver may write" in json.loads(proc.stdout)["error"]
    # A symlink inside an allowed dir does not lead out of it either.
    os.symlink("/root", tmp_path / "allowed" / "escape")
    escape = transfer.receiver_command("edgemig-receiver", {"layer": str(tmp_path / "allowed" / "escape")})
    proc = launch(tmp_path, installed, escape)
    assert proc.returncode == 3 and "outside" in proc.stdout.decode()


def test_receiver_options_are_all_the_launcher_accepts(tmp_path, installed):
    """Options the receiver does not know end in its argument parser, never in code."""
    cmd = transfer.receiver_command("edgemig-receiver", {"layer": str(tmp_path / "allowed")}) + " --exec id"
    proc = launch(tmp_path, installed, cmd)
    assert proc.returncode == 2 and b"unrecognized arguments: --exec id" in proc.stderr
