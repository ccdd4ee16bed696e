"""The project's container images: ``<repository>/component`` and ``<repository>/trainer``.

By default their tag is the package version, so code and image move together. A pipeline config can
move them to another registry and pin them by tag or by digest (``Images``, its ``kubernetes.images``).
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REPOSITORY = "ghcr.io/sam3-pipeline"
Kind = Literal["component", "trainer"]

_HOST = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_PATTERN = rf"{_HOST}(?:/{_PATH})*"
"""A registry host (with an optional port) and path, as in an image reference before ``/<kind>``."""
TAG_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
DIGEST_PATTERN = r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}"


def package_version() -> str:
    try:
        return version("sam3-pipeline")
    except PackageNotFoundError:  # a source tree without an install
        return "0.0.0"


def image(
    kind: Kind, repository: str = REPOSITORY, *, tag: str | None = None, digest: str | None = None
) -> str:
    """``component``: the package on a slim Python base; ``trainer``: on the CUDA PyTorch base.

    ``<repository>/<kind>@<digest>`` when a digest is given, else ``<repository>/<kind>:<tag>`` (the
    package version by default)."""
    if digest:
        return f"{repository}/{kind}@{digest}"
    return f"{repository}/{kind}:{tag or package_version()}"


COMPONENT_IMAGE = image("component")
TRAINER_IMAGE = image("trainer")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _matching(value: str, pattern: str, what: str) -> str:
    if not re.fullmatch(pattern, value):
        raise ValueError(f"{value!r} is not {what}")
    return value


class Digests(_Model):
    """One digest per image (``sha256:<64 hex digits>``, as the registry reports it for a pushed image)."""

    component: str
    trainer: str

    @field_validator("component", "trainer")
    @classmethod
    def _digest(cls, value: str) -> str:
        what = "an image digest (sha256: and 64 lowercase hex digits, or sha512: and 128)"
        return _matching(value, DIGEST_PATTERN, what)


class Images(_Model):
    """Where the steps' and the training ranks' images come from; the defaults are the images that
    ``make images`` tags."""

    registry: str = Field(
        default=REPOSITORY,
        description="registry host and path: the images are <registry>/component and <registry>/trainer",
    )
    tag: str | None = Field(default=None, description="default: the package version")
    digests: Digests | None = Field(default=None, description="pin each image by digest instead of a tag")

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        return _matching(value, REPOSITORY_PATTERN, "a registry host and path (e.g. registry.example.com/ml)")

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        return None if value is None else _matching(value, TAG_PATTERN, "an image tag")

    @model_validator(mode="after")
    def _tag_or_digests(self) -> Images:
        if self.tag is not None and self.digests is not None:
            raise ValueError("give a tag or digests, not both: a digest already names one image exactly")
        return self

    def ref(self, kind: Kind) -> str:
        digest = getattr(self.digests, kind) if self.digests is not None else None
        return image(kind, self.registry, tag=self.tag, digest=digest)
