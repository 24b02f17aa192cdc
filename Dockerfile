# Runbook Bot — a slim image that runs `runbook serve`.
#   docker build -t runbook-bot .
#   docker run -p 3000:3000 -v runbook-data:/data runbook-bot
# The install steps live in docker/install.sh, which CI exercises in a fresh venv.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 runbook \
 && useradd --system --uid 10001 --gid runbook --home-dir /app --shell /usr/sbin/nologin runbook

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY connectors ./connectors
COPY docker/install.sh ./docker/install.sh
RUN sh docker/install.sh /opt/runbook-bot /src && rm -rf /src

# Runbooks are baked in; mount your own over /app/runbooks to replace them.
COPY runbooks /app/runbooks
RUN mkdir -p /data && chown runbook:runbook /data

ENV PATH=/opt/runbook-bot/bin:$PATH \
    RUNBOOK_RUNBOOKS_DIR=/app/runbooks \
    RUNBOOK_DATA_DIR=/data \
    RUNBOOK_HOST=0.0.0.0 \
    RUNBOOK_PORT=3000 \
    RUNBOOK_LOG_FORMAT=json

VOLUME ["/data"]
WORKDIR /app
USER runbook
EXPOSE 3000

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4).status == 200 else 1)"]

# SIGTERM stops taking work, lets running steps reach a durable point, then exits.
STOPSIGNAL SIGTERM
CMD ["runbook", "serve"]
