#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: docker_daemon_config
short_description: Merge the keys edgemig needs into Docker's daemon.json, keeping every other key
version_added: 0.1.0
description:
  - Reads O(path) (a missing file is an empty configuration) and sets only the keys of O(settings) whose value
    differs; every other key of the file (C(log-driver), C(registry-mirrors), C(data-root),
    C(default-address-pools), ...) and their order stay as they are, and a file that needs nothing is not rewritten.
  - C(experimental) and C(storage-driver) are compared with what the running daemon reports (C(GET /info)) when the
    file does not name them, so a daemon that has them already (a C(--experimental) flag, overlay2 as Docker's
    default) gets no key; dockerd refuses to start with a directive both as a flag and in the file.
  - Never switches the storage driver of a host that holds images under another driver (the daemon's image count and
    C(<data root>/image/<driver>/imagedb) on disk); it fails, naming the images, and changes nothing.
  - It does not restart Docker; C(changed) (also RV(restart_needed)) tells the caller to, since only keys the daemon
    needs are ever changed. The docker_engine role notifies its restart handler from it.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.file
  - edgemig.migration.docker
options:
  path:
    description: The daemon configuration file.
    type: path
    default: /etc/docker/daemon.json
  settings:
    description: 'The keys the daemon needs and their values, e.g. C({"experimental": true, "storage-driver": "overlay2"}).'
    type: dict
    required: true
notes:
  - A file that is not valid JSON, or not a JSON object, is an error and is left alone.
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: Experimental API on, overlay2, the rest of daemon.json kept
  edgemig.migration.docker_daemon_config:
    settings: {experimental: true, storage-driver: overlay2}
  register: daemon_json
  notify: Restart dockerd
'''

RETURN = r'''
changes:
  description: The keys set, each with C(key), C(before) (the file's value, else the daemon's, null if neither) and C(after).
  returned: always
  type: list
  elements: dict
summary:
  description: The file and the keys changed, each as C(key) C(before -> after).
  returned: changed
  type: str
  sample: '/etc/docker/daemon.json: experimental: (absent) -> true'
restart_needed:
  description: Whether Docker must restart to apply the file (the same as C(changed)).
  returned: always
  type: bool
config:
  description: The configuration the file holds afterwards (in check mode, would hold).
  returned: always
  type: dict
daemon:
  description: C(answered) (whether the daemon answered C(GET /info)), C(error) (why not), C(images_on_disk) (per driver).
  returned: always
  type: dict
'''

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.docker import daemon_config as dc
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.module_common import DOCKER_ARGS, docker_api


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _write(module: AnsibleModule, path: str, text: str, existed: bool) -> None:
    """Atomically: a temp file beside it, then renamed over (keeping an existing file's owner and mode)."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".daemon.json.", dir=os.path.dirname(path) or ".")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    module.atomic_move(tmp, path)
    if not existed:
        module.set_mode_if_different(path, "0644", False)


def main() -> None:
    module = AnsibleModule(argument_spec=dict(path=dict(type="path", default="/etc/docker/daemon.json"),
                                              settings=dict(type="dict", required=True), **DOCKER_ARGS),
                           supports_check_mode=True)
    path = module.params["path"]
    before_text = _read(path)
    try:
        current = dc.parse(before_text, path)
    except dc.ConfigProblem as exc:
        module.fail_json(msg=str(exc))
    daemon = {"answered": False, "error": None}
    running = None
    try:
        running = docker_api(module).info()
        daemon["answered"] = True
    except DockerAPIError as exc:          # not installed, stopped, or refused: decide from the file and disk
        daemon["error"] = str(exc)
    daemon["images_on_disk"] = dc.images_on_disk(dc.data_root(current, running))
    try:
        result = dc.plan(current, module.params["settings"], running, daemon["images_on_disk"], path)
    except dc.ConfigProblem as exc:
        module.fail_json(msg=str(exc), daemon=daemon)
    changed = bool(result["changes"])
    out = dict(changed=changed, changes=result["changes"], restart_needed=changed, config=result["config"],
               daemon=daemon)
    if changed:
        after_text = dc.render(result["config"], like=before_text)
        out["diff"] = {"before": before_text or "", "after": after_text,
                       "before_header": path, "after_header": path}
        out["summary"] = f"{path}: {dc.describe(result['changes'])}"
        out["msg"] = f"{out['summary']}; Docker must restart to apply it"
        if not module.check_mode:
            _write(module, path, after_text, before_text is not None)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
