#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# mmdebstrap customize hook for edgemig/postgres: PostgreSQL 15 with a baked,
# initialised data directory (Docker copies it into a fresh named volume).
set -eu
root=$1
r=${EDGEMIG_RECIPE_DIR:-$(dirname "$0")}
# the package's own cluster (postgresql-common) is not used
rm -rf "$root"/var/lib/postgresql/15 "$root"/etc/postgresql/15
# JIT is off (edgemig.conf): its bitcode and the LLVM provider are not needed
rm -rf "$root"/usr/lib/postgresql/15/lib/bitcode "$root"/usr/lib/postgresql/15/lib/llvmjit*
install -D -m 0644 "$r/edgemig.conf" "$root/usr/local/share/edgemig/postgresql.conf"
install -m 0755 "$r/edgemig-postgres" "$root/usr/local/bin/edgemig-postgres"
install -m 0755 "$r/edgemig-initdb" "$root/usr/local/bin/edgemig-initdb"
install -d -o 0 -g 0 -m 0755 "$root/var/lib/postgresql"
chroot "$root" install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
chroot "$root" setpriv --reuid=postgres --regid=postgres --init-groups /usr/local/bin/edgemig-initdb /var/lib/postgresql/data
