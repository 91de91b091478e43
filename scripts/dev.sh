#!/usr/bin/env bash
# One entry point for a fresh machine (Python 3.11+, git, Redis as a service):
#   scripts/dev.sh shell [releasebot shell options]   set up, then try the bot in a terminal
#   scripts/dev.sh serve [releasebot serve options]   set up, then run the bot
#   scripts/dev.sh test  [pytest options]             set up, then run the tests
#   scripts/dev.sh lock                               pin the dependencies anew (constraints.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${RELEASEBOT_VENV:-.venv}"

# What the venv's install was made from: the package's requirements, the pinned versions and
# this checkout (an editable install points at one; RELEASEBOT_VENV may be shared).
install_inputs() {
  "$venv/bin/python" -c '
import hashlib, os, sys
digest = hashlib.sha256(os.getcwd().encode())
for name in sys.argv[1:]:
    with open(name, "rb") as f:
        digest.update(f.read())
print(digest.hexdigest())' pyproject.toml constraints.txt
}

setup() {
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  # pip takes seconds to find that nothing changed, on every start: install only when what the
  # install is made from changed (the code needs none: the install is editable).
  local stamp="$venv/.releasebot-installed" inputs
  inputs="$(install_inputs)"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
    return
  fi
  rm -f "$stamp"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  # The versions of constraints.txt, which the image installs too: CI tests what ships.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e ".[dev,test]"
  echo "$inputs" >"$stamp"
}

# constraints.txt anew from pyproject.toml's requirements, in a fresh venv: after changing a
# dependency, or to take newer versions.
lock() (
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  python3 -m venv "$scratch/venv"
  "$scratch/venv/bin/python" -m pip install --quiet --disable-pip-version-check ".[dev,test]"
  {
    sed -n '/^#/p' constraints.txt
    "$scratch/venv/bin/python" -m pip freeze --disable-pip-version-check --exclude releasebot
  } >"$scratch/constraints.txt"
  mv "$scratch/constraints.txt" constraints.txt
)

redis_up() {
  "$venv/bin/python" - "${RELEASEBOT_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}" <<'PY'
import sys
import redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
}

ensure_redis() {
  if redis_up; then return; fi
  if ! command -v redis-server >/dev/null; then
    echo "Redis is not running on 127.0.0.1:6379 and redis-server is not installed." >&2
    echo "Install it (apt-get install redis-server) or set RELEASEBOT_TEST_REDIS_URL." >&2
    exit 1
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 50); do redis_up && return; sleep 0.1; done
  echo "redis-server did not come up" >&2
  exit 1
}

command="${1:-}"
shift || true
case "$command" in
  serve|shell)
    setup
    exec "$venv/bin/releasebot" "$command" "$@"
    ;;
  test)
    setup
    ensure_redis
    # The layout's rules, the types and the format, before the tests (README: Development).
    "$venv/bin/ruff" check bot handlers tests bench
    "$venv/bin/ruff" format --check bot handlers tests bench
    "$venv/bin/lint-imports"
    "$venv/bin/mypy" bot handlers
    "$venv/bin/hadolint" Dockerfile
    exec "$venv/bin/python" -m pytest "$@"
    ;;
  lock)
    lock
    ;;
  *)
    echo "usage: scripts/dev.sh shell|serve [options] | test [pytest options] | lock" >&2
    exit 2
    ;;
esac
