# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r'''
options:
  docker_host:
    description:
      - The Docker Engine API endpoint on the managed host, a C(unix://) socket.
      - Falls back to the E(DOCKER_HOST) environment variable, then C(unix:///var/run/docker.sock).
    type: str
    aliases: [ docker_url ]
  validate_certs:
    description:
      - TLS to a C(tcp://) O(docker_host), the daemon's certificate checked against O(ca_path) and
        its name against O(tls_hostname), as C(docker --tlsverify) does. Use this for a daemon run with
        C(dockerd --tlsverify).
      - Falls back to the E(DOCKER_TLS_VERIFY) environment variable on the managed host.
    type: bool
    default: false
    aliases: [ tls_verify ]
  tls:
    description:
      - TLS to a C(tcp://) O(docker_host) without checking the daemon's certificate. Encrypted but not
        authenticated, anyone in the path can pose as the daemon; prefer O(validate_certs).
      - Falls back to the E(DOCKER_TLS) environment variable on the managed host.
    type: bool
    default: false
  ca_path:
    description:
      - The CA certificate (PEM) that signed the daemon's certificate. Without it, the system's CAs.
      - Without it and with E(DOCKER_CERT_PATH) set, C(ca.pem) there, as the docker CLI reads it.
    type: path
    aliases: [ ca_cert, tls_ca_cert, cacert_path ]
  client_cert:
    description:
      - The client certificate (PEM) the daemon accepts (C(dockerd --tlsverify) asks for one); with O(client_key).
      - Without it and with E(DOCKER_CERT_PATH) set, C(cert.pem) there.
    type: path
    aliases: [ tls_client_cert, cert_path ]
  client_key:
    description:
      - The key (PEM) of O(client_cert).
      - Without it and with E(DOCKER_CERT_PATH) set, C(key.pem) there.
    type: path
    aliases: [ tls_client_key, key_path ]
  tls_hostname:
    description:
      - The name the daemon's certificate must carry, when it is not the host named in O(docker_host).
      - Falls back to the E(DOCKER_TLS_HOSTNAME) environment variable on the managed host.
    type: str
  tcp_without_tls:
    description:
      - Allow a C(tcp://) O(docker_host) without TLS. Whoever reaches a Docker API port is root on its host,
        so a C(tcp://) endpoint with neither O(validate_certs) nor O(tls) is refused unless this is V(true).
    type: bool
    default: false
attributes:
  action_group:
    description: Use C(group/edgemig.migration.docker) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - edgemig.migration.docker
'''
