# syntax=docker/dockerfile:1
#
# outrider container image.
#
#   docker build -t outrider:dev .
#   docker run --rm -p 8001:8001 -p 8081:8081 \
#     -v "$PWD/config.yaml:/etc/outrider/config.yaml:ro" outrider:dev
#
# Ports:   8001  gRPC relay (clients connect here; forwarded to the model server,
#                127.0.0.1:8000 by default)
#          8081  admin HTTP: /metrics /healthz /readyz /incidents, Alertmanager,
#                Flagger and Argo Rollouts endpoints
# Volumes: /var/lib/outrider   state: incidents.sqlite, references/, checkpoints/,
#                              probes/, plots/ (keep it on a persistent volume)
#          /etc/outrider       config.yaml (a default ships, deploy/docker/config.yaml;
#                              mount yours read-only, e.g. from a ConfigMap)
#
# The pip steps below are replayed in a fresh virtualenv by
# tests/deploy/test_dockerfile.py, so keep each one in its own RUN.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Must equal [project].version in pyproject.toml (a test checks it).
ARG OUTRIDER_VERSION=0.1.0

# --- builder: wheels for outrider and every dependency ------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY detectors ./detectors

# Binary wheels only: the final image has no compiler, so nothing may need one.
RUN pip wheel --wheel-dir /wheels --only-binary=:all: ".[k8s]"

# --- final: the runtime, no build tools ---------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG OUTRIDER_VERSION

LABEL org.opencontainers.image.title="outrider" \
      org.opencontainers.image.description="Drift, OOD and robustness monitoring sidecar for Open Inference Protocol model servers" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/outrider/outrider" \
      org.opencontainers.image.version="${OUTRIDER_VERSION}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Fixed numeric ids so Kubernetes' runAsNonRoot can verify them and fsGroup can match.
RUN groupadd --system --gid 10001 outrider \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/outrider \
       --shell /usr/sbin/nologin outrider \
    && mkdir -p /var/lib/outrider /etc/outrider \
    && chown 10001:10001 /var/lib/outrider

# Install from the builder's wheels only (no index): the image gets exactly what was built.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "outrider[k8s]==${OUTRIDER_VERSION}"

# A working default; mount your own config over it.
COPY deploy/docker/config.yaml /etc/outrider/config.yaml

WORKDIR /var/lib/outrider
USER 10001:10001

EXPOSE 8001 8081
VOLUME ["/var/lib/outrider"]

# No curl in a slim image: ask /healthz with the interpreter that is already there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=4)"]

ENTRYPOINT ["outrider"]
CMD ["serve", "--config", "/etc/outrider/config.yaml"]
