# livepilot: one node on the embedded SQLite store.
#   docker build -t livepilot .
#   docker run -p 8080:8080 -v livepilot-data:/data -e LIVEPILOT_JWT_SECRET=... livepilot
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LIVEPILOT_HOST=0.0.0.0 \
    LIVEPILOT_PORT=8080 \
    LIVEPILOT_DATA_PATH=/data/livepilot.db

WORKDIR /app
COPY pyproject.toml README.md ./
COPY protocol ./protocol
COPY server ./server
COPY client ./client
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin livepilot \
    && mkdir -p /data && chown livepilot /data

USER livepilot
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LIVEPILOT_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["livepilot", "serve"]
