"""`sam3-pipeline evaluate`: SAM 3 metrics (cgF1, IL_MCC, pmF1, ...) of a prediction file.

Writes METRICS.json, prints a table on stderr and the output path last on stdout.
numpy, pycocotools and scipy are imported inside the command, so the process starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

if TYPE_CHECKING:
    from components.evaluate import EvaluationResult


def evaluate(
    gt: list[Path] = typer.Option(
        ..., "--gt", help="Ground-truth JSON; repeat for several annotators (oracle evaluation)."
    ),
    pred: Path = typer.Option(..., "--pred", help="Predictions JSON (SA-Co results format)."),
    out: Path = typer.Option(..., "--out", help="Where to write METRICS.json."),
    iou_type: str = typer.Option("segm", "--iou-type", help="segm (mask IoU, default) or bbox (box IoU)."),
    video: bool = typer.Option(False, "--video", help="Video ground truth: (video, noun phrase) pairs."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Processes for loading and matching (default: from input size and CPUs).",
    ),
) -> None:
    """Compute cgF1 / IL_MCC / pmF1 for predictions against SA-Co ground truth."""
    import json
    import os

    from components.errors import ConfigError
    from components.evaluate import evaluate_images, evaluate_videos

    if iou_type not in ("segm", "bbox"):
        raise ConfigError(f"--iou-type must be segm or bbox, not {iou_type!r}")
    if video and len(gt) != 1:
        raise ConfigError("--video takes exactly one --gt file")
    iou: Literal["segm", "bbox"] = "segm" if iou_type == "segm" else "bbox"
    if video:
        result = evaluate_videos(gt[0], pred, iou, workers=workers)
    else:
        result = evaluate_images(gt, pred, iou, workers=workers)

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(result.to_json_dict(), indent=1) + "\n")
    os.replace(partial, out)  # readers never see a half-written file
    _print_table(result)
    typer.echo(str(out))


def _print_table(result: EvaluationResult) -> None:
    from rich.table import Table

    from pipeline.commands.progress import stderr

    c = result.counts
    skipped = f", {c.excluded_not_exhaustive} not exhaustive (skipped)" if c.excluded_not_exhaustive else ""
    positive, negative = c.IL_TP + c.IL_FN, c.IL_FP + c.IL_TN
    stderr.print(
        f"{c.pairs} {result.unit}-NP pairs: {positive} positive, {negative} negative{skipped}; "
        f"{c.kept_predictions} of {c.predictions} predictions kept (score >= {result.score_threshold}); "
        f"{result.iou_type} IoU; {result.gt_files} ground-truth file(s)"
    )
    table = Table()
    for column in ("metric", "0.50:0.95", "@0.50", "@0.75"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    per = result.per_threshold
    i50, i75 = per.iou_thresholds.index(0.5), per.iou_thresholds.index(0.75)
    for name in ("cgF1", "pmF1", "precision", "recall", "F1", "pm_precision", "positive_macro_F1"):
        values = getattr(per, name)
        table.add_row(name, f"{getattr(result, name):.4f}", f"{values[i50]:.4f}", f"{values[i75]:.4f}")
    for name in ("IL_MCC", "IL_precision", "IL_recall", "IL_F1", "IL_FPR"):
        table.add_row(name, f"{getattr(result, name):.4f}", "", "")
    stderr.print(table)
    for warning in result.warnings:
        stderr.print(f"[bold red]WARNING:[/] {warning}")
