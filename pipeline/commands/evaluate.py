"""`sam3-pipeline evaluate`: placeholder until the evaluator lands."""

from __future__ import annotations

from pathlib import Path

import typer

from components.errors import ConfigError


def evaluate(
    gt: list[Path] = typer.Option(..., "--gt", help="Ground-truth JSON (repeat for several annotators)."),
    pred: Path = typer.Option(..., "--pred", help="Predictions JSON (SA-Co results format)."),
    out: Path = typer.Option(..., "--out", help="Where to write METRICS.json."),
) -> None:
    """Compute cgF1 / IL_MCC / pmF1 for predictions against SA-Co ground truth."""
    raise ConfigError("evaluate is not implemented yet")
