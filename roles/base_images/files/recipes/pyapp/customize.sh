#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# mmdebstrap customize hook for edgemig/pyapp: gunicorn workers holding state in memory.
set -eu
root=$1
r=${EDGEMIG_RECIPE_DIR:-$(dirname "$0")}
install -D -m 0644 "$r/app.py" "$root/srv/app/app.py"
install -m 0755 "$r/edgemig-pyapp" "$root/usr/local/bin/edgemig-pyapp"
