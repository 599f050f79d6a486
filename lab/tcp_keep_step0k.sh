#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck shell=bash
#
# Step 0 with the keep options, through Docker 26 (edge3) only: tcp_keep_step0.sh's dump/restore path
# (ctr tasks checkpoint --exit, docker start --checkpoint) for a container made with the OCI
# annotation org.criu.config naming a keep file (tcp-established, skip-in-flight, file-locks,
# network-lock METHOD), restored on the same edge into a new container created with the same
# annotation (H2: does Docker 26 put it into the bundle of a checkpoint start?). Docker's default
# bridge gives the new container the address the old one released, so an established connection can
# be restored (no NAT in between: the client runs in edge3's own namespace and talks to the
# container's bridge address). The client sends an HTTP/1.1 keep-alive GET every 20 ms on one
# connection (a new one when Apache closes it after MaxKeepAliveRequests, counted as server_closes)
# and records the longest wait and any error (H4: a segment that reaches the plumbed
# interface before CRIU's restore lock is answered with a reset).
#
# Containers of its own (conn-step0k, conn-step0k-r), never a catalog service; both removed at the end,
# the keep file with them. Lab only; run under the lab's lock:
#
#   sudo flock /run/edgemig-lab.lock lab/tcp_keep_step0k.sh OUT [SECONDS]
#   PROBE=1: from the dump's end, a connect (SYN) to the container's address every 5 ms for 1.5 s, each
#            classified (refused = a reset came back: the interface is up, nothing listens and no
#            lock drops it; connected; timeout 1 s; unreachable), into OUT/probe.json
set -euo pipefail

OUT=${1:?output dir}
SECONDS_RUN=${2:-8}
METHOD=${METHOD:-nftables}
EDGE=edge3
NAME=conn-step0k
IMAGE=${IMAGE:-edgemig/apache:bookworm}
RUN=/run/edgemig-lab
STATE=/var/lib/edgemig-lab
DOCKER26=$STATE/edge3/prefix/usr/bin/docker
CTR=$STATE/edge3/prefix/usr/bin/ctr
CTRD=$RUN/edge3/containerd/containerd.sock
K=/run/edgemig-step0k

dk() { "$DOCKER26" -H "unix://$RUN/$EDGE/docker.sock" "$@"; }
task_root() { echo "$STATE/edge3/containerd/io.containerd.runtime.v2.task/moby/$1"; }
task_state() { echo "$RUN/edge3/containerd/state/io.containerd.runtime.v2.task/moby/$1"; }

[ ! -e $K ] || { echo "$K exists: an earlier run not cleaned up?" >&2; exit 2; }
mkdir -p "$OUT" $K/img $K/work
cleanup() {
    set +e
    kill "${client_pid:-}" "${monitor_pid:-}" 2>/dev/null
    dk rm -f "$NAME" "$NAME-r" >/dev/null 2>&1
    rm -rf $K
}
trap cleanup EXIT
printf '%s\n' tcp-established skip-in-flight file-locks "network-lock $METHOD" > $K/keep.conf

dk run -d --name "$NAME" --annotation org.criu.config=$K/keep.conf "$IMAGE" >/dev/null
sleep 2
sid=$(dk inspect -f '{{.Id}}' "$NAME")
ip1=$(dk inspect -f '{{.NetworkSettings.IPAddress}}' "$NAME")
mac1=$(dk inspect -f '{{.NetworkSettings.MacAddress}}' "$NAME")
jq -c '.annotations' "$(task_state "$sid")/config.json" > "$OUT/annotations.source.json"

cat >$K/client.py <<'EOF'
import http.client, json, sys, time
addr, run_s, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection(addr, 80, timeout=10)
longest, at, n, error, last, closes = 0.0, None, 0, None, time.monotonic(), 0
end = last + run_s
try:
    while time.monotonic() < end:
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        if r.status != 200:
            error = f"status {r.status}"
            break
        if r.will_close:  # Apache's MaxKeepAliveRequests (100): a graceful close, a new connection
            closes += 1
            c.close()
            c = http.client.HTTPConnection(addr, 80, timeout=10)
        now = time.monotonic()
        if now - last > longest:
            longest, at = now - last, time.time()
        last, n = now, n + 1
        time.sleep(0.02)
