#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# mmdebstrap customize hook for edgemig/apache: static pages, mod_status, prefork.
set -eu
root=$1
r=${EDGEMIG_RECIPE_DIR:-$(dirname "$0")}

# mpm_prefork with few processes: a small CRIU checkpoint.
chroot "$root" a2dismod -q mpm_event >/dev/null 2>&1 || true
chroot "$root" a2enmod -q mpm_prefork status >/dev/null
install -m 0644 "$r/edgemig.conf" "$root/etc/apache2/conf-available/edgemig.conf"
chroot "$root" a2enconf -q edgemig >/dev/null
# the default site logs to files; edgemig.conf sets the logging instead
sed -i -e '/ErrorLog/d' -e '/CustomLog/d' "$root/etc/apache2/sites-available/000-default.conf"
# mod_status: reachable from anywhere (the lab's tests query it from outside)
sed -i 's/Require local/Require all granted/' "$root/etc/apache2/mods-available/status.conf"

# pages: /index.html and the paper's 512 KiB benchmark page /big.html
www="$root/var/www/html"
rm -f "$www/index.html"
printf '<!doctype html>\n<html><head><title>edgemig</title></head><body><p>edgemig apache</p></body></html>\n' > "$www/index.html"
{
  printf '<!doctype html>\n<html><head><title>edgemig big page</title></head><body><pre>\n'
  i=0
  while [ $i -lt 8192 ]; do printf 'line %06d edgemig benchmark page padding padding padding padd\n' $i; i=$((i+1)); done
} | head -c $((524288 - 22)) > "$www/big.html"
printf '\n</pre></body></html>\n' >> "$www/big.html"
chmod 0644 "$www/index.html" "$www/big.html"

install -m 0755 "$r/edgemig-apache" "$root/usr/local/bin/edgemig-apache"

