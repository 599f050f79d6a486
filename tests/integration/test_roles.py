# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Provisioning roles run against localhost: argument specs, and the criu role's repair path.

These need no lab. The criu test installs the private CRIU build into a
scratch prefix (root, and the .deb cache or deb.debian.org on the controller).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env(path: str | None = None) -> dict:
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = os.path.join(ROOT, ".cache", "collections")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.default"
    env["ANSIBLE_CONFIG"] = os.path.join(ROOT, "ansible.cfg")
    if path is not None:
        env["PATH"] = path
    return env


def run_role(tmp_path, role: str, *extra: str, path: str | None = None) -> subprocess.CompletedProcess:
    play = tmp_path / f"{role}.yml"
    play.write_text(textwrap.dedent(f"""\
        - hosts: all
          gather_facts: false
          roles:
            - edgemig.migration.{role}
        """))
    cmd = [shutil.which("ansible-playbook") or "ansible-playbook", "-i", "localhost,", "-c", "local",
           "-e", f"ansible_python_interpreter={sys.executable}", str(play), *extra]
    return subprocess.run(cmd, cwd=ROOT, env=_env(path), capture_output=True, text=True, timeout=900, check=False)


def changed(output: str) -> int:
    return sum(int(n) for n in re.findall(r"changed=(\d+)", output.split("PLAY RECAP")[-1]))


# -- argument specs: a bad variable fails before any task runs ----------------

@pytest.mark.parametrize("role, var, value, message", [
    ("dump_tmpfs", "dump_tmpfs_max_age_hours", "banana",
     "argument 'dump_tmpfs_max_age_hours' is of type"),
    ("dump_tmpfs", "dump_tmpfs_persist", "maybe",
     "argument 'dump_tmpfs_persist' is of type"),
    ("docker_engine", "docker_engine_storage_driver", "btrfs",
     "value of docker_engine_storage_driver must be one of: overlay2, got: btrfs"),
    ("criu", "criu_runc_options", '{"tcp-close": 1}',
     "argument 'criu_runc_options' is of type"),
    ("migration_trust", "migration_trust_key_type", "dsa",
     "value of migration_trust_key_type must be one of: ed25519, ecdsa, rsa, got: dsa"),
])
def test_argument_spec_rejects_bad_variable(tmp_path, role, var, value, message):
    proc = run_role(tmp_path, role, "-e", f'{{"{var}": {value if value.startswith("{") else repr(value)}}}'
                    .replace("'", '"'))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Validating arguments against arg spec" in out
    assert message in " ".join(out.split()), out
    assert changed(out) == 0


def test_dump_tmpfs_rejects_bad_size_before_mounting(tmp_path):
    target = tmp_path / "dumps"
    proc = run_role(tmp_path, "dump_tmpfs", "-e", "dump_tmpfs_size=banana", "-e", f"dump_tmpfs_path={target}",
                    "-e", "dump_tmpfs_persist=false")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "dump_tmpfs_size=banana must be a number with an optional" in out, out
    assert not target.exists()


# -- criu: a CRIU that fails `criu check` is replaced --------------------------

FAKE_CRIU = """#!/bin/sh
# Stands in for Debian 12's criu 3.17, which fails `criu check` on kernel 6.18.
case "$1" in
  --version) echo "Version: 3.17.1" ;;
  check) echo "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds" >&2
         echo "Error (criu/crtools.c:260): Could not initialize kernel features detection." >&2
         exit 1 ;;
  *) exit 1 ;;
esac
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the criu role installs as root")
def test_criu_role_replaces_a_criu_that_fails_check(tmp_path):
    fake_dir, wrapper_dir = tmp_path / "fake", tmp_path / "bin"
    fake_dir.mkdir()
    wrapper_dir.mkdir()
    fake = fake_dir / "criu"
    fake.write_text(FAKE_CRIU)
    fake.chmod(0o755)
    # The wrapper directory comes first on PATH (like /usr/local/sbin before /usr/sbin).
    path = os.pathsep.join([str(wrapper_dir), str(fake_dir), os.path.dirname(sys.executable),
                            os.path.dirname(shutil.which("ansible-playbook") or "/usr/bin/x"),
                            "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    args = ["-e", f"criu_prefix={tmp_path / 'prefix'}", "-e", f"criu_wrapper_path={wrapper_dir / 'criu'}",
            "-e", f"criu_runc_conf_path={tmp_path / 'criu' / 'runc.conf'}"]
    assert subprocess.run([str(fake), "check"], capture_output=True, check=False).returncode == 1

    first = run_role(tmp_path, "criu", *args, path=path)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-5000:]
    flat = " ".join(out.split())  # the YAML callback folds long messages
    assert f"criu on PATH: {fake} (version 3.17.1, criu check FAILS)" in flat
    assert re.search(r"criu 4\.[2-9][0-9.]* at " + re.escape(str(wrapper_dir / "criu")) + ": criu check passes", flat)
    assert changed(out) > 0

    check = subprocess.run([str(wrapper_dir / "criu"), "check"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (tmp_path / "criu" / "runc.conf").read_text().splitlines()[-4:] == [
        "tcp-close", "skip-in-flight", "file-locks", "network-lock skip"]

    second = run_role(tmp_path, "criu", *args, path=path)
    assert second.returncode == 0, second.stdout[-5000:]
    assert changed(second.stdout) == 0, second.stdout[-5000:]
