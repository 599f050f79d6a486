#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# mmdebstrap customize hook for edgemig/redis: redis-server with AOF on /data.
set -eu
root=$1
r=${EDGEMIG_RECIPE_DIR:-$(dirname "$0")}
install -D -m 0644 "$r/edgemig.conf" "$root/etc/redis/edgemig.conf"
install -d -m 0755 "$root/data"
install -m 0755 "$r/edgemig-redis" "$root/usr/local/bin/edgemig-redis"
