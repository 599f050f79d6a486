# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The real receiver as a target runs it, for tests: installed by receiver_install into a
directory, started as sshd starts a forced command (SSH_ORIGINAL_COMMAND, no collection on
the path), with tickets issued as the target's prepare issues them."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from ansible_collections.edgemig.migration.plugins.module_utils.receiver import receiver_install, ticket
from ansible_collections.edgemig.migration.plugins.module_utils.sender.ssh_stream import receiver_request


@dataclass
class Installed:
    dir: str          # the receiver (launcher, bundle, receiver.json)
    dump_dir: str     # this "host"'s dump tmpfs: tickets, checkpoints, warm pages
    allowed: list     # receiver.json's allowed_roots

    @property
    def launcher(self) -> str:
        return os.path.join(self.dir, receiver_install.LAUNCHER_NAME)

    def issue(self, roots: dict, **kw) -> str:
        return ticket.issue(self.dump_dir, roots=roots, **kw)

    def request(self, ticket_id: str, commit: bool = False) -> str:
        return receiver_request(self.launcher, ticket_id, commit)

    def ticket_path(self, ticket_id: str, suffix: str = ".json") -> str:
        return os.path.join(ticket.ticket_dir(self.dump_dir), ticket_id + suffix)


def install(base: str, allowed: list[str] | None = None, dump_dir: str | None = None) -> Installed:
    """Install the receiver under ``base``; by default it may write under ``base/docker`` and ``base/dumps``."""
    dump_dir = dump_dir or os.path.join(base, "dumps")
    allowed = allowed or [os.path.join(base, "docker"), dump_dir]
    for path in allowed + [dump_dir]:
        os.makedirs(path, exist_ok=True)
    inst = Installed(os.path.join(base, "receiver"), dump_dir, allowed)
    receiver_install.install_receiver(inst.dir, sys.executable, allowed, dump_dir)
    return inst


def clean_env(extra: dict | None = None) -> dict:
    """The environment of a forced command: the collection is not importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_COLLECTIONS_PATH")}
    env.update(extra or {})
    return env


def launch(inst: Installed, original_command, stdin: bytes = b"", argv: list[str] = (), env: dict | None = None,
           cwd: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the launcher as sshd runs it for a sender's request (``original_command``, str or bytes)."""
    environ = clean_env(env)
    environ = {k.encode() if isinstance(k, str) else k: v.encode() if isinstance(v, str) else v
               for k, v in environ.items()}
    if original_command is not None:
        environ[b"SSH_ORIGINAL_COMMAND"] = (original_command.encode() if isinstance(original_command, str)
                                            else original_command)
    return subprocess.run([inst.launcher, *argv], input=stdin, cwd=cwd or os.path.dirname(inst.dir),
                          env=environ, capture_output=True, timeout=timeout, check=False)


def popen(inst: Installed, original_command: str, cwd: str | None = None) -> subprocess.Popen:
    environ = clean_env({"SSH_ORIGINAL_COMMAND": original_command})
    return subprocess.Popen([inst.launcher], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=cwd or os.path.dirname(inst.dir), env=environ)
