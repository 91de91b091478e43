# syntax=docker/dockerfile:1

# The bot's runtime requirements alone, read out of pyproject.toml. COPY --from compares
# contents, so the layer that installs them below is rebuilt when they or their pins change,
# not at every edit of pyproject's tool settings.
FROM python:3.11-slim AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; print(*project['dependencies'], sep=chr(10))" > requirements.txt

FROM python:3.11-slim

# git: GitPython shells out to it. openssh-client: git's transport for git@host:… and ssh://
# URLs (README: Docker). tini: PID 1 that reaps zombies and forwards signals.
# Debian's versions are not pinned: a point release or security update takes the old ones off
# the mirror, and a pinned build then fails; the base image's tag fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client tini \
    && rm -rf /var/lib/apt/lists/*

# Fixed numeric ids, for USER below (Kubernetes' runAsNonRoot can only check a number) and for
# the owner of mounted secrets such as a deploy key. releasebot-deploy is the user deploy and
# gate commands run as when the container runs as root (`[worker] run_as =
# "releasebot-deploy"`): it cannot read the bot's memory, state, config or deploy key.
RUN groupadd --gid 10001 releasebot \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/releasebot \
        --shell /usr/sbin/nologin releasebot \
    && groupadd --gid 10002 releasebot-deploy \
    && useradd --uid 10002 --gid 10002 --create-home --home-dir /home/releasebot-deploy \
        --shell /bin/sh releasebot-deploy

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    RELEASEBOT_CONFIG=/etc/releasebot/releasebot.toml \
    RELEASEBOT_STATE_DIR=/home/releasebot/state

WORKDIR /usr/src/releasebot
# The dependencies, in a layer of their own before the code (a code change reuses it), at the
# versions of constraints.txt: those scripts/dev.sh, and so CI, tests with.
COPY --from=requirements /src/requirements.txt ./
COPY constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

# The code alone: every dependency is installed above, and `pip check` fails the build if one
# was missed.
COPY pyproject.toml README.md ./
COPY bot/ ./bot/
COPY handlers/ ./handlers/
RUN pip install --no-cache-dir --no-deps . \
    && pip check \
    && rm -rf /usr/src/releasebot

RUN mkdir -p /etc/releasebot "$RELEASEBOT_STATE_DIR" \
    && chown 10001:10001 "$RELEASEBOT_STATE_DIR" \
    && chmod 0700 "$RELEASEBOT_STATE_DIR"

WORKDIR /home/releasebot

# The default; `serve` listens on $PORT when it is set (no --port in CMD, so that PORT counts).
EXPOSE 3000

# No curl in slim images: probe /healthz with the stdlib. urlopen raises on non-2xx and
# connection errors, which exits 1; anything but 200 exits 1 too. The port is the container's
# $PORT at check time, else 3000 (${PORT:-3000}), as the bot's is.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; port = os.environ.get('PORT') or '3000'; r = u.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

USER 10001:10001

ENTRYPOINT ["tini", "--", "releasebot"]
CMD ["serve"]
