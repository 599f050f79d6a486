# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pinned receiver: its bundle (exactly what the target runs), its installation, and a stream
through the installed launcher with a ticket (the attacks on it: tests/security)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from receiver_harness import install, launch

from ansible_collections.edgemig.migration.plugins.module_utils import receiver_install
from ansible_collections.edgemig.migration.plugins.module_utils.controller import make_controller
from ansible_collections.edgemig.migration.plugins.module_utils.stream_sender import AckState, StreamSender

# -- the receiver bundle (what is shipped to the target) ---------------------

MU = "ansible_collections.edgemig.migration.plugins.module_utils"
MU_DIR = os.path.dirname(receiver_install.__file__)
# Sender-only code: never shipped to a target.
SENDER_ONLY = {"stream_sender", "tree_reader", "ssh_stream", "controller", "netmon", "checkpoint", "precopy",
               "process_memory", "container_spec", "tcp_reset", "module_common", "host_readiness"}


def imports_of(short: str) -> set[str]:
    with open(os.path.join(MU_DIR, f"{short}.py"), encoding="utf-8") as fh:
        found = receiver_install.module_utils_imports(fh.read(), f"{MU}.{short}")
    return {name.rsplit(".", 1)[1] for name in found}


def test_bundle_holds_exactly_what_the_receiver_imports():
    bundle = json.loads(receiver_install.receiver_bundle())
    shipped = {name.rsplit(".", 1)[1] for name in bundle}
    assert "receiver" in shipped
    for short in shipped:
        missing = imports_of(short) - shipped
        assert not missing, f"{short} imports {missing}, not in the bundle"
    assert not shipped & SENDER_ONLY, f"sender-only code shipped: {shipped & SENDER_ONLY}"
    assert shipped == {"receiver", "stream_receiver", "tree_writer", "warm_store", "protocol", "codecs", "wkdm",
                       "switchover", "tmpfs_restore", "docker_api", "health", "garp", "migration_state",
                       "criu_images",  # CRIU's restore stats (tmpfs_restore.criu_restore_stats)
                       "ticket",  # the target's own word on what a stream may do
                       "options",  # docker_api's TLS options (DockerTLSOptions) and their defaults
                       "timeouts",  # its watchdog and COMMIT wait, sized from the sender's stall timeout
                       "dump_layout",  # which checkpoint files are pages (tmpfs_restore.set_pages_aside)
                       "page_arrays"}  # the page size and NumPy of wkdm and criu_images
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
    found = receiver_install.module_utils_imports(src, f"{MU}.receiver")
    assert found == {f"{MU}.{m}" for m in ("protocol", "wkdm", "garp", "health", "codecs", "docker_api", "netmon")}


def stream_frames(src) -> bytes:
    frames = []
    acks = AckState()
    acks.done.set()  # nobody answers here: do not wait for acks
    StreamSender([("layer", str(src))], make_controller("fixed:lz4:1", 1), frames.append, acks,
                 workers=1).run()
    return b"".join(frames)


def test_install_is_idempotent_and_records_the_dump_dir(tmp_path):
    d = str(tmp_path / "receiver")
    args = (d, sys.executable, [str(tmp_path / "docker")], str(tmp_path / "dumps"))
    assert receiver_install.install_receiver(*args)
    assert not receiver_install.install_receiver(*args)
    with open(os.path.join(d, "receiver.json")) as fh:
        config = json.load(fh)
    assert config == {"version": receiver_install.receiver_version(), "dump_dir": str(tmp_path / "dumps"),
                      "allowed_roots": [str(tmp_path / "docker")]}


def test_pinned_receiver_runs_from_its_installed_sources_alone(tmp_path):
    """The target has no collection and the sender sends no code: the installed receiver does the work,
    writing where the ticket says."""
    inst = install(str(tmp_path / "host"))
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"edgemig" * 1000)
    dest = tmp_path / "host" / "docker" / "upper"
    dest.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_COLLECTIONS_PATH")}
    assert subprocess.run(["python3", "-c", "import ansible_collections.edgemig"], cwd=tmp_path, env=env,
                          capture_output=True, check=False).returncode != 0, "the collection must not be importable here"
    tid = inst.issue({"layer": str(dest)})
    proc = launch(inst, inst.request(tid), stream_frames(src))
    last = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 0 and last.get("ok"), (last, proc.stderr.decode()[-2000:])
    assert (dest / "d" / "f").read_bytes() == b"edgemig" * 1000
    assert not os.path.exists(inst.ticket_path(tid)), "the ticket was used"
