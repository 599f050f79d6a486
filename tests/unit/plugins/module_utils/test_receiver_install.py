# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pinned receiver: its bundle (exactly what the target runs), its installation, and a stream
through the installed launcher with a ticket (the attacks on it: tests/security)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from receiver_harness import install, launch

from ansible_collections.edgemig.migration.plugins.module_utils.receiver import receiver_install
from ansible_collections.edgemig.migration.plugins.module_utils.sender.controller import make_controller
from ansible_collections.edgemig.migration.plugins.module_utils.sender.stream_sender import AckState, StreamSender

# -- the receiver bundle (what is shipped to the target) ---------------------

MU = receiver_install.PKG
MU_DIR = os.path.dirname(os.path.dirname(receiver_install.__file__))
# Sender-only code: never shipped to a target.
SENDER_ONLY = {"docker.checkpoint", "docker.container_spec", "docker.tcp_reset", "docker.module_common",
               "docker.host_readiness"}


def path_of(name: str) -> str:
    """The file of a module_utils module or package (its ``__init__.py``)."""
    path = os.path.join(MU_DIR, *name[len(MU) + 1:].split("."))
    return os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"


def imports_of(name: str) -> set[str]:
    with open(path_of(name), encoding="utf-8") as fh:
        found = receiver_install.module_utils_imports(fh.read(), name)
    return {n[len(MU) + 1:] for n in found}


def test_bundle_holds_exactly_what_the_receiver_imports():
    bundle = json.loads(receiver_install.receiver_bundle())
    shipped = {name[len(MU) + 1:] for name in bundle}
    assert "receiver.receiver" in shipped
    for short in shipped:
        missing = imports_of(f"{MU}.{short}") - shipped
        assert not missing, f"{short} imports {missing}, not in the bundle"
        assert {p[len(MU) + 1:] for p in receiver_install.packages_of(f"{MU}.{short}")} <= shipped, short
    assert not shipped & SENDER_ONLY, f"sender-only code shipped: {shipped & SENDER_ONLY}"
    assert not {name for name in shipped if name.split(".")[0] in ("sender", "driver")}, sorted(shipped)
    assert shipped == {"receiver", "receiver.receiver", "receiver.stream_receiver", "receiver.tree_writer",
                       "receiver.warm_store",
                       "receiver.ticket",  # the target's own word on what a stream may do
                       "wire", "wire.protocol", "wire.codecs", "wire.wkdm",
                       "wire.criu_images",  # CRIU's restore stats (tmpfs_restore.criu_restore_stats)
                       "wire.dump_layout",  # which checkpoint files are pages (tmpfs_restore.set_pages_aside)
                       "wire.page_arrays",  # the page size and NumPy of wkdm and criu_images
                       "docker", "docker.switchover", "docker.tmpfs_restore", "docker.docker_api", "docker.health",
                       "docker.garp",
                       "common", "common.migration_state",
                       "common.proc_stat",  # migration_state's parked note: its owner's start time
                       "common.options",  # docker_api's TLS options (DockerTLSOptions) and their defaults
                       "common.timeouts"}  # its watchdog and COMMIT wait, sized from the sender's stall timeout
    for name, src in bundle.items():
        with open(path_of(name), encoding="utf-8") as fh:
            assert src == fh.read()


def test_import_forms_are_understood():
    src = ("from ansible_collections.edgemig.migration.plugins.module_utils.wire.protocol import X\n"
           "from ansible_collections.edgemig.migration.plugins.module_utils.wire import wkdm as w\n"
           "import ansible_collections.edgemig.migration.plugins.module_utils.docker.garp\n"
           "from ..docker.health import y\n"
           "from .stream_receiver import z\n"
           "from . import ticket\n"
           "def f():\n    from ansible_collections.edgemig.migration.plugins.module_utils.sender.netmon import n\n"
           "import os\nfrom ansible.module_utils.basic import AnsibleModule\n")
    found = receiver_install.module_utils_imports(src, f"{MU}.receiver.receiver")
    # ``from P import m`` names the package P as well (a member of its __init__ is imported that way).
    assert found == {f"{MU}.{m}" for m in ("wire.protocol", "wire", "wire.wkdm", "docker.garp", "docker.health",
                                           "receiver.stream_receiver", "receiver", "receiver.ticket",
                                           "sender.netmon")}


def test_bundle_runs_on_its_own_in_a_clean_interpreter(tmp_path):
    """Installed apart from the checkout, the launcher's importer alone loads every module and
    package of the bundle (packages as packages, from their shipped __init__), and the launcher
    runs the receiver's own request check."""
    d = tmp_path / "receiver"
    receiver_install.install_receiver(str(d), sys.executable, [str(tmp_path / "docker")], str(tmp_path / "dumps"))
    launcher = d / receiver_install.LAUNCHER_NAME
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_COLLECTIONS_PATH")}
    head, entry = launcher.read_text().split("from ansible_collections", 1)
    assert "receiver.receiver import launch" in entry
    probe = d / "probe.py"  # the launcher's importer, then every bundled name imported through it
    checkout = (os.path.realpath(MU_DIR).split("/plugins/")[0], MU_DIR.split("/ansible_collections/")[0])
    probe.write_text(head + f"checkout = {checkout!r}\n" + textwrap.dedent("""
        import importlib
        assert not [p for p in sys.path if p.startswith(checkout)], sys.path
        for name in sorted(bundle):
            mod = importlib.import_module(name)
            assert isinstance(mod.__spec__.loader, _Edgemig), name
            packaged = any(k.startswith(name + ".") for k in bundle)
            assert hasattr(mod, "__path__") == packaged, name
        from ansible_collections.edgemig.migration.plugins.module_utils.receiver import receiver
        print(json.dumps(receiver.parse_request(["--expect-version", "0" * 16, "--ticket", "0" * 32])))
        """))
    out = subprocess.run([sys.executable, "-I", str(probe)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1])["ticket"] == "0" * 32
    # The launcher itself, as sshd runs it: the receiver (in its package) parses and refuses a stale version.
    env["SSH_ORIGINAL_COMMAND"] = f"{launcher} --expect-version 0000000000000000 --ticket {'0' * 32}"
    out = subprocess.run([str(launcher)], cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
                         timeout=60)
    assert "the sender's is 0000000000000000" in json.loads(out.stdout.splitlines()[-1])["error"], out


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
