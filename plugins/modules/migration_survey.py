#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: migration_survey
short_description: All one edge host knows and can do for a migration of one service, in one module run
version_added: 0.1.0
description:
  - What C(playbooks/migrate.yml) needs from each edge host before it decides anything, read in one run per
    edge (its first play runs it on every edge at once), so that the cold path costs one module run, not one per
    question and edge.
  - RV(facts) - what the recovery decides from (M(edgemig.migration.migration_recover) with
    O(edgemig.migration.migration_recover#module:mode=inspect)) - the migration record, the held record, the
    container, a kept checkpoint, the service address.
  - RV(container) and RV(config) - where the service runs and the create body that reproduces it
    (as M(edgemig.migration.edge_container_info) returns them).
  - RV(host) - whether this host can checkpoint and restore (as M(edgemig.migration.migration_host_info) returns
    it, with its defaults) and its CPU's instruction sets.
  - RV(service) - when the container runs here, the check of its processes for what CRIU cannot checkpoint, with
    the refusal message (null when nothing refuses).
  - Reading the held record removes one whose container is gone (as O(edgemig.migration.migration_recover#module:mode=inspect)
    does); nothing else is changed.
  - The returned RV(config) contains the container's environment; use C(no_log) on the task if it holds secrets.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.docker
attributes:
  check_mode:
    support: none
    details: It may remove a stale held record (see the description), so it does not run in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  name:
    description: The service (container) name.
    type: str
    required: true
  dump_dir:
    description: This host's dump tmpfs (the migration records live there; its readiness is judged).
    type: path
    default: /var/lib/edgemig/dumps
  address:
    description: The service address (catalog C(address)), to tell whether this host holds it.
    type: str
  interface:
    description: This host's interface for O(address).
    type: str
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: What each edge knows of apache and can do, all edges at once
  edgemig.migration.migration_survey:
    name: apache
    dump_dir: "{{ edgemig_dump_dir }}"
    address: 10.213.0.101
    interface: eth0
  register: survey
  no_log: true   # the container config carries its environment
'''

RETURN = r'''
facts:
  description: The recovery's facts of this host (RV(edgemig.migration.migration_recover#module:facts)).
  returned: always
  type: dict
container:
  description: Summary of the container (RV(edgemig.migration.edge_container_info#module:container)); C(exists=false) when there is none.
  returned: always
  type: dict
config:
  description: Create body reproducing the container (image by ID). Empty when it does not exist.
  returned: always
  type: dict
host:
  description:
    - This host's readiness (RV(edgemig.migration.migration_host_info#module:ready), C(problems), C(criu), C(docker),
      C(dump_dir), C(runc_conf), C(cpu)).
  returned: always
  type: dict
service:
  description:
    - The check of the container's processes when it runs here (RV(edgemig.migration.migration_host_info#module:service)),
      C(refusal) null when nothing refuses its migration; C(checked=false) when it does not run here.
  returned: always
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.common.options import DEFAULT_DUMP_DIR
from ansible_collections.edgemig.migration.plugins.module_utils.docker.container_spec import from_inspect, summary
from ansible_collections.edgemig.migration.plugins.module_utils.docker.criu_preflight import check_service
from ansible_collections.edgemig.migration.plugins.module_utils.docker.host_readiness import host_report
from ansible_collections.edgemig.migration.plugins.module_utils.docker.module_common import DOCKER_ARGS, docker_api
from ansible_collections.edgemig.migration.plugins.module_utils.driver.recovery import local_facts


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            dump_dir=dict(type="path", default=DEFAULT_DUMP_DIR),
            address=dict(type="str"),
            interface=dict(type="str"),
            **DOCKER_ARGS,
        ),
        supports_check_mode=False,
    )
    p = module.params
    api = docker_api(module)
    try:
        facts = local_facts(api, p["name"], p["dump_dir"], p["address"], p["interface"])
        inspect = api.inspect_container(p["name"])
        service = check_service(api, p["name"]) if facts["running"] else {"checked": False, "refusal": None}
    except Exception as exc:  # one message naming the step, whatever failed underneath
        module.fail_json(msg=f"survey of {p['name']!r}: {type(exc).__name__}: {exc}")
    host = host_report(module.run_command, api, dump_dir=p["dump_dir"])
    module.exit_json(changed=False, facts=facts, container=summary(inspect),
                     config=from_inspect(inspect) if inspect else {}, host=host, service=service)


if __name__ == "__main__":
    main()
