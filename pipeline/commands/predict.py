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
    score_threshold: float | None = typer.Option(
        None,
        "--score-threshold",
        min=0.0,
        max=1.0,
        help="Images: drop detections below this (default 0.05). Videos: track detections from this "
        "(default 0.5).",
    ),
    videos: bool = typer.Option(
        False, "--videos", help="Masklets for the (video, noun phrase) pairs (a tracker or joint checkpoint)."
    ),
) -> None:
    """Predictions for every (image, noun phrase) pair of a dataset, or with ``--videos`` masklets for
    every (video, noun phrase) pair (SA-Co video results); prints the output path last."""
    from components.embedded_store import default_store
    from components.evaluate.stage import (
        image_records,
        load_checkpoint_model,
        predict_dataset,
        video_records,
    )
    from components.evaluate.tracking import detect_and_track
    from pipeline.commands.progress import progress_bars

    store = default_store()
    with progress_bars() as progress:
        if videos:
            video_model, resolution = load_checkpoint_model(checkpoint, store, size, video=True)
            results = detect_and_track(
                video_model,
                video_records(dataset, store),
                resolution,
                score_threshold=0.5 if score_threshold is None else score_threshold,
                progress=progress,
            )
        else:
            model, resolution = load_checkpoint_model(checkpoint, store, size)
            results = predict_dataset(
                model,
                resolution,
                list(image_records(dataset, store)),
                score_threshold=0.05 if score_threshold is None else score_threshold,
                progress=progress,
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(results))
    tmp.replace(out)
    typer.echo(str(out))
