#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: migration_host_info
short_description: Report whether an edge host is ready for live migration (CRIU, Docker, dump tmpfs, runc.conf)
version_added: 0.1.0
description:
  - Finds C(criu) (on E(PATH) unless O(criu_path) is given), reads its version and runs C(criu check).
  - Asks the Docker Engine API (over its unix socket) for the daemon's version, API version, whether the
    experimental API (needed for checkpoint/restore) is on, the data root and the storage driver.
  - Reports the dump directory's file system type, free bytes and mode, and the CRIU options runc reads from
    O(runc_conf).
  - Sums it up as RV(ready) and a list of RV(problems). Never changes anything.
  - With O(service), also checks that container, when it runs here, for what CRIU cannot checkpoint (RV(service));
    C(playbooks/migrate.yml) asks the source this before anything is made on the target, and refuses the
    migration with RV(service.refusal). M(edgemig.migration.edge_migrate) checks again before it freezes.
  - The collection's roles C(edgemig.migration.criu), C(edgemig.migration.docker_engine) and
    C(edgemig.migration.dump_tmpfs) put right what it reports (C(ansible-doc -t role edgemig.migration.criu)).
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.info_module
  - edgemig.migration.docker
options:
  criu_path:
    description: The C(criu) to check; the first one on E(PATH) when not given (that is the one runc uses).
    type: path
  criu_min_version:
    description: Minimum CRIU version for RV(ready).
    type: str
    default: '4.2'
  run_criu_check:
    description: Run C(criu check) (needs root). When false, RV(criu.check_ok) is null and not judged.
    type: bool
    default: true
  dump_dir:
    description: Dump directory to inspect (the O(edgemig.migration.dump_tmpfs#role:main:dump_tmpfs_path) tmpfs);
      not inspected when not given.
    type: path
  min_free_bytes:
    description: Free bytes the dump directory must have for RV(ready); 0 disables the check.
    type: int
    default: 0
  runc_conf:
    description: The CRIU configuration file runc reads.
    type: path
    default: /etc/criu/runc.conf
  required_runc_options:
    description: CRIU options that must be in O(runc_conf) for RV(ready) (without leading dashes).
    type: list
    elements: str
    default: [skip-in-flight]
  service:
    description:
      - A container (service) to check for what CRIU cannot checkpoint (its processes' fds, mounts, devices,
        sockets, deleted open files; docs/design.md, "What CRIU cannot move"), if it runs on this host.
    type: str
  storage_driver:
    description: Storage driver the daemon must use for RV(ready); empty to accept any.
    type: str
    default: overlay2
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: Is this edge ready for migrations?
  edgemig.migration.migration_host_info:
    docker_host: unix:///run/edgemig-lab/edge1/docker.sock
    dump_dir: /var/lib/edgemig-lab/edge1/dumps
  register: readiness

- name: Stop unless it is
  ansible.builtin.assert:
    that: readiness.ready
    fail_msg: "{{ inventory_hostname }} is not ready: {{ readiness.problems | join('; ') }}"
'''

RETURN = r'''
ready:
  description: True when RV(problems) is empty.
  returned: always
  type: bool
  sample: true
problems:
  description: Why the host is not ready, one line per problem.
  returned: always
  type: list
  elements: str
  sample: ["criu: `criu check` fails (/usr/sbin/criu): Error (criu/crtools.c:260): Could not initialize kernel features detection."]
criu:
  description: The CRIU found.
  returned: always
  type: dict
  contains:
    path:
      description: Path of the C(criu) checked (null if none was found).
      type: str
      sample: /usr/local/sbin/criu
    version:
      description: Its version.
      type: str
      sample: 4.2.1
    min_version:
      description: O(criu_min_version).
      type: str
      sample: '4.2'
    check_ok:
      description: Whether C(criu check) passed (null when not run).
      type: bool
      sample: true
    check_output:
      description: Combined output of C(criu check).
      type: str
      sample: Looks good.
docker:
  description: The Docker daemon.
  returned: always
  type: dict
  contains:
    host:
      description: The endpoint asked.
      type: str
      sample: unix:///var/run/docker.sock
    version:
      description: Engine version.
      type: str
      sample: 20.10.24+dfsg1
    api_version:
      description: Engine API version.
      type: str
      sample: '1.41'
    experimental:
      description: Whether the experimental API (checkpoint/restore) is on.
      type: bool
      sample: true
    data_root:
      description: The daemon's data root.
      type: str
      sample: /var/lib/docker
    storage_driver:
      description: The daemon's storage driver.
      type: str
      sample: overlay2
    error:
      description: Why the daemon could not be asked (null when it answered).
      type: str
      sample: null
dump_dir:
  description: The dump directory (all null/false when O(dump_dir) is not given).
  returned: always
  type: dict
  contains:
    path:
      description: O(dump_dir).
      type: str
      sample: /var/lib/edgemig/dumps
    exists:
      description: Whether it is an existing directory.
      type: bool
      sample: true
    fs_type:
      description: File system type it is on.
      type: str
      sample: tmpfs
    is_tmpfs:
      description: Whether that is tmpfs.
      type: bool
      sample: true
    free_bytes:
      description: Bytes available.
      type: int
      sample: 2147483648
    mode:
      description: Permission bits, octal.
      type: str
      sample: '0700'
cpu:
  description:
    - The instruction-set features a restored process may rely on (glibc and JITs choose code paths from
      CPUID at start). migrate.yml refuses a target whose CPU lacks one of the source's, before the freeze.
  returned: always
  type: dict
  contains:
    arch:
      description: C(x86) (ISA flags of /proc/cpuinfo), C(other) (its C(Features) line) or C(unknown).
      type: str
    isa:
      description: The features.
      type: list
      elements: str
      sample: [avx, avx2, sse4_2]
service:
  description:
    - With O(service) running here, the check of its processes (as M(edgemig.migration.edge_migrate) returns it
      in C(preflight)), plus C(refusal), the failure message naming each process, fd, reason and what the user
      can do (null when nothing refuses the migration).
    - "C(checked=false) when it does not run here."
  returned: when O(service) is given
  type: dict
  contains:
    checked:
      description: Whether the container's processes were checked (false when it does not run here).
      type: bool
      sample: true
    findings:
      description: Each thing CRIU cannot dump or dumps only with an option, as in M(edgemig.migration.edge_migrate)'s C(preflight).
      type: list
      elements: dict
    refusal:
      description: The message naming each finding that refuses the migration; null when none does.
      type: str
      sample: "CRIU could not checkpoint this service: process 42 (node) holds an io_uring instance (fd 7): ..."
runc_conf:
  description: The CRIU options runc uses.
  returned: always
  type: dict
  contains:
    path:
      description: O(runc_conf).
      type: str
      sample: /etc/criu/runc.conf
    exists:
      description: Whether the file exists.
      type: bool
      sample: true
    options:
      description: Its options, without leading dashes.
      type: list
      elements: str
      sample: [tcp-close, skip-in-flight, file-locks]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.docker.criu_preflight import check_service
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError
from ansible_collections.edgemig.migration.plugins.module_utils.docker.host_readiness import (
    CRIU_MIN_VERSION,
    REQUIRED_RUNC_OPTIONS,
    RUNC_CONF_PATH,
    STORAGE_DRIVER,
    host_report,
)
from ansible_collections.edgemig.migration.plugins.module_utils.docker.module_common import DOCKER_ARGS, docker_api


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            DOCKER_ARGS,
            criu_path=dict(type="path"),
            criu_min_version=dict(type="str", default=CRIU_MIN_VERSION),
            run_criu_check=dict(type="bool", default=True),
            dump_dir=dict(type="path"),
            min_free_bytes=dict(type="int", default=0),
            runc_conf=dict(type="path", default=RUNC_CONF_PATH),
            required_runc_options=dict(type="list", elements="str", default=list(REQUIRED_RUNC_OPTIONS)),
            storage_driver=dict(type="str", default=STORAGE_DRIVER),
            service=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    api = docker_api(module)
    report = host_report(module.run_command, api, **{k: p[k] for k in (
        "criu_path", "criu_min_version", "run_criu_check", "dump_dir", "min_free_bytes", "runc_conf",
        "required_runc_options", "storage_driver")})
    if p["service"]:
        try:
            report["service"] = check_service(api, p["service"])
        except DockerAPIError as exc:
            module.fail_json(msg=f"inspecting {p['service']}: {exc}")
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
