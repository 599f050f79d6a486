# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every edgemig module that talks to Docker shares: the docker_host option, and the
checks of options that must be refused before anything is frozen."""
from __future__ import annotations

import ipaddress
import os

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DEFAULT_DOCKER_HOST, DockerAPI

DOCKER_ARGS = {"docker_host": {"type": "str", "aliases": ["docker_url"]}}


def docker_api(module) -> DockerAPI:
    url = module.params.get("docker_host") or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    try:
        return DockerAPI(url)
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
