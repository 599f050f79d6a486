#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# mmdebstrap customize hook for edgemig/tomcat: Debian's tomcat10, run as root,
# with a tiny JSP app at /app/ (in-memory counter and JVM uptime).
set -eu
root=$1
r=${EDGEMIG_RECIPE_DIR:-$(dirname "$0")}
base="$root/var/lib/tomcat10"

# one HTTP connector on 8080, no shutdown port, no auto-deploy scanning
sed -i -e 's/<Server port="8005"/<Server port="-1"/' \
       -e 's/autoDeploy="true"/autoDeploy="false"/' "$root/etc/tomcat10/server.xml"
install -d "$base/webapps/app"
install -m 0644 "$r/index.jsp" "$base/webapps/app/index.jsp"
install -m 0644 "$r/health.txt" "$base/webapps/app/health.txt"
# logs: console only (the container's stdout), no rotating files in the layer
install -m 0644 "$r/logging.properties" "$root/etc/tomcat10/logging.properties"
install -m 0755 "$r/edgemig-tomcat" "$root/usr/local/bin/edgemig-tomcat"
