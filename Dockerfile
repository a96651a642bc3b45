# syntax=docker/dockerfile:1
# The Fly.io image: all three services in one image, since Fly runs every process group of an app from
# one image. fly.toml picks the command of each group (web, celery, pgqueue) and runs the migrations
# as its release_command. Build from the repository root:  docker build -t bench .
# services/<name>/Dockerfile builds one service alone, for platforms that run one container per service.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: resolve and install the locked dependencies, then the workspace packages ----
FROM ${PYTHON_IMAGE} AS builder
# uv comes from its official image, pinned; nothing else of that image is kept.
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
# Bytecode compiled once at build time; copy (not hardlink) out of the cache mount; the base image's Python only.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# Dependencies first: uv needs every member's pyproject.toml to read the workspace, but no source,
# so this layer is rebuilt only when a pyproject.toml or uv.lock changes.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY services/web/pyproject.toml services/web/
COPY services/celery_worker/pyproject.toml services/celery_worker/
COPY services/pgqueue_worker/pyproject.toml services/pgqueue_worker/
COPY services/peers_worker/pyproject.toml services/peers_worker/
# The root project depends on every member, so this installs the dependencies of every service.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace
# Then the source of shared and of every service, installed as ordinary (non-editable) packages,
# so the runtime stage needs the virtual environment alone.
COPY shared/ shared/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# ---- runtime: the virtual environment, the migrations, a non-root user ----
FROM ${PYTHON_IMAGE} AS runtime
# Its home is its own and writable (tools write caches and settings under $HOME); /app is not.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --no-create-home app \
    && mkdir -p /home/app /var/lib/bench \
    && chown app:app /home/app /var/lib/bench
WORKDIR /app
# Owned by root and read-only for the services: the code cannot be changed by the process that runs it.
COPY --from=builder /app/.venv /app/.venv
# fly.toml's release_command (`python -m shared.migrate upgrade`) finds db/alembic.ini in the working directory.
COPY db/ db/
ENV PATH="/app/.venv/bin:${PATH}" \
    HOME=/home/app \
    PYTHONUNBUFFERED=1 \
    BENCH_DATA_DIR=/var/lib/bench \
    BENCH_REPORTS_DIR=/var/lib/bench/reports \
    PORT=8000
USER app
EXPOSE 8000
# SIGTERM starts every service's graceful shutdown: gunicorn finishes requests in flight, Celery's warm
# shutdown finishes running tasks, pgqueue stops fetching and finishes its claimed jobs. fly.toml's
# kill_signal is the same signal (Fly sends its own, not this one).
STOPSIGNAL SIGTERM
# The web service by default; fly.toml's [processes] gives each group its own command.
CMD ["bench-web"]
