#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# slim.sh ROOT PKG...: purge the listed packages that are installed in ROOT,
# ignoring dependencies (the image is immutable; nothing runs apt in it).
set -eu
root=$1; shift
present=""
for p in "$@"; do
  # shellcheck disable=SC2016  # ${db:Status-Status} is dpkg-query's format, not a shell expansion
  if chroot "$root" dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    present="$present $p"
  fi
done
[ -z "$present" ] && exit 0
# shellcheck disable=SC2086
chroot "$root" dpkg --purge --force-depends $present >/dev/null 2>&1
echo "slim: purged$present"
