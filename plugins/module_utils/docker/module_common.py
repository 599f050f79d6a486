# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every edgemig module that talks to Docker shares: the docker_host option, and the
checks of options that must be refused before anything is frozen."""
from __future__ import annotations

import ipaddress
import os

from ansible.module_utils.basic import env_fallback

from ansible_collections.edgemig.migration.plugins.module_utils.common.options import (
    TLS_FILES,
    DockerTLSOptions,
    argument_spec,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import (
    DEFAULT_DOCKER_HOST,
    DockerAPI,
    DockerTLS,
    tls_from_cert_path,
)

# The TLS options' aliases and environment as community.docker names them (the docker CLI's variables,
# read on the managed host); their defaults are options.DockerTLSOptions'.
_TLS_ALIASES = {"validate_certs": ["tls_verify"], "ca_path": ["ca_cert", "tls_ca_cert", "cacert_path"],
                "client_cert": ["tls_client_cert", "cert_path"], "client_key": ["tls_client_key", "key_path"]}
_TLS_ENV = {"tls": "DOCKER_TLS", "validate_certs": "DOCKER_TLS_VERIFY", "tls_hostname": "DOCKER_TLS_HOSTNAME"}


def _docker_args() -> dict:
    args = {"docker_host": {"type": "str", "aliases": ["docker_url"]}}
    for name, spec in argument_spec(DockerTLSOptions).items():
        if name in _TLS_ALIASES:
            spec["aliases"] = _TLS_ALIASES[name]
        if name in _TLS_ENV:
            spec["fallback"] = (env_fallback, [_TLS_ENV[name]])
        if name in TLS_FILES:
            spec["type"] = "path"
        args[name] = spec
    return args


DOCKER_ARGS = _docker_args()


def docker_api(module) -> DockerAPI:
    """The module's Docker client: docker_host (else DOCKER_HOST, else the local socket) and its TLS
    options, certificate files not named taken from DOCKER_CERT_PATH as the docker CLI does."""
    p = module.params
    url = p.get("docker_host") or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    tls = DockerTLS.from_dict(p)
    if tls.enabled:
        tls = tls_from_cert_path(os.environ.get("DOCKER_CERT_PATH"), tls)
    try:
        return DockerAPI(url, tls=tls)
    except ValueError as exc:
        module.fail_json(msg=f"docker_host: {exc}")


def ipv4_problem(value: str) -> str | None:
    """Why ``value`` can not be a service address (None when it can).

    The address move (``ip addr``, /32) and the gratuitous ARP (garp.py) are
    IPv4 only for now.
    """
    try:
        addr = ipaddress.ip_address(str(value).strip())
    except ValueError:
        return "is not an IP address (give a plain IPv4 address such as 10.213.0.101, no prefix)"
    if addr.version != 4:
        return ("is an IPv6 address: the address move and gratuitous ARP are IPv4 only for now "
                "(give the service an IPv4 address)")
    return None
