"""The project's container images; their tag is the package version, so code and image move together."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Literal

REPOSITORY = "ghcr.io/sam3-pipeline"


def package_version() -> str:
    try:
        return version("sam3-pipeline")
    except PackageNotFoundError:  # a source tree without an install
        return "0.0.0"


def image(kind: Literal["component", "trainer"]) -> str:
    """``component``: the package on a slim Python base; ``trainer``: on the CUDA PyTorch base."""
    return f"{REPOSITORY}/{kind}:{package_version()}"


COMPONENT_IMAGE = image("component")
TRAINER_IMAGE = image("trainer")
