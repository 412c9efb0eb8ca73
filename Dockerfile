# One API replica. Build context: the repository root (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RATELIMIT_HOST=0.0.0.0 \
    RATELIMIT_PORT=8081

WORKDIR /app
COPY pyproject.toml README.md compat.py ./
COPY limiter ./limiter
COPY registry ./registry
COPY api ./api
COPY stack ./stack
COPY rls ./rls
RUN pip install --disable-pip-version-check . \
    && useradd --system --no-create-home ratelimit
USER ratelimit

EXPOSE 8081
HEALTHCHECK --interval=5s --timeout=2s --retries=10 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"RATELIMIT_PORT\"]}/ready', timeout=2)"]
CMD ["python", "-m", "api"]
