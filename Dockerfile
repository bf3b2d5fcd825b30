# syntax=docker/dockerfile:1.7
# The image of one service, chosen by build arguments. Build from the repository root:
#   docker build --build-arg SERVICE=poller --build-arg PORT=9101 \
#       -t rustbucket-registry/poller .
# SERVICE is the directory under services/ (its package is rbr-SERVICE, its command
# rbr-SERVICE); PORT is the service's health and metrics port (RBR_HTTP_PORT).
# docker-compose.yml passes both for each service.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ARG PORT
RUN test -n "${SERVICE}" || { echo "missing --build-arg SERVICE=<directory under services/>" >&2; exit 1; }; \
    test -n "${PORT}" || { echo "missing --build-arg PORT=<the service's RBR_HTTP_PORT>" >&2; exit 1; }
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /src
COPY . .
# Exactly the locked versions of what this service (and the rbr CLI) needs, nothing else.
# rbr-service names the service's command, so the ENTRYPOINT below needs no shell.
RUN uv export --frozen --no-dev --no-emit-workspace --no-hashes \
        --package "rbr-${SERVICE}" --package rbr-cli --output-file /tmp/requirements.txt \
 && uv venv /opt/venv \
 && uv pip install --no-cache --compile-bytecode --python /opt/venv/bin/python \
        -r /tmp/requirements.txt \
 && uv pip install --no-cache --compile-bytecode --no-deps --python /opt/venv/bin/python \
        ./schemas ./runtime ./cli "./services/${SERVICE}" \
 && test -x "/opt/venv/bin/rbr-${SERVICE}" \
 && ln -s "rbr-${SERVICE}" /opt/venv/bin/rbr-service

FROM ${PYTHON_IMAGE}
ARG SERVICE
ARG PORT
LABEL org.opencontainers.image.title="rustbucket-registry/${SERVICE}"
RUN groupadd --system --gid 10001 rbr \
 && useradd --system --uid 10001 --gid rbr --no-create-home --shell /usr/sbin/nologin rbr
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RBR_HTTP_HOST=0.0.0.0 \
    RBR_HTTP_PORT=${PORT}
USER 10001:10001
EXPOSE ${PORT}
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['RBR_HTTP_PORT'], timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["rbr-service"]
