"""`sam3-pipeline data synth|ingest|negatives|inspect`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from pipeline.commands.progress import progress_bars, stderr

app = typer.Typer(
    help="Datasets: synthesize, ingest into S3 as Parquet shards, mine hard negatives.", no_args_is_help=True
)
log = logging.getLogger(__name__)


@app.command()
def synth(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write train/, gold/, video_train/, video_gold/ into."
    ),
    images: int = typer.Option(400, "--images", min=1, help="Training images."),
    videos: int = typer.Option(16, "--videos", min=0, help="Training videos."),
    gold_images: int | None = typer.Option(
        None, "--gold-images", min=1, help="Gold images (default images/4)."
    ),
    gold_videos: int | None = typer.Option(
        None, "--gold-videos", min=0, help="Gold videos (default videos/2)."
    ),
    frames: int = typer.Option(12, "--frames", min=2, help="Frames per video."),
    size: int = typer.Option(224, "--size", min=64, help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
) -> None:
    """Write a synthetic SA-Co-style dataset (deterministic for a seed); prints the folder."""
    from components.synthetic import generate

    with progress_bars() as progress:
        summary = generate(
            out,
            images=images,
            gold_images=gold_images,
            videos=videos,
            gold_videos=gold_videos,
            frames=frames,
            size=size,
            seed=seed,
            progress=progress,
        )
    stderr.print(summary.model_dump_json(indent=1))
    typer.echo(str(out.resolve()))


def _parse_partition(text: str) -> tuple[int, int]:
    from components.errors import ConfigError

    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--partition {text!r}: expected I/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--partition {text!r}: need N >= 1 and 0 <= I < N")
    return i, n


@app.command()
def ingest(
    dataset: str = typer.Option(..., "--dataset", help="Dataset name."),
    source: list[str] = typer.Option(..., "--source", help="TAG=PATH, TAG in hq|syn|ext|video; repeat."),
    partition: str | None = typer.Option(None, "--partition", help="I/N: process only partition I of N."),
    commit: bool = typer.Option(False, "--commit", help="Merge the staged partitions into one version."),
    strict: bool = typer.Option(False, "--strict", help="Fail (commit nothing) if any record is rejected."),
    max_pixels: int = typer.Option(64_000_000, "--max-pixels", min=1, help="Reject images claiming more."),
    image_check: str = typer.Option(
        "structure", "--image-check", help="structure (headers, end markers, CRCs) or decode (every pixel)."
    ),
    shard_rows: int = typer.Option(1024, "--shard-rows", min=1, help="Most media per shard."),
    shard_mb: int = typer.Option(32, "--shard-mb", min=1, help="Target shard size in MiB."),
) -> None:
    """Validate inputs and write Parquet shards + manifest; prints the dataset URI (s3://...)."""
    from components.embedded_store import default_store
    from components.errors import ConfigError
    from components.ingest.ingest import Ingest, IngestOptions
    from components.ingest.sources import SourceSpec

    if image_check not in ("structure", "decode"):
        raise ConfigError(f"--image-check {image_check!r}: expected structure or decode")
    if partition and commit:
        raise ConfigError("--partition and --commit are separate steps: run the partitions, then --commit")
    store = default_store()
    with progress_bars() as progress:
        job = Ingest(
            dataset,
            [SourceSpec.parse(s) for s in source],
            store,
            IngestOptions(
                max_pixels=max_pixels,
                image_check=image_check,  # type: ignore[arg-type]  # checked above
                shard_max_rows=shard_rows,
                shard_target_bytes=shard_mb * 1024 * 1024,
            ),
            progress=progress,
        )
        if partition:
            i, n = _parse_partition(partition)
            summary = job.run_partition(i, n)
            stderr.print(
                f"partition {i}/{n}: {len(summary.shards)} shards, {len(summary.rejects)} rejects staged"
            )
            typer.echo(job.uri)
            return
        result = job.commit(strict=strict) if commit else job.run(strict=strict)
    manifest = result.manifest
    if manifest is not None:
        verb = "committed" if result.created else "already present"
        stderr.print(
            f"{verb}: {manifest.media} media, {manifest.queries} queries, "
            f"{len(manifest.shards)} shards, {manifest.rejects.count} rejects "
            + (json.dumps(manifest.rejects.by_code) if manifest.rejects.count else "")
        )
    typer.echo(result.uri)


@app.command()
def negatives(
    dataset: str = typer.Option(
        ..., "--dataset", help="Parent dataset URI (s3://.../datasets/NAME/VERSION)."
    ),
    per_image: int = typer.Option(
        ..., "--per-image", min=0, help="Hard negatives to add per image (e.g. 30)."
    ),
    ontology: Path = typer.Option(..., "--ontology", help="ontology.json (concept graph)."),
) -> None:
    """Add up to K hard negative noun phrases per image; prints the new dataset URI."""
    from components.embedded_store import default_store
    from components.negatives.negatives import mine_negatives

    with progress_bars() as progress:
        uri, manifest, created = mine_negatives(dataset, per_image, ontology, default_store(), progress)
    hard = sum(s.hard_negatives for s in manifest.sources.values())
    stderr.print(
        f"{'wrote' if created else 'already present'}: {hard} hard negatives over {manifest.media} media"
    )
    typer.echo(uri)


@app.command()
def inspect(uri: str = typer.Argument(..., help="Dataset URI.")) -> None:
    """Print a dataset's manifest summary (stderr table) and its manifest JSON (stdout)."""
    from rich.table import Table

    from components.dataset import Dataset
    from components.embedded_store import default_store

    ds = Dataset.open(uri, default_store())
    m = ds.manifest
    table = Table(title=f"{m.name} {m.version}")
    for col in ("source", "media", "queries", "positive", "negative", "hard negatives", "instances"):
        table.add_column(col, justify="right")
    for name, s in m.sources.items():
        table.add_row(
            name,
            *(
                str(v)
                for v in (
                    s.media,
                    s.queries,
                    s.positive_queries,
                    s.negative_queries,
                    s.hard_negatives,
                    s.instances,
                )
            ),
        )
    stderr.print(table)
    stderr.print(
        f"{len(m.shards)} shards, {sum(s.bytes for s in m.shards)} bytes, {m.rejects.count} rejects, "
        f"parents: {m.parents or '-'}"
    )
    typer.echo(m.model_dump_json(indent=1))
