# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The migration's options and their defaults: declared once, here.

``edge_migrate``'s argument spec is built from ``MigrationOptions`` (``argument_spec``), the
playbooks pass ``omit`` for what the user did not set, and the prepare stage on the target
takes its stall timeout from the same field; so a default changes in one place. The module's
DOCUMENTATION repeats the defaults for ansible-doc; ansible-test's validate-modules and
tests/unit/plugins/module_utils/test_options.py hold them equal.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

# The target's and the source's dump tmpfs unless the inventory says (edgemig_dump_dir).
DEFAULT_DUMP_DIR = "/var/lib/edgemig/dumps"


@dataclass(frozen=True)
class MigrationOptions:
    """How a migration runs (migrate.yml's ``edgemig_*`` variables, edge_migrate's options)."""
    policy: str = "model"            # compression: model | paper | fixed:<codec>:<level>
    pipelined: bool = True           # overlap read, compress, send (false: the paper's serial baseline)
    dedup: bool = True               # zero and repeated pages as references
    stall_timeout: int = 30          # s without progress before the stream is given up
    precopy: bool = True             # warm rounds while the service runs (false: stop-and-copy)
    downtime_target: float = 1.0     # s: warm rounds until the final round is predicted to fit
    precopy_max_rounds: int = 5      # warm rounds at most
    # The part of the link this migration may assume when it starts: its controller's first link estimate
    # (the probe's) is scaled by it. evacuate.yml sets 1 / the moves sharing the source link then.
    link_share: float = 1.0


@dataclass(frozen=True)
class DockerTLSOptions:
    """How a module reaches a ``tcp://`` docker_host (community.docker's names; docker_api.DockerTLS
    says what each does). Every module taking docker_host takes these (module_common.DOCKER_ARGS)."""
    tls: bool = False                 # TLS without checking the daemon's certificate
    validate_certs: bool = False      # TLS, the daemon's certificate checked (dockerd --tlsverify)
    ca_path: str | None = None        # the CA that signed the daemon's certificate
    client_cert: str | None = None    # the client's certificate and key (--tlsverify daemons ask for one)
    client_key: str | None = None
    tls_hostname: str | None = None   # the name the daemon's certificate must carry (default: docker_host's host)
    tcp_without_tls: bool = False     # plain HTTP to tcp://, refused unless true: that port is root on the host


# The DockerTLSOptions that name files (the modules take them as paths; a ticket holds them absolute).
TLS_FILES = ("ca_path", "client_cert", "client_key")


def argument_spec(cls=MigrationOptions) -> dict:
    """The Ansible argument spec of ``cls``'s fields, each with its one default. (The annotations are
    strings under ``from __future__ import annotations``; str, bool, int and float are also Ansible's
    names for those types; ``str | None`` is an optional str.)"""
    return {f.name: {"type": f.type.split(" | ")[0], "default": f.default} for f in fields(cls)}


def from_params(params: dict, cls=MigrationOptions) -> MigrationOptions:
    """The options a module run got (every field is in its params: the spec gives defaults)."""
    return cls(**{f.name: params[f.name] for f in fields(cls)})
