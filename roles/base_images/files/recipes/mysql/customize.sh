#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# mmdebstrap customize hook for edgemig/mysql: MariaDB with a baked, initialised
# data directory (Docker copies it into a fresh named volume at first use).
set -eu
root=$1
r=${EDGEMIG_RECIPE_DIR:-$(dirname "$0")}

install -D -m 0644 "$r/99-edgemig.cnf" "$root/etc/mysql/mariadb.conf.d/99-edgemig.cnf"
install -d -m 0755 "$root/run/mysqld"
rm -rf "$root/var/lib/mysql"
install -d -m 0755 "$root/var/lib/mysql"
chroot "$root" /usr/bin/mariadb-install-db --user=root --datadir=/var/lib/mysql \
  --skip-test-db --force --skip-name-resolve --auth-root-authentication-method=socket >/dev/null
# schema and the remote test user, through the server's bootstrap mode (no network)
chroot "$root" /usr/sbin/mariadbd --user=root --datadir=/var/lib/mysql \
  --innodb-use-native-aio=0 --bootstrap < "$r/init.sql"
# no stale runtime files in the baked data directory
rm -f "$root"/var/lib/mysql/*.pid "$root"/var/lib/mysql/aria_log_control.lock
install -m 0755 "$r/edgemig-mysql" "$root/usr/local/bin/edgemig-mysql"
install -D -m 0644 "$r/init.sql" "$root/usr/local/share/edgemig/init.sql"
