#!/bin/sh
# A deploy that records when it starts and ends, to show that two deploys of one environment
# never overlap. The deploy of $SLOW_TAG waits: until $GO_FILE exists if that is set, else
# $DEPLOY_SLEEP seconds (default 60).
set -eu
now() { date +%s.%N; }
echo "start $(now) $RELEASE_TAG $$" >> "$DEPLOY_TIMES"
if [ "$RELEASE_TAG" = "${SLOW_TAG:-}" ]; then
  if [ -n "${GO_FILE:-}" ]; then
    while [ ! -e "$GO_FILE" ]; do sleep 0.02; done
  else
    sleep "${DEPLOY_SLEEP:-60}"
  fi
fi
echo "end $(now) $RELEASE_TAG $$" >> "$DEPLOY_TIMES"