except (OSError, http.client.HTTPException) as exc:
    error = f"{type(exc).__name__}: {exc}"
with open(out, "w") as fh:
    json.dump({"requests": n, "server_closes": closes, "longest_gap_s": round(longest, 3), "longest_gap_end": at, "client_error": error}, fh)
EOF
ip netns exec $EDGE python3 $K/client.py "$ip1" "$SECONDS_RUN" $K/client.json &
client_pid=$!
sleep 1.5

# edge3's neighbour and link events through the move (read only), with time stamps
ip -n $EDGE -ts monitor neigh link > "$OUT/monitor.txt" 2>&1 &
monitor_pid=$!
t0=$(date +%s.%N)
"$CTR" --address $CTRD --namespace moby tasks checkpoint --image-path $K/img --work-path $K/work --exit "$sid"
t1=$(date +%s.%N)
cp $K/work/dump.log "$OUT/dump.log"
ip -n $EDGE neigh show "$ip1" > "$OUT/neigh-after-dump.txt"
if [ "${PROBE:-0}" = 1 ]; then
    cat >$K/probe.py <<'EOF'
import errno, json, select, socket, sys, time
addr, out = sys.argv[1], sys.argv[2]
start = time.time()
pending, done = {}, []
next_at = start
while time.time() < start + 2.6:
    now = time.time()
    if now >= next_at and now < start + 1.5:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((addr, 80))
        pending[s] = now
        next_at += 0.005
    if pending:
        _, w, _ = select.select([], list(pending), [], 0.001)
        for s in w:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            done.append((pending.pop(s), time.time(), errno.errorcode.get(err, "ok") if err else "ok"))
            s.close()
    else:
        time.sleep(0.001)
    for s, t in list(pending.items()):
        if time.time() - t > 1.0:
            done.append((t, time.time(), "timeout"))
            pending.pop(s).close()
done.sort()
with open(out, "w") as fh:
    json.dump(done, fh)
EOF
    ip netns exec $EDGE python3 $K/probe.py "$ip1" "$OUT/probe.json" &
    probe_pid=$!
fi
dk create --name "$NAME-r" --annotation org.criu.config=$K/keep.conf "$IMAGE" >/dev/null
did=$(dk inspect -f '{{.Id}}' "$NAME-r")
ck="$STATE/$EDGE/docker/containers/$did/checkpoints/cp0"
mkdir -p "$ck"
cp -a $K/img/. "$ck/"
t2=$(date +%s.%N)
rrc=0
dk start --checkpoint cp0 "$NAME-r" 2>"$OUT/start.err" || rrc=$?
t3=$(date +%s.%N)
ip2=$(dk inspect -f '{{.NetworkSettings.IPAddress}}' "$NAME-r")
mac2=$(dk inspect -f '{{.NetworkSettings.MacAddress}}' "$NAME-r")
cp "$(task_root "$did")/restore.log" "$OUT/restore.log" 2>/dev/null || true
jq -c '.annotations' "$(task_state "$did")/config.json" > "$OUT/annotations.target.json" 2>/dev/null || true

wait "$client_pid" || true
client_pid=
[ -z "${probe_pid:-}" ] || wait "$probe_pid" || true
kill "$monitor_pid" 2>/dev/null || true
python3 - $K/client.json "$METHOD" "$rrc" "$ip1" "$mac1" "$ip2" "$mac2" "$t0" "$t1" "$t2" "$t3" <<'EOF'
import json, sys
path, method, rrc, ip1, mac1, ip2, mac2, t0, t1, t2, t3 = sys.argv[1:]
with open(path) as fh:
    result = json.load(fh)
result.update(method=method, restore_rc=int(rrc), source=[ip1, mac1], target=[ip2, mac2],
              dump_s=round(float(t1) - float(t0), 3), between_s=round(float(t2) - float(t1), 3),
              restore_s=round(float(t3) - float(t2), 3), dump_start=float(t0), restore_end=float(t3))
print(json.dumps(result))
sys.exit(1 if result["client_error"] else 0)
EOF
