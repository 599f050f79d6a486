#!/usr/bin/env bash
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# ansible-test sanity, offline, without root and without the lab.
#
# ansible-test refuses a symlinked collection path, so the committed tree
# (the working tree, or the commit REV=...) is copied with `git archive` to
# .cache/sanity/ansible_collections/edgemig/migration and tested there. It
# bootstraps pip into each test venv from a script it would download; no
# internet here, so an ensurepip stand-in is put in its cache first
# (docs: /work/shared/PLATFORM.md, "ansible-test sanity offline").
#
# Usage: tests/sanity/run.sh [extra ansible-test sanity args, e.g. --test pylint]
set -euo pipefail
# ansible-test skips its shellcheck test without a word when shellcheck is not installed, so
# the shell scripts would go unchecked while sanity reports green: refuse instead (`make deps`,
# or apt-get install shellcheck). SANITY_WITHOUT_SHELLCHECK=1 runs the rest on a machine that
# cannot have it, never in CI.
if ! command -v shellcheck >/dev/null; then
  if [[ "${SANITY_WITHOUT_SHELLCHECK:-}" != 1 || -n "${CI:-}" ]]; then
    echo "tests/sanity/run.sh: shellcheck is not installed: ansible-test would skip its shellcheck test" \
         "silently. Install it (make deps, or apt-get install shellcheck)." >&2
    exit 1
  fi
  echo "tests/sanity/run.sh: WARNING: shellcheck not installed, SANITY_WITHOUT_SHELLCHECK=1: shell scripts NOT checked" >&2
fi
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON_VERSION="${PYTHON_VERSION:-3.11}"
DEST="$ROOT/.cache/sanity/ansible_collections/edgemig/migration"

# ansible-test bootstraps pip at the version it pins (24.2 in ansible-core 2.19);
# the cache file is named after that version.
PIP_VERSION="$(python3 -c 'import inspect, re
from ansible_test._internal import python_requirements as pr
print(re.search(r"pip=.([0-9.]+).", inspect.getsource(pr.get_venv_packages)).group(1))' 2>/dev/null || echo 24.2)"
GET_PIP="$HOME/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py"
if [[ ! -s "$GET_PIP" ]]; then
  mkdir -p "$(dirname "$GET_PIP")"
  printf '%s\n' '# Offline stand-in for get-pip.py (written by tests/sanity/run.sh).' \
    'import ensurepip' 'ensurepip.bootstrap(upgrade=True)' > "$GET_PIP"
fi

rm -rf "$DEST"
mkdir -p "$DEST"
cd "$ROOT"
# A `git archive` of the working tree as git sees it (tracked files as they are
# now, plus untracked files that are not ignored), through a throw-away index;
# REV=HEAD (or any commit) archives that commit instead.
if [[ -n "${REV:-}" ]]; then
  TREE="$REV"
else
  INDEX="$(mktemp)"
  trap 'rm -f "$INDEX"' EXIT
  cp "$(git rev-parse --git-path index)" "$INDEX"
  GIT_INDEX_FILE="$INDEX" git add -A
  TREE="$(GIT_INDEX_FILE="$INDEX" git write-tree)"
fi
git archive "$TREE" | tar -xf - -C "$DEST"
cd "$DEST"
git init -q
git add -A
git -c user.name=sanity -c user.email=sanity@invalid commit -qm sanity --no-verify
ansible-test sanity --local --python "$PYTHON_VERSION" --color no "$@"
