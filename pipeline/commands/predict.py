"""`sam3-pipeline predict`: run a checkpoint over a dataset, write SA-Co results JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def predict(
    checkpoint: str = typer.Option(
        ..., "--checkpoint", help="Checkpoint URI (step folder, weights or .../checkpoints)."
    ),
    dataset: str = typer.Option(..., "--dataset", help="Dataset URI whose image queries to run."),
    out: Path = typer.Option(..., "--out", help="Where to write PRED.json."),
    size: str | None = typer.Option(None, "--size", help="Model size (default: the checkpoint's own)."),
    score_threshold: float = typer.Option(
        0.05, "--score-threshold", min=0.0, max=1.0, help="Drop detections scoring below this."
    ),
) -> None:
    """Predictions for every (image, noun phrase) pair of a dataset; prints the output path last."""
    from components.embedded_store import default_store
    from components.evaluate.stage import image_records, load_checkpoint_model, predict_dataset
    from pipeline.commands.progress import progress_bars

    store = default_store()
    model, resolution = load_checkpoint_model(checkpoint, store, size)
    with progress_bars() as progress:
        results = predict_dataset(
            model,
            resolution,
            list(image_records(dataset, store)),
            score_threshold=score_threshold,
            progress=progress,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(results))
    tmp.replace(out)
    typer.echo(str(out))
