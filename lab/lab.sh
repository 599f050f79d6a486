#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# The built-in lab: network namespaces edge1, edge2 and edge3 on a bridge in
# the root namespace, each with its own sshd and dockerd. edge1 and edge2 run
# the host's Docker 20.10; edge3 runs Debian 13's Docker 26 / containerd 1.7
# from a prefix of its own, started by lab/docker26.sh (EDGEMIG_LAB_EDGES=2
# leaves edge3 out of `up` and `status`; `down` takes down whatever is up).
# See docs/design.md ("Lab") for the names, addresses and paths.
#
#   lab.sh deps     install the Debian packages the lab needs (if missing)
#   lab.sh up       bring the lab up (idempotent)
#   lab.sh down     tear it down (idempotent, works on a half-up lab)
#   lab.sh status   show what is up
#
# Besides the edges, a container registry (Debian's docker-registry) runs in a
# namespace of its own, emigreg (10.213.0.5:5000, plain HTTP, trusted by the
# lab's dockerds only): catalog images pinned by digest are pulled from it.
set -euo pipefail

readonly STATE=/var/lib/edgemig-lab
readonly RUN=/run/edgemig-lab
readonly SSHDIR=$STATE/ssh
readonly KEY=$SSHDIR/id_ed25519
readonly AUTHKEYS=$SSHDIR/authorized_keys
readonly KNOWN_HOSTS=$SSHDIR/known_hosts
# Assigned first, then made readonly: `readonly X=$(...)` would hide a failing cd (SC2155).
SHIM_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lab-prlimit-shim.c
readonly SHIM_SRC
readonly SHIM=$STATE/lib/lab-prlimit-shim.so
readonly BRIDGE=emigbr0
readonly BRIDGE_ADDR=10.213.0.1/24
readonly SUBNET=10.213.0.0/24
# Every edge the lab knows (down cleans all of them); the ones `up` brings up.
readonly ALL_EDGES=(edge1 edge2 edge3)
case ${EDGEMIG_LAB_EDGES:-3} in
  2) EDGES=(edge1 edge2) ;;
  3) EDGES=("${ALL_EDGES[@]}") ;;
  *) echo "lab: EDGEMIG_LAB_EDGES must be 2 or 3" >&2; exit 2 ;;
esac
readonly EDGES
readonly IPT_COMMENT=edgemig-lab
readonly DOCKER=/usr/bin/docker   # the 20.10 client matching the daemon
readonly DAEMON_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
readonly REGISTRY_NS=emigreg
readonly REGISTRY_IP=10.213.0.5
readonly REGISTRY=$REGISTRY_IP:5000
readonly REGISTRY_VETH=emig-regh
# The shellcheck package: for ansible-test sanity's shellcheck test (make sanity refuses to run without it).
readonly DEPS=(docker.io openssh-server iproute2 nftables iptables gcc libc6-dev
  iputils-arping apache2-utils curl mmdebstrap rsync ethtool util-linux docker-registry shellcheck)

