# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plot a saved migration report (stages and stream timeline) as a PNG next to the JSON.

    python3 bench/plot_timeline.py reports/migrate-<svc>-latest.json [-o out.png]

The playbook draws this itself (module migration_report); this is for reports
kept from earlier runs. The drawing is plugins/module_utils/driver/timeline_plot.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from collection_path import ensure_collection_path  # noqa: E402

ensure_collection_path()

from ansible_collections.edgemig.migration.plugins.module_utils.driver.timeline_plot import plot  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", help="report JSON (e.g. reports/migrate-apache-latest.json)")
    ap.add_argument("-o", "--output", help="PNG path (default: the report's path with .png)")
    args = ap.parse_args(argv)
    try:
        with open(args.report, encoding="utf-8") as fh:
            report = json.load(fh)
        out = plot(report if isinstance(report, dict) else {"timeline": report},
                   args.output or os.path.splitext(args.report)[0] + ".png")
    except (OSError, ValueError, ImportError) as exc:
        print(f"{args.report}: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
