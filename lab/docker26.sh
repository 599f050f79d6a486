#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# A Docker 26 edge beside the lab: Debian 13 (trixie)'s docker.io 26.1.5 and
# containerd 1.7.24, unpacked into a prefix of their own (the host's packages,
# libc and the lab stay as they are), started in a network namespace of their
# own (loopback only, no bridge), with the host's runc 1.1.5 (trixie's needs
# glibc 2.38) and the criu on PATH. See docs/docker26.md.
#
#   docker26.sh up       download (once, cached), unpack and start (idempotent)
#   docker26.sh down     stop everything, unmount, delete the namespace and state
#   docker26.sh status   what runs; exit 0 when the daemon answers
#   docker26.sh env      print DOCKER_HOST=... and the client/ctr paths for a shell
#   docker26.sh image    import the test image emig/bb:1 (static busybox, all root:
#                        no rlimit shim needed) into the running daemon
#
# Standalone (the defaults), nothing here touches edge1/edge2, emigbr0,
# /var/lib/edgemig-lab or /run/edgemig-lab. Overridable: D26_NS, D26_BASE,
# D26_RUN, D26_DEBS, D26_CGROUP_PARENT, and D26_BIP: with it the daemon gets a
# bridge of its own (--bip, iptables in its namespace, D26_INSECURE_REGISTRY
# trusted) instead of --bridge=none. lab/lab.sh runs the lab's edge3 this way
# (its namespace on emigbr0 and its sshd are lab.sh's): one way to run Docker 26.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
# pid_alive, pidfile_pid, exec_without_fds, wait_gone
# shellcheck source=lab/procutil.sh
. "$HERE/procutil.sh"
readonly NS=${D26_NS:-d26}
readonly BASE=${D26_BASE:-/var/lib/edgemig-d26}
readonly RUN=${D26_RUN:-/run/edgemig-d26}
readonly DEBS=${D26_DEBS:-$HERE/../.cache/debs}
readonly PREFIX=$BASE/prefix
readonly SUITE=trixie
readonly MIRROR=${D26_MIRROR:-http://deb.debian.org/debian}
# Minimum versions (trixie's at the time of writing; a point release may be newer).
readonly PKGS=("docker.io:26.1" "containerd:1.7" "docker-cli:26.1" "tini:0.19")
readonly TEST_IMAGE=emig/bb:1
readonly CTD_SOCK=$RUN/containerd/containerd.sock
readonly SOCK=$RUN/docker.sock
readonly CGROUP_PARENT=${D26_CGROUP_PARENT:-/edgemig-d26}
readonly BIP=${D26_BIP:-}
readonly INSECURE_REGISTRY=${D26_INSECURE_REGISTRY:-}
readonly DAEMON_PATH=$PREFIX/usr/bin:$PREFIX/usr/sbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
readonly DOCKER=$PREFIX/usr/bin/docker
readonly CTR=$PREFIX/usr/bin/ctr

log() { printf 'docker26: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

ns_exists() { [ -e "/var/run/netns/$NS" ]; }
pid_in_ns() { [ "$(stat -Lc %i "/proc/$1/ns/net" 2>/dev/null)" = "$(stat -Lc %i "/var/run/netns/$NS" 2>/dev/null)" ]; }
docker_ok() { timeout 5 "$DOCKER" -H "unix://$SOCK" version >/dev/null 2>&1; }
ctd_ok() { timeout 5 "$CTR" --address "$CTD_SOCK" version >/dev/null 2>&1; }


wait_for() {
  local what=$1 tries=$2 i
  shift 2
  for ((i = 0; i < tries; i++)); do
    "$@" && return 0
    sleep 0.2
  done
  die "$what did not come up (logs: $BASE/*.log)"
}

# ---------------------------------------------------------------- packages
# The .debs of trixie, cached: a temporary source list of our own (never the
# system's), lists in a temporary dir, both removed afterwards.
deb_of() { compgen -G "$DEBS/${1}_*_amd64.deb" | sort -V | tail -1 || true; }

fetch_debs() {
  local missing=() spec pkg
  for spec in "${PKGS[@]}"; do
    pkg=${spec%%:*}
    [ -n "$(deb_of "$pkg")" ] || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "downloading ${missing[*]} from $SUITE"
  local tmp
  tmp=$(mktemp -d /tmp/edgemig-d26-apt.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$DEBS"
  echo "deb $MIRROR $SUITE main" >"$tmp/sources.list"
  local apt=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$tmp/lists"
    -o "Dir::Cache=$tmp/cache" -o Dir::State::status=/dev/null -o APT::Sandbox::User=root)
  apt-get -qq "${apt[@]}" update
  (cd "$DEBS" && apt-get -qq "${apt[@]}" download "${missing[@]}")
}

check_versions() {
  local spec pkg min deb ver
  for spec in "${PKGS[@]}"; do
    pkg=${spec%%:*} min=${spec#*:}
    deb=$(deb_of "$pkg")
    [ -n "$deb" ] || die "no .deb of $pkg in $DEBS"
    ver=$(dpkg-deb -f "$deb" Version)
    dpkg --compare-versions "$ver" ge "$min" || die "$pkg $ver is older than $min"
  done
}

# The test image: busybox-static (the host's suite) and a loop that keeps a counter
# and ~8 MB of random data in its shell's memory, printing the counter every 0.2 s.
cmd_image() {
  need_root
  docker_ok || die "dockerd is not up: $0 up"
  if "$DOCKER" -H "unix://$SOCK" image inspect "$TEST_IMAGE" >/dev/null 2>&1; then return 0; fi
  local deb root
  deb=$(deb_of busybox-static)
  if [ -z "$deb" ]; then
    mkdir -p "$DEBS"
    (cd "$DEBS" && apt-get -qq -o APT::Sandbox::User=root download busybox-static)
    deb=$(deb_of busybox-static)
  fi
  root=$(mktemp -d /tmp/edgemig-d26-rootfs.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$root'" RETURN
  mkdir -p "$root/bin" "$root/tmp"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -O ./bin/busybox >"$root/bin/busybox"
  chmod 0755 "$root/bin/busybox"
  for a in sh sleep cat echo head base64 ls; do ln -s busybox "$root/bin/$a"; done
  cat >"$root/loop.sh" <<'EOF'
#!/bin/sh
x=$(head -c 6000000 /dev/urandom | base64)
i=0
while :; do i=$((i+1)); echo "$i ${#x}"; sleep 0.2; done
EOF
  chmod 0755 "$root/loop.sh"
  tar -C "$root" -c . | "$DOCKER" -H "unix://$SOCK" import --change 'CMD ["/loop.sh"]' - "$TEST_IMAGE" >/dev/null
  log "imported $TEST_IMAGE"
}

# Unpacked once per set of .debs (a stamp names them).
unpack() {
  local stamp=$PREFIX/.debs want spec
  want=$(for spec in "${PKGS[@]}"; do basename "$(deb_of "${spec%%:*}")"; done)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$PREFIX/usr/sbin/dockerd" ]; then
    return 0
  fi
  log "unpacking into $PREFIX"
  rm -rf --one-file-system "${PREFIX:?}"
  install -d -m 0755 "$PREFIX"
  for spec in "${PKGS[@]}"; do dpkg -x "$(deb_of "${spec%%:*}")" "$PREFIX"; done
  # Trixie's runc is not unpacked: it needs glibc 2.38; the host's runc serves.
  printf '%s\n' "$want" >"$stamp"
}

# ---------------------------------------------------------------- up
containerd_config() {
  cat <<EOF
# containerd 1.7 of the Docker 26 edge (generated by lab/docker26.sh)
version = 2
root = "$BASE/containerd"
state = "$RUN/containerd/state"
[grpc]
  address = "$CTD_SOCK"
[ttrpc]
  address = "$CTD_SOCK.ttrpc"
[debug]
  address = "$RUN/containerd/debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  disable_cgroup = true
[plugins."io.containerd.internal.v1.opt"]
  path = "$BASE/containerd/opt"
EOF
}

setup_dirs() {
  install -d -m 0711 "$BASE" "$RUN"
  # Sockets, exec root, containerd's state and temp dir on one tmpfs; the content
  # store too (checkpoints pass through it): no process memory on the disk.
  mountpoint -q "$RUN" || mount -t tmpfs -o mode=0711,size=2g,nosuid,nodev tmpfs "$RUN"
  install -d -m 0700 "$RUN/containerd" "$RUN/tmp" "$BASE/containerd" "$BASE/docker"
  local content=$BASE/containerd/io.containerd.content.v1.content
  install -d -m 0700 "$content"
  mountpoint -q "$content" || mount -t tmpfs -o mode=0700,size=2g,nosuid,nodev tmpfs "$content"
  containerd_config >"$BASE/containerd.toml"
  echo '{}' >"$BASE/daemon.json"   # never /etc/docker/daemon.json
}

setup_ns() {
  ns_exists || ip netns add "$NS"
  ip -n "$NS" link set lo up
}

# A daemon of ours that runs in the namespace and still has its socket: left alone. One
# whose socket is gone (its run dir was removed under it, e.g. by a teardown that did not
# know it) is stopped, to be started afresh.
running_here() {
  local pid=$1 sock=$2
  pid_alive "$pid" && pid_in_ns "$pid" || return 1
  [ -S "$sock" ] && return 0
  log "pid $pid runs without its socket $sock: restarting it"
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone 100 "$pid" || kill -KILL "$pid" 2>/dev/null || true
  return 1
}

start_containerd() {
  local pid
  pid=$(pidfile_pid "$RUN/containerd.pid")
  running_here "$pid" "$CTD_SOCK" && return 0
  rm -f "$CTD_SOCK"
  # nsenter, not ip netns exec (which remounts /sys: see lab.sh).
  exec_without_fds nsenter --net="/var/run/netns/$NS" \
    env -i PATH="$DAEMON_PATH" HOME=/root LANG=C.UTF-8 TMPDIR="$RUN/tmp" \
    setsid "$PREFIX/usr/bin/containerd" --config "$BASE/containerd.toml" \
    >>"$BASE/containerd.log" 2>&1 </dev/null &
  echo $! >"$RUN/containerd.pid"
  disown
}

# Standalone: loopback only, no bridge. In the lab: a bridge and NAT of its own for
# published ports, as the lab's 20.10 edges have.
net_args() {
  if [ -z "$BIP" ]; then
    echo --bridge=none --iptables=false --ip6tables=false --ip-masq=false
    return 0
  fi
  echo --bip "$BIP"
  [ -z "$INSECURE_REGISTRY" ] || echo --insecure-registry "$INSECURE_REGISTRY"
}

start_dockerd() {
  local pid net
  pid=$(pidfile_pid "$RUN/docker.pid")
  running_here "$pid" "$SOCK" && return 0
  rm -f "$RUN/docker.pid" "$SOCK"
  mapfile -t net < <(net_args | tr ' ' '\n')
  exec_without_fds nsenter --net="/var/run/netns/$NS" \
    env -i PATH="$DAEMON_PATH" HOME=/root LANG=C.UTF-8 TMPDIR="$RUN/tmp" \
    setsid "$PREFIX/usr/sbin/dockerd" --experimental \
      --config-file "$BASE/daemon.json" \
      --containerd "$CTD_SOCK" \
      --data-root "$BASE/docker" \
      --exec-root "$RUN/docker" \
      --pidfile "$RUN/docker.pid" \
      -H "unix://$SOCK" \
      "${net[@]}" \
      --storage-driver overlay2 \
      --cgroup-parent "$CGROUP_PARENT" \
      >>"$BASE/dockerd.log" 2>&1 </dev/null &
  disown
}

cmd_up() {
  need_root
  local t0
  t0=$(now)
  # Not criu: runc looks it up on the daemon's PATH at checkpoint time, and on a fresh
  # machine the criu role (make provision, after the lab is up) is what installs it.
  for c in ip nsenter setsid dpkg-deb runc; do
    command -v "$c" >/dev/null || die "missing $c"
  done
  fetch_debs
  check_versions
  unpack
  setup_dirs
  setup_ns
  start_containerd
  wait_for containerd 100 ctd_ok
  start_dockerd
  wait_for dockerd 150 docker_ok
  log "up in $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s: DOCKER_HOST=unix://$SOCK"
}

# ---------------------------------------------------------------- down
cgroup_pids() {
  cat /sys/fs/cgroup/*"$CGROUP_PARENT"/cgroup.procs /sys/fs/cgroup/*"$CGROUP_PARENT"/*/cgroup.procs \
    2>/dev/null | sort -u || true
}


stop_pids() {
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  wait_gone "${STOP_TENTHS:-50}" "$@" || kill -KILL "$@" 2>/dev/null || true
  wait_gone 30 "$@" || log "warning: still alive: $*"
}

cmd_down() {
  need_root
  local t0 pids=() pid mp
  t0=$(now)
  # Containers are thrown away with the data root: killed outright.
  mapfile -t pids < <(cgroup_pids)
  [ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null || true
  pids=()
  pid=$(pidfile_pid "$RUN/docker.pid"); pid_alive "$pid" && pids+=("$pid")
  STOP_TENTHS=100 stop_pids "${pids[@]}"
  pids=()
  pid=$(pidfile_pid "$RUN/containerd.pid"); pid_alive "$pid" && pids+=("$pid")
  if ns_exists; then
    mapfile -t -O "${#pids[@]}" pids < <(ip netns pids "$NS" 2>/dev/null || true)
  fi
  stop_pids "${pids[@]}"
  # Mounts under our dirs (container rootfs, shm, netns files, tmpfs), deepest first.
  for _ in 1 2 3 4 5; do
    mapfile -t mps < <(awk -v b="$BASE/" -v r="$RUN" \
      'index($5, b) == 1 || $5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | tac)
    [ ${#mps[@]} -eq 0 ] && break
    for mp in "${mps[@]}"; do
      mp=$(printf '%b' "$mp")
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done
  done
  find /sys/fs/cgroup/*"$CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null || true
  ns_exists && ip netns del "$NS"
  # The unpacked prefix is kept (cheap to keep, re-made when the .debs change).
  rm -rf --one-file-system "${BASE:?}/docker" "${BASE:?}/containerd" "${RUN:?}"
  log "down in $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s"
}

# ---------------------------------------------------------------- status
cmd_status() {
  local pid ok=1
  if ns_exists; then echo "netns $NS: $(ip -n "$NS" -br addr | awk '{printf "%s %s ", $1, $3}')"; else echo "netns $NS: absent"; ok=0; fi
  pid=$(pidfile_pid "$RUN/containerd.pid")
  if pid_alive "$pid" && ctd_ok; then echo "containerd pid $pid at $CTD_SOCK ($("$CTR" --address "$CTD_SOCK" version 2>/dev/null | awk '/Version/{v=$2} END{print v}'))"; else echo "containerd down"; ok=0; fi
  pid=$(pidfile_pid "$RUN/docker.pid")
  if pid_alive "$pid" && docker_ok; then
    echo "dockerd pid $pid at unix://$SOCK ($("$DOCKER" -H "unix://$SOCK" version -f '{{.Server.Version}} API {{.Server.APIVersion}} min {{.Server.MinAPIVersion}}'), $("$DOCKER" -H "unix://$SOCK" ps -q | wc -l) running containers)"
  else
    echo "dockerd down"; ok=0
  fi
  [ "$ok" = 1 ]
}

cmd_env() {
  echo "DOCKER_HOST=unix://$SOCK"
  echo "D26_DOCKER=$DOCKER"
  echo "D26_CTR=$CTR"
  echo "D26_CONTAINERD=$CTD_SOCK"
  echo "D26_DATA_ROOT=$BASE/docker"
  echo "D26_NS=$NS"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  image) cmd_image ;;
  *) echo "usage: $0 {up|down|status|env|image}" >&2; exit 2 ;;
esac
