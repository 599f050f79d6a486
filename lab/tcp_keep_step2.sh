#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck shell=bash
#
# Step 2 of docs/connections.md's experiment plan: does runc 1.1.5 hand CRIU a per-container
# configuration file, and does one established connection survive a checkpoint in one network
# namespace and a restore in another holding the same address?
#
# runc alone, no Docker: a bundle from `runc spec` whose root is an empty directory with the host's
# /usr and /etc bound read-only (a python3 echo server, as in tcp_keep_step1.sh), its own runc root
# and cgroup. Two network namespaces made here (ip netns add), each with a veth whose other end is
# put on the lab bridge (emigbr0) with the same address ADDR and the same MAC: A runs the server;
# after `runc checkpoint` A's link goes away and B's comes up, and `runc restore -d` runs it in B
# (config.json's network path switched to B: runc then declares the namespace external to CRIU). A
# client in the controller's namespace sends a line every 20 ms on one connection and records the
# longest wait for its echo and any error. Before the restore B holds an nftables table of ours
# (inet edgemig_hold: drop the service port) so B's kernel answers nothing before CRIU's lock; it
# is deleted once runc restore returns.
#
# How the keep options reach CRIU (MODE):
#   annotation  (2a) the spec's annotation org.criu.config=<dir>/keep.conf (runc passes it over the RPC
#               instead of /etc/criu/runc.conf, on checkpoint and restore)
#   wrapper     (2b) no annotation; `runc --criu <dir>/criu-keep` names a wrapper that finds the
#               container id in its parent runc's argv and, when <dir>/conf/<id>.conf exists, runs the
#               lab's criu in a private mount namespace with that file bound over /etc/criu/runc.conf
#   runtime     (2b') no annotation; every runc call goes through <dir>/runc-keep (what Docker would run as
#               a per-container runtime, `--runtime`): when <dir>/conf/<id>.conf exists it runs runc itself
#               in a private mount namespace with that file bound over /etc/criu/runc.conf (the wrapper
#               around criu alone cannot do this: see docs/connections.md, step 2b)
#   none        neither: /etc/criu/runc.conf as the lab has it (tcp-close), the control
# The lab's /etc/criu/runc.conf and criu wrapper are read, never changed. Everything made here is
# removed on exit (runc container, namespaces, veths, cgroup, files).
#
#   sudo flock /run/edgemig-lab.lock lab/tcp_keep_step2.sh [MODE] [SECONDS]
#   ADDR=10.213.0.240 (a free lab address)  METHOD=nftables|iptables (CRIU's network lock)
#   HOLD=1|0 (our drop table in B before the restore)
#   WATCH=1 (list B's nftables tables every few ms during the restore, into OUT/watch-b.txt: when
#            CRIU's restore lock comes and goes)
#
# Prints one JSON line (mode, dump_s, restore_s, the client's messages, longest gap, error, the resets
# B's kernel sent from the service port, counted by an nft counter in B's output) and
# keeps CRIU's logs in OUT (default /tmp/edgemig-step2-<mode>). Exit 0 when the client ends without
# an error.
set -euo pipefail

MODE=${1:-annotation}
SECONDS_RUN=${2:-8}
ADDR=${ADDR:-10.213.0.240}
METHOD=${METHOD:-nftables}
HOLD=${HOLD:-1}
PORT=7070
MAC=02:42:0a:d5:00:f0
BRIDGE=emigbr0
ID=edgemig-step2
W=/run/edgemig-step2
OUT=${OUT:-/tmp/edgemig-step2-$MODE}
R=$W/runc-root
B=$W/bundle

case $MODE in annotation|wrapper|runtime|none) ;; *) echo "MODE must be annotation, wrapper, runtime or none" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 2; }
[ ! -e $W ] || { echo "$W exists: an earlier run not cleaned up?" >&2; exit 2; }

