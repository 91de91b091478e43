#!/bin/sh
# A real deploy command for the tests. It records what it was given in $DEPLOY_LOG, shows what
# is checked out, and can be made slow (DEPLOY_SLEEP), held mid-run until a test lets it go
# (DEPLOY_GO_FILE: it waits, after its log line, until that file exists) or failing (DEPLOY_FAIL).
set -eu
echo "$$" > "$DEPLOY_LOG.pid"
printf '%s %s %s %s %s\n' "$RELEASE_ENV" "$RELEASE_VERSION" "$RELEASE_TAG" "$RELEASE_SHA" \
  "$(cat app.txt)" >> "$DEPLOY_LOG"
echo "deploying $RELEASE_TAG to $RELEASE_ENV"
i=0
while [ "$i" -lt 40 ]; do echo "step $i of the build"; i=$((i + 1)); done
if [ -n "${DEPLOY_SLEEP:-}" ]; then sleep "$DEPLOY_SLEEP"; fi
if [ -n "${DEPLOY_GO_FILE:-}" ]; then
  while [ ! -e "$DEPLOY_GO_FILE" ]; do sleep 0.02; done
fi
if [ -n "${DEPLOY_FAIL:-}" ]; then echo "error: $DEPLOY_FAIL" >&2; exit 3; fi
echo "deployed $RELEASE_TAG"
