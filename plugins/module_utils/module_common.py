# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every edgemig module that talks to Docker shares: the docker_host option."""
from __future__ import annotations

import os

from ansible_collections.edgemig.migration.plugins.module_utils.docker_api import DEFAULT_DOCKER_HOST, DockerAPI

DOCKER_ARGS = {"docker_host": {"type": "str", "aliases": ["docker_url"]}}


def docker_api(module) -> DockerAPI:
    url = module.params.get("docker_host") or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    try:
        return DockerAPI(url)
    except ValueError as exc:
        module.fail_json(msg=f"docker_host: {exc}")
