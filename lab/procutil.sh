# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck shell=bash
#
# Process helpers shared by lab.sh and docker26.sh (sourced, not run).

# Alive and not a zombie (PID 1 on these machines is slow to reap orphans).
pid_alive() {
  local stat
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ]
}
pidfile_pid() { if [ -s "$1" ]; then tr -dc 0-9 <"$1" || true; fi; }

# Replace this shell by "$@" with only fds 0-2 open. The lab's daemons (sshd,
# dockerd and the containerd it starts) live on after lab.sh; whatever fd our
# caller left open they would hold for ever. `flock /run/edgemig-lab.lock make
# provision` left the lock held by the edges' dockerd and containerd that way.
# Call it in a child: `( exec_without_fds cmd ... )` or `exec_without_fds cmd ... &`.
exec_without_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    if (( fd > 2 )); then
      # Braces: a bare `exec {fd}>&- 2>/dev/null` keeps the redirection, and every daemon
      # started through here had its stderr (its log) on /dev/null.
      { exec {fd}>&-; } 2>/dev/null || true
    fi
  done
  exec "$@"
}

# Wait until none of the pids is alive; up to $1 tenths of a second.
wait_gone() {
  local tenths=$1 i p alive
  shift
  for ((i = 0; i < tenths; i++)); do
    alive=0
    for p in "$@"; do pid_alive "$p" && alive=1 && break; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  return 1
}