cleanup() {
    set +e
    kill "${client_pid:-}" "${watch_pid:-}" 2>/dev/null
    runc --root $R delete -f $ID >/dev/null 2>&1
    ip link del s2a-h 2>/dev/null
    ip link del s2b-h 2>/dev/null
    ip netns del s2a 2>/dev/null
    ip netns del s2b 2>/dev/null
    for d in /sys/fs/cgroup/*/edgemig-step2 /sys/fs/cgroup/unified/edgemig-step2; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    rm -rf $W
}
trap cleanup EXIT

mkdir -p $W/app $W/img $W/work $W/conf "$OUT" $B/rootfs/{usr,etc,proc,dev,sys,tmp,app}
for l in bin lib lib64 sbin; do ln -s usr/$l $B/rootfs/$l; done

printf '%s\n' tcp-established skip-in-flight file-locks "network-lock $METHOD" > $W/keep.conf
cat >$W/app/server.py <<'EOF'
import os, socket, sys
fd = os.open("/dev/null", os.O_RDWR)
for n in (0, 1, 2):
    os.dup2(fd, n)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1])))
ls.listen(4)
conn, _ = ls.accept()
f = conn.makefile("rwb", buffering=0)
for line in f:
    f.write(line)
EOF

# The two namespaces: A up and serving, B ready (address, MAC, our hold) but its link down.
for n in a b; do
    ip netns add s2$n
    ip link add s2$n-h type veth peer name eth0 netns s2$n
    ip -n s2$n link set lo up
    ip -n s2$n link set eth0 address $MAC
    ip -n s2$n addr add "$ADDR/24" dev eth0
    ip -n s2$n link set eth0 up
    ip link set s2$n-h master $BRIDGE
done
ip link set s2a-h up
# Count the resets B's kernel sends from the service port (output, before anything else; drops nothing).
ip netns exec s2b nft -f - <<EOF
table inet edgemig_count {
  chain output { type filter hook output priority -400; policy accept; tcp sport $PORT tcp flags rst counter; }
}
EOF
if [ "$HOLD" = 1 ]; then
    ip netns exec s2b nft -f - <<EOF
table inet edgemig_hold {
  chain input { type filter hook input priority -300; policy accept; tcp dport $PORT drop; }
}
EOF
fi

cd $B
runc spec
ann='{}'
[ "$MODE" = annotation ] && ann="{\"org.criu.config\": \"$W/keep.conf\"}"
jq --arg app $W/app --argjson ann "$ann" '
  .process.terminal = false | .process.args = ["python3", "/app/server.py", "'$PORT'"]
  | .hostname = "step2" | .annotations = $ann
  | .linux.cgroupsPath = "/edgemig-step2/'$ID'"
  | .linux.namespaces = [.linux.namespaces[] | if .type == "network" then .path = "/run/netns/s2a" else . end]
  | .mounts += [{"destination": "/usr", "type": "bind", "source": "/usr", "options": ["bind", "ro"]},
                {"destination": "/etc", "type": "bind", "source": "/etc", "options": ["bind", "ro"]},
                {"destination": "/app", "type": "bind", "source": $app, "options": ["bind", "ro"]}]
' config.json > config.json.new && mv config.json.new config.json

criu_opt=()
RUNC=runc
if [ "$MODE" = runtime ]; then
    cp $W/keep.conf $W/conf/$ID.conf
    cat >$W/runc-keep <<EOF
#!/bin/sh
# 2b': the container id is runc's last argument; with a config file of its own, runc (and so the
# criu it starts, and the directories it opens for it) runs in a private mount namespace where that
# file is bound over /etc/criu/runc.conf.
for id; do :; done
conf=$W/conf/\$id.conf
if [ -n "\$id" ] && [ -f "\$conf" ]; then
    exec unshare -m --propagation slave sh -c 'mount --bind "\$0" /etc/criu/runc.conf && exec runc "\$@"' "\$conf" "\$@"
fi
exec runc "\$@"
EOF
    chmod 755 $W/runc-keep
    RUNC=$W/runc-keep
fi
if [ "$MODE" = wrapper ]; then
    cp $W/keep.conf $W/conf/$ID.conf
    cat >$W/criu-keep <<EOF
#!/bin/sh
# 2b: the container id from the parent runc's argv (its last argument); a config file of its own
# bound over /etc/criu/runc.conf in a private mount namespace, then the lab's criu wrapper.
id=\$(tr '\\0' '\\n' < /proc/\$PPID/cmdline | tail -n 1)
conf=$W/conf/\$id.conf
if [ -n "\$id" ] && [ -f "\$conf" ]; then
    exec unshare -m --propagation slave sh -c 'mount --bind "\$0" /etc/criu/runc.conf && exec /usr/local/sbin/criu "\$@"' "\$conf" "\$@"
fi
exec /usr/local/sbin/criu "\$@"
EOF
    chmod 755 $W/criu-keep
    criu_opt=(--criu "$W/criu-keep")
fi

$RUNC --root $R "${criu_opt[@]}" run -d --bundle $B $ID </dev/null >/dev/null 2>&1
for _ in $(seq 50); do
    [ -n "$(ip netns exec s2a ss -Hltn "sport = :$PORT")" ] && break
    sleep 0.1
done

cat >$W/client.py <<'EOF'
import json, socket, sys, time
addr, port, run_s, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = socket.create_connection((addr, port), timeout=10)
f = s.makefile("rwb", buffering=0)
longest, at, n, error, last = 0.0, None, 0, None, time.monotonic()
end = last + run_s
try:
    while time.monotonic() < end:
        f.write(b"%d\n" % n)
        if f.readline() != b"%d\n" % n:
            error = "echo mismatch"
            break
        now = time.monotonic()
        if now - last > longest:
            longest, at = now - last, time.time()
        last, n = now, n + 1
        time.sleep(0.02)
except OSError as exc:
    error = f"{type(exc).__name__}: {exc}"
with open(out, "w") as fh:
    json.dump({"messages": n, "longest_gap_s": round(longest, 3), "longest_gap_end": at, "client_error": error}, fh)
EOF
python3 $W/client.py "$ADDR" $PORT "$SECONDS_RUN" $W/client.json &
client_pid=$!
sleep 1.5

t0=$(date +%s.%N)
rc=0
$RUNC --root $R "${criu_opt[@]}" checkpoint --image-path $W/img --work-path $W/work $ID || rc=$?
t1=$(date +%s.%N)
cp $W/work/dump.log "$OUT/" 2>/dev/null || true
ip netns exec s2a nft list ruleset > "$OUT/nft-a-after-dump.txt" 2>&1 || true
# A leaves the bridge, B joins it (our hold still on).
ip link del s2a-h
ip link set s2b-h up
jq '.linux.namespaces = [.linux.namespaces[] | if .type == "network" then .path = "/run/netns/s2b" else . end]' \
    $B/config.json > $B/config.json.new && mv $B/config.json.new $B/config.json
if [ "${WATCH:-0}" = 1 ]; then
    ( while [ ! -e $W/watch.stop ]; do
          echo "$(date +%s.%N) $(ip netns exec s2b nft list tables 2>&1 | tr '\n' ' ')"
      done > "$OUT/watch-b.txt" ) &
    watch_pid=$!
fi
t2=$(date +%s.%N)
rrc=0
if [ "$rc" = 0 ]; then
    $RUNC --root $R "${criu_opt[@]}" restore -d --image-path $W/img --work-path $W/work --bundle $B $ID \
        </dev/null >/dev/null 2>"$OUT/runc-restore.err" || rrc=$?
fi
t3=$(date +%s.%N)
if [ -n "${watch_pid:-}" ]; then touch $W/watch.stop; wait "$watch_pid" || true; fi
ip netns exec s2b nft list ruleset > "$OUT/nft-b-after-restore.txt" 2>&1 || true
[ "$HOLD" = 1 ] && ip netns exec s2b nft delete table inet edgemig_hold
t4=$(date +%s.%N)
cp $W/work/restore.log "$OUT/" 2>/dev/null || true
ip netns exec s2b ss -tni > "$OUT/ss-b.txt" 2>&1 || true

wait "$client_pid" || true
client_pid=
rst=$(ip netns exec s2b nft list table inet edgemig_count | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
python3 - $W/client.json "$MODE" "$METHOD" "$HOLD" "$rc" "$rrc" "$t0" "$t1" "$t2" "$t3" "$t4" "${rst:-?}" <<'EOF'
import json, sys
path, mode, method, hold, rc, rrc, t0, t1, t2, t3, t4, rst = sys.argv[1:]
with open(path) as fh:
    result = json.load(fh)
result.update(mode=mode, method=method, hold=hold == "1", resets_sent_by_b=rst, checkpoint_rc=int(rc), restore_rc=int(rrc),
              dump_s=round(float(t1) - float(t0), 3), switch_s=round(float(t2) - float(t1), 3),
              restore_s=round(float(t3) - float(t2), 3), hold_off_s=round(float(t4) - float(t3), 3),
              dump_start=float(t0), hold_off_at=float(t4))
print(json.dumps(result))
sys.exit(1 if result["client_error"] else 0)
EOF
