#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Build a minimal Debian root file system tarball for an edgemig service image.
#
#   mkrootfs.sh SUITE OUT.tar DEB_CACHE_DIR RECIPE_DIR PACKAGES [MIRROR...]
#
# PACKAGES is a comma-separated list for mmdebstrap --include.
# RECIPE_DIR/customize.sh is run as a mmdebstrap customize hook with the
# root file system as $1 and RECIPE_DIR as $EDGEMIG_RECIPE_DIR.
# Downloaded .debs are kept in DEB_CACHE_DIR (sync-in/sync-out hooks) so a
# rebuild does not download again. Docs, man pages and locales are not
# unpacked. The tarball is written atomically (OUT.tar.partial -> OUT.tar).
set -eu

suite=$1 out=$2 debcache=$3 recipe=$4 packages=$5
shift 5

[ -x "$recipe/customize.sh" ] || { echo "mkrootfs: $recipe/customize.sh missing or not executable" >&2; exit 2; }
mkdir -p "$debcache" "$(dirname "$out")"
debcache=$(cd "$debcache" && pwd)
recipe=$(cd "$recipe" && pwd)
export EDGEMIG_RECIPE_DIR="$recipe"

set -- "$@"
if [ $# -eq 0 ]; then
  set -- "deb http://deb.debian.org/debian $suite main" \
         "deb http://deb.debian.org/debian $suite-updates main" \
         "deb http://deb.debian.org/debian-security $suite-security main"
fi

# Packages a running service does not need (maintainer-script tooling only).
# usrmerge drags perl into minbase on bookworm; RECIPE_DIR/purge adds more.
purge="usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl libperl5.36 perl-modules-5.36"
[ -f "$recipe/purge" ] && purge="$purge $(grep -v '^#' "$recipe/purge" | tr '\n' ' ')"
slim="$(cd "$(dirname "$0")" && pwd)/slim.sh"

rm -f "$out.partial"
# shellcheck disable=SC2016  # the hooks' "$1" is mmdebstrap's (the rootfs), expanded by its shell
mmdebstrap --variant=minbase --mode=root --format=tar \
  --include="$packages" \
  --aptopt='APT::Install-Recommends "false"' \
  --aptopt='APT::Install-Suggests "false"' \
  --dpkgopt='force-unsafe-io' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --dpkgopt='path-exclude=/usr/share/linda/*' \
  --skip=essential/unlink \
  --essential-hook='mkdir -p "$1"/usr/share/man/man1' \
  --setup-hook="mkdir -p \"\$1\"/var/cache/apt/archives/" \
  --setup-hook="sync-in $debcache /var/cache/apt/archives/" \
  --customize-hook="sync-out /var/cache/apt/archives $debcache" \
  --customize-hook="$recipe/customize.sh \"\$1\"" \
  --customize-hook="$slim \"\$1\" $purge" \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/debconf/*-old "$1"/var/log/apt/* "$1"/var/log/dpkg.log "$1"/var/cache/ldconfig/aux-cache' \
  "$suite" "$out.partial" "$@"
mv "$out.partial" "$out"
