# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/tasks/cpu_check.yml, through a real ansible-playbook run: a target whose CPU lacks an
instruction set of the source's is refused before the freeze (the lab's two edges share one CPU,
so the refusal can only be shown here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def run_check(tmp_path, src: dict, dst: dict) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.include_tasks: {ROOT}/playbooks/tasks/cpu_check.yml\n")
    extra = json.dumps({"_cpu_src": src, "_cpu_dst": dst, "_source": "edge1", "_target": "edge2"})
    env = {**os.environ, "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
    return subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
                           "-e", extra], capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.parametrize("src, dst, refused", [
    ({"arch": "x86", "isa": ["avx", "avx2", "sse2"]}, {"arch": "x86", "isa": ["avx", "sse2"]}, "avx2"),
    ({"arch": "x86", "isa": ["avx", "sse2"]}, {"arch": "x86", "isa": ["avx", "avx2", "sse2"]}, None),
    ({"arch": "x86", "isa": ["avx"]}, {"arch": "unknown", "isa": []}, None),   # unknown: not compared
    ({}, {}, None),                                                         # an older host_info: no cpu
])
def test_cpu_check(tmp_path, src, dst, refused):
    proc = run_check(tmp_path, src, dst)
    if refused:
        assert proc.returncode != 0 and f"edge2's CPU lacks {refused}, which edge1's has" in proc.stdout, proc.stdout
        assert "nothing was frozen" in proc.stdout
    else:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
