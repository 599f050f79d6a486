#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: migration_report
short_description: Save a migration report as JSON, with a picture of its stages and stream timeline
version_added: 0.1.0
description:
  - Writes O(report) to O(dest_dir)/O(name).json and, when matplotlib is importable on the host that runs
    the module (the controller, in C(playbooks/migrate.yml)), a PNG next to it showing the stages of the
    migration and, when the stream was sampled, its throughput, codec and RTT over time.
  - A missing matplotlib is not an error; the report is written and RV(plot_note) says why there is no plot.
  - In check mode it returns the paths it would write and writes nothing; every run writes the report again.
extends_documentation_fragment:
  - edgemig.migration.attributes
  - edgemig.migration.attributes.action_check_mode
options:
  report:
    description: The report (stages, bytes, downtime, timeline...).
    type: dict
    required: true
  dest_dir:
    description: Directory for the report; created if missing.
    type: path
    required: true
  name:
    description: File name of the report without extension.
    type: str
    required: true
  plot:
    description:
      - Draw the PNG. Without one (V(false), or matplotlib missing), an earlier O(name).png in O(dest_dir) is removed,
        so that no plot of another migration stands beside this report.
    type: bool
    default: true
author:
  - edgemig developers (@edgemig)
'''

EXAMPLES = r'''
- name: Save the report
  edgemig.migration.migration_report:
    report: "{{ report }}"
    dest_dir: "{{ playbook_dir }}/reports"
    name: migrate-apache-latest
  delegate_to: localhost
'''

RETURN = r'''
path:
  description: The JSON report's normalised path.
  returned: always
  type: str
plot:
  description: The PNG's path, empty when none was drawn.
  returned: always
  type: str
plot_note:
  description: Why no PNG was drawn, empty otherwise.
  returned: always
  type: str
'''

import json
import os
import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.driver.timeline_plot import plot


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            report=dict(type="dict", required=True),
            dest_dir=dict(type="path", required=True),
            name=dict(type="str", required=True),
            plot=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if os.sep in p["name"] or p["name"] in ("", ".", ".."):
        module.fail_json(msg=f"name={p['name']!r} must be a plain file name")
    base = os.path.join(os.path.realpath(p["dest_dir"]), p["name"])
    path, png = base + ".json", base + ".png"
    if module.check_mode:
        module.exit_json(changed=True, path=path, plot=png if p["plot"] else "", plot_note="check mode")
    try:
        os.makedirs(os.path.dirname(base), exist_ok=True)
        tmp = path + ".partial"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(p["report"], fh, indent=4, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        module.fail_json(msg=f"cannot write the report under {p['dest_dir']}: {exc}")
    drawn, note = "", ""
    if p["plot"]:
        try:
            drawn = plot(p["report"], png)
        except ImportError as exc:
            note = f"no plot: matplotlib is not importable by {sys.executable} ({exc})"
        except (ValueError, OSError) as exc:
            note = f"no plot: {exc}"
    else:
        note = "plot=false"
    if not drawn:
        # A plot left by an earlier migration would be read as this one's.
        try:
            os.unlink(png)
        except FileNotFoundError:
            pass
        except OSError as exc:
            note += f"; the earlier plot {png} could not be removed ({exc})"
    module.exit_json(changed=True, path=path, plot=drawn, plot_note=note)


if __name__ == "__main__":
    main()
