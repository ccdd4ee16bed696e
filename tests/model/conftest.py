"""Fixtures for the model tests: a tiny model shared read-only, and small records."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from components.model.builder import build_model
from components.schemas import MediaRecord
from tests.model.records import synthetic_record

TINY_RESOLUTION = 112


@pytest.fixture(scope="session")
def tiny_model() -> nn.Module:
    """A freshly initialised tiny model (seed 0). Tests must not train it: build your own for that."""
    torch.manual_seed(0)
    return build_model("tiny112")


@pytest.fixture(scope="session")
def records() -> list[MediaRecord]:
    """Two synthetic images (96 px) with positive and negative queries."""
    return [synthetic_record(0), synthetic_record(1)]