# Per-edge facts: index 1, 2 or 3.
edge_idx() { echo "${1#edge}"; }
edge_ip() { echo "10.213.0.1$(edge_idx "$1")"; }
edge_veth() { echo "emig-e$(edge_idx "$1")h"; }
edge_bip() { echo "172.30.$(edge_idx "$1").1/24"; }
edge_sock() { echo "$RUN/$1/docker.sock"; }
edge_cgroup() { echo "/edgemig-lab/$1"; }
# The Docker 26 edge: its daemons, prefix and .deb cache are lab/docker26.sh's.
edge_is_d26() { [ "$1" = edge3 ]; }
readonly D26_SH=${SHIM_SRC%/*}/docker26.sh
d26() {
  local e=$1
  shift
  D26_NS=$e D26_BASE=$STATE/$e D26_RUN=$RUN/$e D26_DEBS=$STATE/debs D26_CGROUP_PARENT=$(edge_cgroup "$e") \
    D26_BIP=$(edge_bip "$e") D26_INSECURE_REGISTRY=$REGISTRY bash "$D26_SH" "$@"
}

# pid_alive, pidfile_pid, exec_without_fds, wait_gone (shared with docker26.sh)
# shellcheck source=lab/procutil.sh
. "$(dirname "${BASH_SOURCE[0]}")/procutil.sh"

log() { printf 'lab: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

# ---------------------------------------------------------------- deps
cmd_deps() {
  need_root
  local missing=() p
  for p in "${DEPS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "deps: all present"
    return 0
  fi
  log "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

check_tools() {
  local c missing=()
  for c in ip iptables nft ethtool nsenter setsid ssh ssh-keygen /usr/sbin/sshd dockerd "$DOCKER" gcc \
    /usr/bin/docker-registry; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: run '$0 deps' first"
}

# ---------------------------------------------------------------- helpers
ns_exists() { [ -e "/var/run/netns/$1" ]; }

# True if pid runs in the network namespace of edge.
pid_in_ns() {
  local pid=$1 edge=$2
  [ "$(stat -Lc %i "/proc/$pid/ns/net" 2>/dev/null)" = "$(stat -Lc %i "/var/run/netns/$edge" 2>/dev/null)" ]
}

docker_ok() { timeout 5 "$DOCKER" -H "unix://$(edge_sock "$1")" version >/dev/null 2>&1; }

tcp_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# Write $2 to $1 only if it differs; return 0 if the file changed.
write_if_changed() {
  local file=$1 content=$2 mode=${3:-0644}
  if [ -f "$file" ] && [ "$(cat "$file")" = "$content" ]; then
    return 1
  fi
  local tmp
  tmp=$(mktemp "$file.XXXXXX")
  printf '%s\n' "$content" >"$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$file"
  return 0
}

# ---------------------------------------------------------------- up
setup_dirs() {
  install -d -m 0755 -o root -g root "$STATE" "$STATE/lib" "$RUN" /run/sshd
  install -d -m 0700 -o root -g root "$SSHDIR"
  local e
  for e in "${EDGES[@]}"; do
    install -d -m 0755 -o root -g root "$STATE/$e" "$RUN/$e"
  done
}

build_shim() {
  if [ -f "$SHIM" ] && [ ! "$SHIM_SRC" -nt "$SHIM" ]; then
    return 0
  fi
  log "building $SHIM"
  local tmp
  tmp=$(mktemp "$SHIM.XXXXXX")
  gcc -O2 -Wall -Wextra -fPIC -shared -o "$tmp" "$SHIM_SRC" -ldl
  chmod 0755 "$tmp"
  mv -f "$tmp" "$SHIM"
}

setup_keys() {
  if [ ! -f "$KEY" ]; then
    log "generating $KEY"
    ssh-keygen -q -t ed25519 -N '' -C edgemig-lab -f "$KEY"
  fi
  write_if_changed "$AUTHKEYS" "$(cat "$KEY.pub")" 0600 || true
  local e hk lines=()
  for e in "${EDGES[@]}"; do
    hk=$STATE/$e/ssh_host_ed25519_key
    [ -f "$hk" ] || ssh-keygen -q -t ed25519 -N '' -C "edgemig-lab-$e" -f "$hk"
    lines+=("$(edge_ip "$e"),$e $(cut -d' ' -f1-2 "$hk.pub")")
  done
  write_if_changed "$KNOWN_HOSTS" "$(printf '%s\n' "${lines[@]}")" 0644 || true
}

# A namespace on the lab bridge: veth $2 on the host side, eth0 with
# address $3/24 inside namespace $1 (made if missing; idempotent).
ns_on_bridge() {
  local ns=$1 veth=$2 addr=$3
  ns_exists "$ns" || ip netns add "$ns"
  if ! ip link show "$veth" >/dev/null 2>&1 || ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
    ip link del "$veth" 2>/dev/null || true
    ip -n "$ns" link del eth0 2>/dev/null || true
    ip link add "$veth" type veth peer name eth0 netns "$ns"
  fi
  ip link set "$veth" master "$BRIDGE"
  ip link set "$veth" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr replace "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
}

setup_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$BRIDGE_ADDR" dev "$BRIDGE"
  ip link set "$BRIDGE" up

  local e veth
  for e in "${EDGES[@]}"; do
    veth=$(edge_veth "$e")
    ns_on_bridge "$e" "$veth" "$(edge_ip "$e")"
    ip -n "$e" route replace "$SUBNET" dev eth0 src "$(edge_ip "$e")"
    # Per-frame loss emulation needs real frames, not GSO super-packets.
    ip netns exec "$e" ethtool -K eth0 tso off gso off gro off >/dev/null 2>&1 || true
    ethtool -K "$veth" tso off gso off gro off >/dev/null 2>&1 || true
  done

  ns_on_bridge "$REGISTRY_NS" "$REGISTRY_VETH" "$REGISTRY_IP"

  # br_netfilter: bridged frames traverse the root namespace's FORWARD chain,
  # whose policy may be DROP (set by a Docker daemon there).
  local dir
  for dir in -i -o; do
    iptables -C FORWARD "$dir" "$BRIDGE" -m comment --comment "$IPT_COMMENT" -j ACCEPT 2>/dev/null ||
      iptables -I FORWARD 1 "$dir" "$BRIDGE" -m comment --comment "$IPT_COMMENT" -j ACCEPT
  done
}

sshd_config() {
  local e=$1
  cat <<EOF
# edgemig lab sshd for $e (generated by lab/lab.sh)
ListenAddress $(edge_ip "$e"):22
HostKey $STATE/$e/ssh_host_ed25519_key
PidFile $RUN/$e/sshd.pid
# The lab's own key (Ansible, root) and this edge's file, where the migration_trust
# role authorises the other edges' migration keys for the receiver only.
AuthorizedKeysFile $AUTHKEYS $STATE/$e/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
PrintMotd no
UseDNS no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
EOF
}


start_sshd() {
  # Two locals: in one, cfg would be built from the caller's $e, not this one (SC2318).
  local e=$1
  local cfg=$STATE/$e/sshd_config pid changed=0
  write_if_changed "$cfg" "$(sshd_config "$e")" 0644 && changed=1
  /usr/sbin/sshd -t -f "$cfg"
  pid=$(pidfile_pid "$RUN/$e/sshd.pid")
  if pid_alive "$pid" && pid_in_ns "$pid" "$e"; then
    if [ "$changed" = 1 ]; then
      kill -HUP "$pid"
    fi
    return 0
  fi
  # nsenter keeps the root mount namespace (ip netns exec would give sshd a
  # private one): mounts made over ssh (dump tmpfs) must be seen by dockerd.
  ( exec_without_fds nsenter --net="/var/run/netns/$e" /usr/sbin/sshd -f "$cfg" )
}

# Docker 20.10 moves every checkpoint through the containerd it starts: the
# images are written to a temporary directory (containerd's $TMPDIR), packed
# into its content store and unpacked again. Both on tmpfs: process memory
# never touches the disk, and no fsync of the images inside the downtime.
# The lab's version of what the docker_engine role does on a real edge.
edge_ctd_tmp() { echo "$RUN/$1/containerd-tmp"; }
edge_ctd_content() { echo "$STATE/$1/docker/containerd/daemon/io.containerd.content.v1.content"; }
containerd_scratch_on_tmpfs() {
  local e=$1 d
  for d in "$(edge_ctd_tmp "$e")" "$(edge_ctd_content "$e")"; do
    install -d -m 0700 "$d"
    mountpoint -q "$d" || mount -t tmpfs -o mode=0700,size=2g,nosuid,nodev tmpfs "$d"
  done
}

start_dockerd() {
  local e=$1 pid
  if edge_is_d26 "$e"; then
    # Idempotent, waits until the daemon answers; a tmpfs on $RUN/$e: before sshd's pid file.
    d26 "$e" up
    return 0
  fi
  pid=$(pidfile_pid "$RUN/$e/docker.pid")
  if pid_alive "$pid" && pid_in_ns "$pid" "$e"; then
    return 0
  fi
  rm -f "$RUN/$e/docker.pid" "$(edge_sock "$e")"
  install -d -m 0710 "$STATE/$e/docker"
  containerd_scratch_on_tmpfs "$e"
  # nsenter, not ip netns exec: the latter remounts /sys and dockerd then
  # dies with "Devices cgroup isn't mounted".
  exec_without_fds nsenter --net="/var/run/netns/$e" \
    env -i PATH="$DAEMON_PATH" HOME=/root LANG=C.UTF-8 TMPDIR="$(edge_ctd_tmp "$e")" \
    setsid dockerd --experimental \
      --data-root "$STATE/$e/docker" \
      --exec-root "$RUN/$e/docker" \
      --pidfile "$RUN/$e/docker.pid" \
      -H "unix://$(edge_sock "$e")" \
      --bip "$(edge_bip "$e")" \
      --storage-driver overlay2 \
      --cgroup-parent "$(edge_cgroup "$e")" \
      --insecure-registry "$REGISTRY" \
      >>"$STATE/$e/dockerd.log" 2>&1 </dev/null &
  disown
}

registry_config() {
  cat <<EOF
# edgemig lab registry (generated by lab/lab.sh)
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
}

start_registry() {
  local cfg=$STATE/registry.yml pid
  install -d -m 0700 "$STATE/registry"
  write_if_changed "$cfg" "$(registry_config)" 0644 || true
  pid=$(pidfile_pid "$RUN/registry.pid")
  if pid_alive "$pid" && pid_in_ns "$pid" "$REGISTRY_NS"; then
    return 0
  fi
  exec_without_fds nsenter --net="/var/run/netns/$REGISTRY_NS" \
    env -i PATH="$DAEMON_PATH" HOME=/root \
    setsid /usr/bin/docker-registry serve "$cfg" \
      >>"$STATE/registry.log" 2>&1 </dev/null &
  echo $! >"$RUN/registry.pid"
  disown
}

registry_ok() { ip netns exec "$REGISTRY_NS" timeout 1 bash -c "exec 3<>/dev/tcp/$REGISTRY_IP/5000" 2>/dev/null; }

wait_for() {
  local what=$1 tries=$2
  shift 2
  local i
  for ((i = 0; i < tries; i++)); do
    "$@" && return 0
    sleep 0.2
  done
  die "$what did not come up (see logs under $STATE)"
}

cmd_up() {
  need_root
  check_tools
  local t0 e
  t0=$(now)
  setup_dirs
  build_shim
  setup_keys
  setup_network
  for e in "${EDGES[@]}"; do
    start_dockerd "$e"
    start_sshd "$e"
  done
  start_registry
  for e in "${EDGES[@]}"; do
    wait_for "sshd on $e" 50 tcp_open "$(edge_ip "$e")" 22
    wait_for "dockerd on $e" 150 docker_ok "$e"
  done
  wait_for "registry at $REGISTRY" 50 registry_ok
  log "up in $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s"
}

# ---------------------------------------------------------------- down
# All descendants of the given pids (not including them).
descendants() {
  local -A kids=()
  local stat pid ppid rest
  for stat in /proc/[0-9]*/stat; do
    read -r pid rest 2>/dev/null <"$stat" || continue
    rest=${rest##*) }
    read -r _ ppid _ <<<"$rest"
    kids[$ppid]+="$pid "
  done
  local queue=("$@") out=() p c
  while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    for c in ${kids[$p]:-}; do
      out+=("$c")
      queue+=("$c")
    done
  done
  echo "${out[@]:-}"
}


cgroup_pids() {
  local e=$1
  cat /sys/fs/cgroup/*"$(edge_cgroup "$e")"/cgroup.procs \
    /sys/fs/cgroup/*"$(edge_cgroup "$e")"/*/cgroup.procs 2>/dev/null | sort -u || true
}

# Containers are thrown away with the data roots: kill them outright (a
# graceful stop waits 10 s for every PID 1 that ignores SIGTERM), then stop
# the dockerds gracefully, all edges at once.
stop_dockerds() {
  local e pid pids=()
  for e in "${ALL_EDGES[@]}"; do
    # shellcheck disable=SC2207
    pids+=($(cgroup_pids "$e"))
  done
  [ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null || true
  pids=()
  for e in "${ALL_EDGES[@]}"; do
    pid=$(pidfile_pid "$RUN/$e/docker.pid")
    pid_alive "$pid" && pids+=("$pid")
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait_gone 100 "${pids[@]}" || kill -KILL "${pids[@]}" 2>/dev/null || true
}

# Then everything left in an edge's namespace (sshd, containerd, shims),
# their children, and any container process left in the edge's cgroup.
stop_edge() {
  local e=$1 pid pids=()
  if ns_exists "$e"; then
    mapfile -t pids < <(ip netns pids "$e" 2>/dev/null || true)
  fi
  pid=$(pidfile_pid "$RUN/$e/sshd.pid")
  pid_alive "$pid" && pids+=("$pid")
  # shellcheck disable=SC2207
  pids+=($(descendants "${pids[@]}") $(cgroup_pids "$e"))
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait_gone 20 "${pids[@]}" || kill -KILL "${pids[@]}" 2>/dev/null || true
    wait_gone 30 "${pids[@]}" || log "warning: pids still alive in $e: ${pids[*]}"
  fi
}

stop_registry() {
  local pid pids=()
  pid=$(pidfile_pid "$RUN/registry.pid")
  pid_alive "$pid" && pids+=("$pid")
  if ns_exists "$REGISTRY_NS"; then
    mapfile -t -O "${#pids[@]}" pids < <(ip netns pids "$REGISTRY_NS" 2>/dev/null || true)
  fi
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait_gone 30 "${pids[@]}" || kill -KILL "${pids[@]}" 2>/dev/null || true
}

unmount_lab() {
  local i mp mps
  for ((i = 0; i < 5; i++)); do
    # Mount points under the lab dirs, deepest (latest) first.
    mapfile -t mps < <(awk -v s="$STATE/" -v r="$RUN" \
      'index($5, s) == 1 || $5 == r || index($5, r "/") == 1 { print $5 }' \
      /proc/self/mountinfo | tac)
    [ ${#mps[@]} -eq 0 ] && return 0
    for mp in "${mps[@]}"; do
      mp=$(printf '%b' "$mp")   # mountinfo escapes blanks as \040
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done
  done
  log "warning: could not unmount everything under $STATE / $RUN"
}

cmd_down() {
  need_root
  local t0 e s veth dir table
  t0=$(now)
  # ssh ControlMaster processes of Ansible runs against the lab.
  for s in "$RUN"/cm-*; do
    if [ -S "$s" ]; then
      timeout 3 ssh -o ControlPath="$s" -O exit lab >/dev/null 2>&1 || true
    fi
  done
  for e in "${ALL_EDGES[@]}"; do
    # Docker 26's containerd is not dockerd's child: docker26.sh stops its own.
    if edge_is_d26 "$e" && { ns_exists "$e" || [ -d "$RUN/$e" ]; }; then d26 "$e" down; fi
  done
  stop_dockerds
  for e in "${ALL_EDGES[@]}"; do
    stop_edge "$e"
  done
  stop_registry
  unmount_lab
  # Empty cgroups left by killed containers.
  find /sys/fs/cgroup/*/edgemig-lab -depth -type d -exec rmdir {} + 2>/dev/null || true
  for e in "${ALL_EDGES[@]}"; do
    ns_exists "$e" && ip netns del "$e"
    veth=$(edge_veth "$e")
    ip link show "$veth" >/dev/null 2>&1 && ip link del "$veth"
  done
  ns_exists "$REGISTRY_NS" && ip netns del "$REGISTRY_NS"
  ip link show "$REGISTRY_VETH" >/dev/null 2>&1 && ip link del "$REGISTRY_VETH"
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
  for dir in -i -o; do
    while iptables -D FORWARD "$dir" "$BRIDGE" -m comment --comment "$IPT_COMMENT" -j ACCEPT 2>/dev/null; do :; done
  done
  # Root-namespace qdiscs on lab links go with the links; nft tables do not.
  nft list tables 2>/dev/null | while read -r _ fam table; do
    case $table in edgemig*) nft delete table "$fam" "$table" || true ;; esac
  done
  for e in "${ALL_EDGES[@]}"; do
    rm -rf --one-file-system "${STATE:?}/$e/docker" "${STATE:?}/$e/containerd"
  done
  rm -rf --one-file-system "${STATE:?}/registry"
  rm -rf --one-file-system "${RUN:?}"
  log "down in $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s"
}

# ---------------------------------------------------------------- status
cmd_status() {
  local e pid up=0
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    echo "bridge $BRIDGE: $(ip -br addr show "$BRIDGE" | awk '{print $2, $3}')"
  else
    echo "bridge $BRIDGE: absent"
  fi
  for e in "${EDGES[@]}"; do
    if ! ns_exists "$e"; then
      echo "$e: no namespace"
      continue
    fi
    echo "$e: netns, eth0 $(ip -n "$e" -br addr show eth0 2>/dev/null | awk '{print $2, $3}')"
    pid=$(pidfile_pid "$RUN/$e/sshd.pid")
    if pid_alive "$pid"; then echo "  sshd    pid $pid on $(edge_ip "$e"):22"; else echo "  sshd    down"; fi
    pid=$(pidfile_pid "$RUN/$e/docker.pid")
    if pid_alive "$pid" && docker_ok "$e"; then
      echo "  dockerd pid $pid at unix://$(edge_sock "$e") (Docker $("$DOCKER" -H "unix://$(edge_sock "$e")" version -f '{{.Server.Version}}'), $("$DOCKER" -H "unix://$(edge_sock "$e")" ps -q | wc -l) running containers)"
      up=$((up + 1))
    else
      echo "  dockerd down"
    fi
  done
  pid=$(pidfile_pid "$RUN/registry.pid")
  if pid_alive "$pid"; then echo "registry pid $pid at $REGISTRY"; else echo "registry down"; fi
  echo "key:   $KEY $([ -f "$KEY" ] && echo present || echo absent)"
  echo "shim:  $SHIM $([ -f "$SHIM" ] && echo present || echo absent)"
  [ "$up" = "${#EDGES[@]}" ]
}

case ${1:-} in
  deps) cmd_deps ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 {deps|up|down|status}" >&2
    exit 2
    ;;
esac
