#!/usr/bin/env bash
# One entry point for a fresh machine (Python 3.11+, git, Redis as a service):
#   scripts/dev.sh shell [releasebot shell options]   set up, then try the bot in a terminal
#   scripts/dev.sh serve [releasebot serve options]   set up, then run the bot
#   scripts/dev.sh test  [pytest options]             set up, then run the tests
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${RELEASEBOT_VENV:-.venv}"

setup() {
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[dev,test]"
}

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
    exec "$venv/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: scripts/dev.sh shell|serve [options] | scripts/dev.sh test [pytest options]" >&2
    exit 2
    ;;
esac
