#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck shell=bash
#
# Step 1 of docs/connections.md's experiment plan: does CRIU's TCP repair keep one established
# connection on this kernel with this CRIU, and what does its network lock cost?
#
# Loopback only: everything runs in a private network namespace (unshare -n, only `lo`), so no
# packet leaves it and the shared lab is not touched. A server (its own session, the tree CRIU dumps)
# echoes lines; a client (not dumped) sends one every 20 ms on one connection and records the longest
# wait for an echo and any error. The server is dumped with --tcp-established and restored.
#
#   sudo lab/tcp_keep_step1.sh [SECONDS]
#   METHOD=nftables|iptables   CRIU's network lock (default nftables)
#   RESTORE=tcp-established|tcp-close   the restore's choice (tcp-close: the fallback after a keep dump;
#                                       the client must then see a reset, not a hang)
#   CRIU=/path/to/criu         (default: criu on PATH, the criu role's wrapper on a provisioned host)
#
# Prints one JSON line: the variant, CRIU's dump and restore wall times, the client's longest gap
# between echoes and its error (null if none). Exit 0 when the client ends without an error.
set -euo pipefail

SECONDS_RUN=${1:-6}
METHOD=${METHOD:-nftables}
RESTORE=${RESTORE:-tcp-established}
CRIU=${CRIU:-criu}

case $METHOD in nftables|iptables) ;; *) echo "METHOD must be nftables or iptables" >&2; exit 2 ;; esac
case $RESTORE in tcp-established|tcp-close) ;; *) echo "RESTORE must be tcp-established or tcp-close" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "needs root (CRIU, unshare)" >&2; exit 2; }

if [ -z "${EDGEMIG_STEP1_INNER:-}" ]; then
    exec unshare --net --fork env EDGEMIG_STEP1_INNER=1 "$0" "$@"
fi

ip link set lo up
work=$(mktemp -d /dev/shm/edgemig-step1.XXXXXX)
trap 'kill "${client_pid:-}" "${server_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
port=7070

cat >"$work/server.py" <<'EOF'
import socket, sys
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(1)
conn, _ = ls.accept()
f = conn.makefile("rwb", buffering=0)
for line in f:
    f.write(line)
EOF

cat >"$work/client.py" <<'EOF'
import json, socket, sys, time
port, run_s, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
s = socket.create_connection(("127.0.0.1", port), timeout=10)
f = s.makefile("rwb", buffering=0)
longest, n, error, last = 0.0, 0, None, time.monotonic()
end = last + run_s
try:
    while time.monotonic() < end:
        f.write(b"%d\n" % n)
        if f.readline() != b"%d\n" % n:
            error = "echo mismatch"
            break
        now = time.monotonic()
        longest, last, n = max(longest, now - last), now, n + 1
        time.sleep(0.02)
except OSError as exc:
    error = f"{type(exc).__name__}: {exc}"
with open(out, "w") as fh:
    json.dump({"messages": n, "longest_gap_s": round(longest, 3), "client_error": error}, fh)
EOF

setsid python3 "$work/server.py" "$port" </dev/null >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do
    [ -n "$(ss -Hltn "sport = :$port")" ] && break
    sleep 0.1
done

python3 "$work/client.py" "$port" "$SECONDS_RUN" "$work/client.json" &
client_pid=$!
sleep 1

mkdir -p "$work/img"
t0=$(date +%s.%N)
"$CRIU" dump -t "$server_pid" -D "$work/img" -o dump.log -v4 --tcp-established --network-lock "$METHOD"
t1=$(date +%s.%N)
"$CRIU" restore -D "$work/img" -o restore.log -v4 -d "--$RESTORE"
t2=$(date +%s.%N)

wait "$client_pid" || true
client_pid=
python3 - "$work/client.json" "$METHOD" "$RESTORE" "$t0" "$t1" "$t2" <<'EOF'
import json, sys
path, method, restore, t0, t1, t2 = sys.argv[1:]
with open(path) as fh:
    result = json.load(fh)
result.update(method=method, restore=restore, dump_s=round(float(t1) - float(t0), 3),
              restore_s=round(float(t2) - float(t1), 3))
print(json.dumps(result))
sys.exit(1 if result["client_error"] else 0)
EOF
