# syntax=docker/dockerfile:1
FROM python:3.11-slim

# git: GitPython shells out to it. tini: PID 1 that reaps zombies and forwards signals.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git tini \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --uid 10001 --user-group --create-home --home-dir /home/releasebot \
        --shell /usr/sbin/nologin releasebot
# The user deploy and gate commands run as when the container runs as root
# (`[worker] run_as = "releasebot-deploy"`): it cannot read the bot's memory, state or config.
RUN useradd --uid 10002 --user-group --create-home --home-dir /home/releasebot-deploy \
        --shell /bin/sh releasebot-deploy

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RELEASEBOT_CONFIG=/etc/releasebot/releasebot.toml \
    RELEASEBOT_STATE_DIR=/home/releasebot/state

WORKDIR /usr/src/releasebot
COPY pyproject.toml README.md ./
COPY bot/ ./bot/
COPY handlers/ ./handlers/
RUN pip install --no-cache-dir . \
    && rm -rf /usr/src/releasebot

RUN mkdir -p /etc/releasebot "$RELEASEBOT_STATE_DIR" \
    && chown releasebot:releasebot "$RELEASEBOT_STATE_DIR" \
    && chmod 0700 "$RELEASEBOT_STATE_DIR"

WORKDIR /home/releasebot

EXPOSE 3000

# No curl in slim images: probe /healthz with the stdlib. urlopen raises on
# non-2xx / connection errors, which exits 1; anything but 200 also exits 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; r = u.urlopen('http://127.0.0.1:3000/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

USER releasebot

ENTRYPOINT ["tini", "--", "releasebot"]
CMD ["serve", "--port", "3000"]
