#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# mmdebstrap customize hook for edgemig/mosquitto: broker with persistence on a volume.
set -eu
root=$1
r=${EDGEMIG_RECIPE_DIR:-$(dirname "$0")}
install -m 0644 "$r/edgemig.conf" "$root/etc/mosquitto/edgemig.conf"
chroot "$root" install -d -o mosquitto -g mosquitto -m 0755 /var/lib/mosquitto
rm -f "$root"/var/log/mosquitto/*
install -m 0755 "$r/edgemig-mosquitto" "$root/usr/local/bin/edgemig-mosquitto"
