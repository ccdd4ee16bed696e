# The trainer image: the sam3-pipeline package on NVIDIA's CUDA runtime. TorchX runs the training ranks
# in it (`torchrun -m components.train.main`, one pod per node of a Volcano job), and KFP the evaluate
# steps.
#
#   docker build -f images/trainer.Dockerfile --build-arg VERSION=<package version> \
#     -t ghcr.io/sam3-pipeline/trainer:<package version> .        (`make images` does this)
#
# Why CUDA 13.0: torch 2.14.1 from PyPI (the pin in pyproject.toml / requirements.lock) is the cu130
# build (torch.version.cuda == "13.0", cuDNN 9), so the base is the CUDA 13.0 cuDNN runtime, not a 12.x
# one: its NVIDIA_REQUIRE_CUDA=cuda>=13.0 makes the NVIDIA container runtime refuse a node whose driver
# is too old for CUDA 13 (R580 or newer) with a clear error at start, instead of torch failing later
# with "no CUDA device". The CUDA, cuDNN and NCCL libraries torch loads come with its wheels
# (nvidia-*-cu13, nvidia-nccl-cu13, pinned in requirements.lock); the base adds the driver contract and
# NVIDIA_VISIBLE_DEVICES / NVIDIA_DRIVER_CAPABILITIES.
# Ubuntu 24.04 ships Python 3.12 only: uv installs a standalone CPython 3.11 (the project's interpreter).
FROM ghcr.io/astral-sh/uv:0.9.30 AS uv

FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed

COPY --from=uv /uv /usr/local/bin/uv
RUN uv python install 3.11.14 \
    && uv venv --seed --python 3.11.14 /opt/venv \
    && rm /usr/local/bin/uv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH}

RUN useradd --uid 10001 --user-group --create-home --home-dir /home/sam3 --shell /usr/sbin/nologin sam3

WORKDIR /app

# Every package is installed at its exact version in requirements.lock (-c), torchx-nightly included (one
# dated nightly build, the same as pyproject.toml's pin, never the newest nightly). Only the runtime
# dependencies: the extras (`local`: the embedded object store, `dev`: test tools, kubectl, validators)
# are for a laptop and CI, not for the steps and ranks that run here.
# Layers from the slowest-changing to the fastest: the locked third-party dependencies (torch and its
# CUDA wheels), then the project's own code.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/dependencies.txt \
    && pip install -c requirements.lock -r /tmp/dependencies.txt \
    && rm /tmp/dependencies.txt

COPY README.md ./
COPY pipeline ./pipeline
COPY components ./components
RUN pip install -c requirements.lock . && pip check

# Declared after the heavy layers: a new version must not invalidate their cache.
ARG VERSION=0.0.0
LABEL org.opencontainers.image.title="sam3-pipeline trainer" \
      org.opencontainers.image.description="sam3-pipeline training ranks (torchrun) and evaluation on CUDA 13.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

USER 10001:10001
ENV HOME=/home/sam3
CMD ["python", "-m", "components.train.main", "--help"]
