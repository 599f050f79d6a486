#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# mmdebstrap customize hook for edgemig/nginx: a reverse proxy whose upstream
# comes from the catalog entry's env (EDGEMIG_UPSTREAM).
set -eu
root=$1
r=${EDGEMIG_RECIPE_DIR:-$(dirname "$0")}
install -m 0644 "$r/nginx.conf.in" "$root/etc/nginx/nginx.conf.in"
rm -f "$root"/etc/nginx/sites-enabled/* "$root"/var/log/nginx/*
install -m 0755 "$r/edgemig-nginx" "$root/usr/local/bin/edgemig-nginx"
