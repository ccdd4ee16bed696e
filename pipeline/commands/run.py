"""`sam3-pipeline run`: the whole pipeline on this machine (kfp local runner, TorchX local_cwd).

Uses the object store named by ``SAM3_S3_*``, or starts the embedded one.
Prints a summary table on stderr and, last on stdout, the promoted version's
URI (exit 0), or the outcome record's URI when a gate stopped the run (exit 3)
or a step failed (exit 1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from pipeline.commands.progress import stderr

DEFAULT_CONFIG = Path(__file__).parents[1] / "configs" / "local.yaml"  # pipeline.config.DEFAULT_CONFIG

if TYPE_CHECKING:
    from components.report.outcome import Outcome


def run(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", help="Pipeline config (YAML)."),
) -> None:
    """Ingest, hard negatives, the training stages, gates, promotion: end to end, locally."""
    from components.embedded_store import EmbeddedStore, sam3_home
    from components.errors import ConfigError
    from components.storage import ObjectStore
    from pipeline.config import PipelineConfig
    from pipeline.local import run_local

    cfg = PipelineConfig.load(config)
    if cfg.scheduler != "local_cwd":
        raise ConfigError(f"{config}: `run` trains here (scheduler: local_cwd); use `submit` for a cluster")
    if os.environ.get("SAM3_S3_ENDPOINT"):
        store = ObjectStore.from_env()
    else:
        store = ObjectStore(EmbeddedStore().up())
    store.ensure_bucket()
    if cfg.base is not None:  # an alias becomes the version it names now: a new version, a new run id
        from components.promote.base import pin

        pinned = pin(store, cfg.base)
        cfg = cfg.model_copy(update={"base": pinned})
        stderr.print(f"base {pinned.reference}: the first stage starts from it")
    run_id = cfg.effective_run_id()
    stderr.print(f"run {run_id}: object store {store.settings.endpoint}, bucket {store.bucket}")
    outcome = run_local(cfg, store, sam3_home() / "kfp")
    print_summary(outcome)
    if outcome.promotion is not None:
        typer.echo(outcome.promotion.uri)
    else:
        typer.echo(store.uri(f"runs/{run_id}/executions/{outcome.execution}/outcome.json"))
    raise typer.Exit(outcome.exit_code)


def print_summary(outcome: Outcome) -> None:
    from rich.table import Table

    from components.train.config import ALIGN_STAGE

    table = Table(title=f"sam3-pipeline run {outcome.run_id}")
    # (column, metric, format); the pretrain stage makes no detections: its row shows a recognition AUC
    shown = [("cgF1", "cgF1", ".2f"), ("IL_MCC", "IL_MCC", ".3f"), ("pmF1", "pmF1", ".2f")]
    if any(s.stage == ALIGN_STAGE for s in outcome.stages):
        shown.insert(0, ("recognition AUC", "recognition_AUC", ".3f"))
    base = outcome.base
    against = ["cgF1 vs base"] if base is not None else []  # each stage's cgF1 minus the base's
    for column in ("stage", "steps", "time s", *(c for c, _, _ in shown), *against, "gate"):
        table.add_column(column, justify="left" if column in ("stage", "gate") else "right")
    if base is not None:  # the model the run started from, scored by the same evaluate step
        m = base.metrics
        table.add_row("base", "-", "-", *(format(m[k], f) if k in m else "-" for _, k, f in shown), "", "")
    for s in outcome.stages:
        delta = []
        if base is not None:
            known = "cgF1" in s.metrics and "cgF1" in base.metrics
            delta = [f"{s.metrics['cgF1'] - base.metrics['cgF1']:+.2f}" if known else "-"]
        table.add_row(
            s.stage,
            "-" if s.steps is None else str(s.steps),
            "-" if s.seconds is None else f"{s.seconds:.0f}",
            *(format(s.metrics[k], f) if k in s.metrics else "-" for _, k, f in shown),
            *delta,
            s.gate,
        )
    stderr.print(table)
    if base is not None:
        version = f" = {base.model} version {base.version}" if base.version is not None else ""
        stderr.print(f"base: {base.reference}{version} ({base.weights})", soft_wrap=True)
    videos = [(s, s.video) for s in outcome.stages if s.video is not None]
    if videos:  # end to end on the gold videos, then the tracker alone (true first-frame prompts)
        table = Table(title="gold videos")
        for column in (
            "stage",
            "video cgF1",
            "IL_MCC",
            "pmF1",
            "tracking cgF1",
            "masklet IoU",
            "cross IoU",
        ):
            table.add_column(column, justify="left" if column == "stage" else "right")
        for s, v in videos:
            table.add_row(
                s.stage,
                f"{v.video_cgF1:.2f}",
                f"{v.video_IL_MCC:.3f}",
                f"{v.video_pmF1:.2f}",
                f"{v.tracking_cgF1:.2f}",
                f"{v.masklet_IoU:.3f}",
                "-" if v.cross_object_IoU is None else f"{v.cross_object_IoU:.3f}",
            )
        stderr.print(table)
    for s in outcome.stages:
        if s.reasons:
            stderr.print(f"{s.stage} gate {s.gate}: " + "; ".join(s.reasons))
        if s.recognition_by_length:  # stage 0: which phrase lengths it learnt to recognise
            stderr.print(
                f"{s.stage} recognition AUC by phrase length (0.5 = chance): "
                + ", ".join(
                    f"{n} word{'' if n == '1' else 's'} {auc:.3f}"
                    for n, auc in s.recognition_by_length.items()
                ),
                soft_wrap=True,
            )
        d = s.diagnostics
        if d:  # what a cgF1 of 0 hides: recognition and localisation without the 0.5 score threshold
            stderr.print(
                f"{s.stage} diagnostics: recognition AUC {d['recognition_auc']:.3f} (0.5 = chance), "
                f"top-detection mask IoU {d['top_detection_iou']:.3f} "
                f"({100 * d['top_detection_iou_over_50']:.0f}% of positive pairs > 0.5), "
                f"its box IoU {d.get('top_detection_box_iou', 0.0):.3f} "
                f"(its mask's box {d.get('top_detection_mask_box_iou', 0.0):.3f}), "
                f"max score {d['max_score']:.3f} (0.5 counts)"
            )
    references = next((s.references for s in reversed(outcome.stages) if s.references), None)
    if references:  # the gap to a good model on the same gold pairs
        stderr.print(
            "references on the same gold pairs (true masks, words of the phrase ignored), cgF1: "
            + ", ".join(
                f"{name} {m['cgF1']:.1f}"
                for name, m in sorted(references.items(), key=lambda r: -r[1]["cgF1"])
            ),
            soft_wrap=True,
        )
    for s, v in videos:
        cross = v.cross_object_IoU
        for name, r in s.video_references.items():  # the tracker against a tracker that does nothing
            stderr.print(
                f"{s.stage} tracking, prompted with the true first-visible masks: tracker masklet IoU "
                f"{v.masklet_IoU:.3f}, tracking cgF1 {v.tracking_cgF1:.2f}"
                + ("" if cross is None else f", cross-object IoU {cross:.3f}")
                + f"; {name}: masklet IoU {r.masklet_IoU:.3f}, tracking cgF1 {r.tracking_cgF1:.2f}"
                + ("" if r.cross_object_IoU is None else f", cross-object IoU {r.cross_object_IoU:.3f}"),
                soft_wrap=True,
            )
            if cross is not None and cross > 0.5:
                stderr.print(
                    f"{s.stage}: the tracker gives different objects of a video nearly the same mask "
                    f"(cross-object IoU {cross:.2f}): it segments what it sees rather than following the "
                    "prompted object",
                    soft_wrap=True,
                )
    if outcome.promotion is not None:
        p = outcome.promotion
        was = f" (was version {p.previous})" if p.previous is not None else ""
        new = "" if p.created else " (these weights were already registered)"
        stderr.print(f"[bold green]promoted[/] {p.model} version {p.version} -> {p.alias}{was}{new}")
    elif outcome.verdict == "stopped":
        stderr.print(f"[bold yellow]stopped[/] by the {outcome.stopped_by} gate: nothing promoted")
    else:
        stderr.print(f"[bold red]failed[/] ({outcome.state}): {outcome.error}")
