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
    import torch

    from components.dataset import Dataset
    from components.embedded_store import default_store
    from components.errors import ConfigError
    from components.model.builder import build_model
    from components.model.checkpoint import load_weights, normalize_state_dict
    from components.model.config import ModelConfig
    from components.model.predict import predict_records
    from components.train.checkpoint import checkpoint_config, read_weights
    from pipeline.commands.progress import progress_bars

    store = default_store()
    saved = checkpoint_config(checkpoint, store) or {}
    size = size or saved.get("size")
    if size is None:
        raise ConfigError(f"{checkpoint} carries no training config: pass --size")
    model = build_model(size)
    load_weights(model, normalize_state_dict(read_weights(checkpoint, store)), checkpoint)
    if torch.cuda.is_available():
        model = model.cuda()
    resolution = ModelConfig.preset(size).resolution
    ds = Dataset.open(dataset, store)
    results: list[dict[str, object]] = []
    with progress_bars() as progress:
        done = 0
        for record in ds.records():
            done += 1
            if record.kind != "image":
                continue
            record.queries = [q for q in record.queries if q.origin_id.isdigit()]  # mined negatives have none
            results.extend(
                predict_records(model, [record], resolution=resolution, score_threshold=score_threshold)
            )
            progress("predict", done, ds.manifest.media)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(results))
    tmp.replace(out)
    typer.echo(str(out))
