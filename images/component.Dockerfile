# The component image: the sam3-pipeline package on a slim Python 3.11. Every KFP step but evaluate
# runs in it (ingest, negatives, the train step that submits the Volcano job, gate, promote, report),
# and so does the GitOps trigger Job (`sam3-pipeline submit`).
#
#   docker build -f images/component.Dockerfile --build-arg VERSION=<package version> \
#     -t ghcr.io/sam3-pipeline/component:<package version> .      (`make images` does this)
#
# The package pins torch==2.14.1, PyPI's CUDA 13.0 build: the image is large but the same resolution as
# everywhere else (requirements.lock); the steps that run here never touch a GPU.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --uid 10001 --user-group --create-home --home-dir /home/sam3 --shell /usr/sbin/nologin sam3

WORKDIR /app

# Every package is installed at its exact version in requirements.lock (-c), torchx-nightly included (one
# dated nightly build, the same as pyproject.toml's pin, never the newest nightly). Only the runtime
# dependencies: the extras (`local`: the embedded object store, `dev`: test tools, kubectl, validators)
# are for a laptop and CI, not for the steps and ranks that run here.
# Layers from the slowest-changing to the fastest: the locked third-party dependencies (gigabytes,
# rebuilt only when pyproject.toml or requirements.lock change), then the project's own code.
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
LABEL org.opencontainers.image.title="sam3-pipeline component" \
      org.opencontainers.image.description="sam3-pipeline steps (KFP components) and CLI" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

USER 10001:10001
ENV HOME=/home/sam3
CMD ["sam3-pipeline", "--help"]
