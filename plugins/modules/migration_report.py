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
  - The PNG is drawn by a detached background process and the module returns without waiting for it
    (drawing costs about 0.7 s that the play does not wait for). It appears whole, under its final name,
    about a second after the module returns; until then there is no PNG, never a partial one.
  - An earlier O(name).png and O(name).plot-error.txt are removed as the report is written, so that no
    plot of another migration stands beside this report, whether or not a new one is drawn.
  - A missing matplotlib, or a report with nothing to draw, is not an error; the report is written and
    RV(plot_note) says why there is no plot. A drawing that fails in the background leaves no PNG and
    says why in O(dest_dir)/O(name).plot-error.txt.
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
      - Draw the PNG (in the background). With V(false) none is drawn; an earlier O(name).png in O(dest_dir) is
        removed either way.
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
  description:
    - The path the PNG is being drawn to, empty when none will be. The PNG appears there about a second
      after the module returns (it is drawn in the background); if the drawing fails there is none, and
      O(name).plot-error.txt beside it says why.
  returned: always
  type: str
plot_note:
  description: How the PNG is drawn (in the background, by the process with the pid given) or why none is drawn.
  returned: always
  type: str
  sample: drawing in the background (pid 12345)
'''

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgemig.migration.plugins.module_utils.driver import background_plot


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
        # Under the lock a drawer of an earlier report puts its plot in place with: it sees this report.
        with background_plot.report_dir_lock(os.path.dirname(base)):
            tmp = path + ".partial"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(p["report"], fh, indent=4, sort_keys=False)
                fh.write("\n")
            os.replace(tmp, path)
            report_id = background_plot.identity(path)
            # A plot left by an earlier migration would be read as this one's.
            stale = background_plot.remove_plot(png)
    except OSError as exc:
        module.fail_json(msg=f"cannot write the report under {p['dest_dir']}: {exc}")
    drawing, note = "", "plot=false"
    if p["plot"]:
        why = background_plot.why_not(p["report"])
        if why:
            note = f"no plot: {why}"
        else:
            try:
                pid = background_plot.draw_detached(p["report"], png, path, report_id)
                drawing, note = png, f"drawing in the background (pid {pid})"
            except OSError as exc:
                note = f"no plot: the drawing could not be started ({exc})"
    if stale:
        note += f"; {stale}"
    module.exit_json(changed=True, path=path, plot=drawing, plot_note=note)


if __name__ == "__main__":
    main()
