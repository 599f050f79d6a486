#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: checkpoint_transfer
short_description: Stream a checkpoint, writable layer and volumes to the target edge host over SSH
version_added: 0.1.0
description:
  - Runs on the source edge host and streams directly to the target (never through the controller) over one
    paramiko SSH channel. The target host key must be in O(target.known_hosts); unknown hosts are refused.
  - The stream is framed - every chunk carries its codec, level, sizes and a CRC32; the receiver validates every
    path (no absolute paths, no C(..), never writes through a symlink) and aborts on the first bad frame.
  - Stages overlap - read, page dedup, compress on all cores, send, decompress, write - with bounded queues.
  - O(policy) chooses the compression. C(model) (default) measures the candidates' speed and ratio on the data
    flowing and the network rate, and picks the setting that minimises the predicted time (the paper's eq. 9-11).
    C(paper) is the paper's 9-state RTT/loss controller over lz4 levels 1-9. C(fixed:<codec>:<level>) pins a setting.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.action
  - edgemig.migration.target
options:
  roots:
    description:
      - What to send. Each item has C(name) (C(checkpoint), C(layer) or C(volume/<name>)) and C(src) (directory on
        this host). Where each lands on the target, and what is emptied first, is the target's ticket's to say.
    type: list
    elements: dict
    required: true
  source_volumes:
    description: Named volumes of the source container (C(name), C(path)) as returned by
      M(edgemig.migration.docker_checkpoint); each is sent as root C(volume/<name>) into the target volume of the same
      name (the ticket's), which is emptied first.
    type: list
    elements: dict
    default: []
  policy:
    description: C(model), C(paper) or C(fixed:<codec>:<level>) with codec C(none), C(lz4) (1-9), C(zstd) (-5..19) or C(wkdm).
    type: str
    default: model
  workers:
    description: Compression threads; 0 means one per core.
    type: int
    default: 0
  chunk_size:
    description: Bytes per chunk.
    type: int
    default: 1048576
  dedup:
    description: Send zero pages and pages already sent as references instead of data.
    type: bool
    default: true
  pipelined:
    description: Overlap the stages. C(false) runs the serial baseline (compress everything, then send) for comparison.
    type: bool
    default: true
requirements:
  - paramiko, lz4, zstandard (both ends)
  - numpy (both ends, for the C(wkdm) codec)
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: Stream apache's checkpoint and layer to edge2
  edgemig.migration.checkpoint_transfer:
    target:
      host: 10.213.0.12
      ticket: "{{ prepared.ticket }}"   # docker_checkpoint_restore stage=prepare on the target
    roots:
      - {name: checkpoint, src: "{{ ckpt.checkpoint_dir }}"}
      - {name: layer, src: "{{ ckpt.upper_dir }}"}
'''

RETURN = r'''
stats:
  description: >-
    Bytes raw and on the wire, ratio, chunks, zero and duplicate pages, codecs used, seconds, controller state,
    and C(link_probe) (C(rate_Bps), C(rtt_s) of the link as measured with probe frames before the stream).
  returned: success
  type: dict
timeline:
  description: Per interval (0.25 s) the codec and level in use, RTT, loss, goodput, bytes raw and on the wire.
  returned: success
  type: list
  elements: dict
'''

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.edgemig.migration.plugins.module_utils.docker.container_spec import pair_volumes
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.ticket import ROOT_NAME
from ansible_collections.edgemig.migration.plugins.module_utils.sender.controller import parse_policy
from ansible_collections.edgemig.migration.plugins.module_utils.sender.ssh_stream import (
    HAS_PARAMIKO,
    PARAMIKO_IMPORT_ERROR,
    TARGET_OPTIONS,
    TransferError,
    send_over_ssh,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            roots=dict(type="list", elements="dict", required=True),
            source_volumes=dict(type="list", elements="dict", default=[]),
            target=dict(type="dict", required=True, options=TARGET_OPTIONS),  # doc fragment edgemig.migration.target
            policy=dict(type="str", default="model"),
            workers=dict(type="int", default=0),
            chunk_size=dict(type="int", default=1 << 20),
            dedup=dict(type="bool", default=True),
            pipelined=dict(type="bool", default=True),
        ),
        supports_check_mode=False,
    )
    if not HAS_PARAMIKO:
        module.fail_json(msg=missing_required_lib("paramiko"), exception=str(PARAMIKO_IMPORT_ERROR))
    p = module.params
    if not 4096 <= p["chunk_size"] <= (16 << 20) or p["chunk_size"] % 4096:
        module.fail_json(msg=f"chunk_size={p['chunk_size']}: must be a multiple of 4096 between 4 KiB and 16 MiB")
    try:
        parse_policy(p["policy"])  # before connecting
    except ValueError as exc:
        module.fail_json(msg=f"policy={p['policy']!r}: {exc}")
    if p["target"]["volumes"] is not None:
        try:
            pair_volumes(p["source_volumes"], p["target"]["volumes"])
        except ValueError as exc:
            module.fail_json(msg=f"source {exc}")
    src, seen = [], set()
    roots = list(p["roots"]) + [{"name": f"volume/{v.get('name')}", "src": v.get("path")} for v in p["source_volumes"]]
    for i, root in enumerate(roots):
        name = root.get("name")
        if not isinstance(name, str) or not ROOT_NAME.match(name):
            module.fail_json(msg=f"roots[{i}].name={name!r}: must be checkpoint, layer or volume/<name>")
        if not root.get("src"):
            module.fail_json(msg=f"roots[{i}] ({name}): src is required")
        if name in seen:
            module.fail_json(msg=f"roots[{i}]: root {name!r} given twice")
        seen.add(name)
        src.append((name, root["src"]))
    try:
        tgt = p["target"]
        result = send_over_ssh(src, tgt["ticket"], host=tgt["host"], port=tgt["port"], user=tgt["user"],
                               key_file=tgt["key_file"], known_hosts=tgt["known_hosts"],
                               receiver_dir=tgt["receiver_dir"], policy=p["policy"], workers=p["workers"],
                               chunk_size=p["chunk_size"], dedup=p["dedup"], pipelined=p["pipelined"])
    except TransferError as exc:
        module.fail_json(msg=f"transfer to {p['target']['host']} failed: {exc}")
    except ValueError as exc:  # bad policy string and the like
        module.fail_json(msg=f"policy={p['policy']!r}: {exc}")
    except Exception as exc:
        module.fail_json(msg=f"transfer to {p['target']['host']} failed: {type(exc).__name__}: {exc}",
                         exception=traceback.format_exc())
    timeline = result.pop("timeline", [])
    module.exit_json(changed=True, stats=result, timeline=timeline)


if __name__ == "__main__":
    main()
