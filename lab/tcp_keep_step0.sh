#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck shell=bash
#
# Step 0 of docs/connections.md's experiment plan: what CRIU does with the network namespace Docker's
# runc makes for a bridge container, on the path edge_migrate uses (dump through containerd's
# `ctr tasks checkpoint --exit`, restore through `docker start --checkpoint`), with the lab's CRIU
# configuration as it is (/etc/criu/runc.conf, read, never changed).
#
# A container of its own (default name conn-step0, the catalog's apache image, Docker's default bridge,
# no published port), never a catalog service: made on SOURCE, dumped there, created on TARGET, its
# checkpoint directory filled with the images and started from it. Both containers are removed at the
# end, the images with them. Keeps dump.log, restore.log and the two bundles' config.json in OUT and
# prints the lines the plan asks for. Lab only; run it under the lab's lock:
#
#   sudo flock /run/edgemig-lab.lock lab/tcp_keep_step0.sh SOURCE TARGET OUT
#   e.g. lab/tcp_keep_step0.sh edge1 edge3 /tmp/step0-e1e3
set -euo pipefail

SRC=${1:?source edge}
DST=${2:?target edge}
OUT=${3:?output dir}
NAME=${NAME:-conn-step0}
IMAGE=${IMAGE:-edgemig/apache:bookworm}
RUN=/run/edgemig-lab
STATE=/var/lib/edgemig-lab

dk() { /usr/bin/docker -H "unix://$RUN/$1/docker.sock" "${@:2}"; }
# containerd of an edge: socket, ctr, the runc shim's task dir (bundle, restore.log)
ctrd_sock() { if [ "$1" = edge3 ]; then echo "$RUN/edge3/containerd/containerd.sock"; else echo "$RUN/$1/docker/containerd/containerd.sock"; fi; }
ctr_bin() { if [ "$1" = edge3 ]; then echo "$STATE/edge3/prefix/usr/bin/ctr"; else echo /usr/bin/ctr; fi; }
task_dir() { if [ "$1" = edge3 ]; then echo "$RUN/edge3/containerd/state/io.containerd.runtime.v2.task/moby/$2";
             else echo "$RUN/$1/docker/containerd/daemon/io.containerd.runtime.v2.task/moby/$2"; fi; }

mkdir -p "$OUT"
work=$(mktemp -d /dev/shm/edgemig-step0.XXXXXX)
cleanup() {
    dk "$SRC" rm -f "$NAME" >/dev/null 2>&1 || true
    dk "$DST" rm -f "$NAME" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

dk "$SRC" run -d --name "$NAME" "$IMAGE" >/dev/null
sleep 2
sid=$(dk "$SRC" inspect -f '{{.Id}}' "$NAME")
echo "source $SRC: $(dk "$SRC" inspect -f '{{.State.Pid}} {{.NetworkSettings.IPAddress}} {{.NetworkSettings.MacAddress}}' "$NAME")"
cp "$(task_dir "$SRC" "$sid")/config.json" "$OUT/config.source.json"
nsenter -n -t "$(dk "$SRC" inspect -f '{{.State.Pid}}' "$NAME")" ip -d addr > "$OUT/source-netns.txt" 2>&1 || true
mkdir -p "$work/img" "$work/work"
t0=$(date +%s.%N)
"$(ctr_bin "$SRC")" --address "$(ctrd_sock "$SRC")" --namespace moby tasks checkpoint \
    --image-path "$work/img" --work-path "$work/work" --exit "$sid"
t1=$(date +%s.%N)
cp "$work/work/dump.log" "$OUT/dump.log"
ls -l "$work/img" > "$OUT/images.txt"
mkdir -p "$OUT/img-small"
find "$work/img" -maxdepth 1 -type f -size -64k ! -name 'pages-*' -exec cp {} "$OUT/img-small/" \;
echo "dump via ctr: $(echo "$t1 - $t0" | bc) s"

dk "$DST" create --name "$NAME" "$IMAGE" >/dev/null
did=$(dk "$DST" inspect -f '{{.Id}}' "$NAME")
ck="$STATE/$DST/docker/containers/$did/checkpoints/cp0"
mkdir -p "$ck"
cp -a "$work/img/." "$ck/"
t2=$(date +%s.%N)
dk "$DST" start --checkpoint cp0 "$NAME"
t3=$(date +%s.%N)
echo "restore via docker start --checkpoint: $(echo "$t3 - $t2" | bc) s"
echo "target $DST: $(dk "$DST" inspect -f '{{.State.Pid}} {{.NetworkSettings.IPAddress}} {{.NetworkSettings.MacAddress}}' "$NAME")"
td=$(task_dir "$DST" "$did")
# runc's work dir (restore.log, stats-restore) is the task dir under containerd's root, the bundle under its state
rl=$(find "$STATE/$DST" "$RUN/$DST" -path "*/io.containerd.runtime.v2.task/moby/$did/restore.log" 2>/dev/null | head -1)
echo "restore.log: $rl"
cp "$rl" "$OUT/restore.log"
cp "$td/config.json" "$OUT/config.target.json"
# the restored namespace as the target sees it
pid=$(dk "$DST" inspect -f '{{.State.Pid}}' "$NAME")
nsenter -n -t "$pid" ip -d addr > "$OUT/target-netns.txt" 2>&1 || true

pat='Will take net namespace|netns is external|Restoring link|Lock network|Unlock network|setup-namespaces|Restoring TCP|network-lock|external|Dumping netns|ns->ext|Mount ns|net ns|Network|tcp'
for f in dump.log restore.log; do
    echo "== $f (pattern hits)"
    grep -E "$pat" "$OUT/$f" | head -60 || true
done
for f in config.source.json config.target.json; do
    echo "== $f .linux.namespaces / hooks / annotations"
    jq -c '.linux.namespaces, (.hooks // {} | keys), (.annotations // {})' "$OUT/$f"
done
