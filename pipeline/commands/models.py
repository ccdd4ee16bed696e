"""`sam3-pipeline models list|show|promote|rollback|import`: the model registry."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="The model registry: versions, model cards and aliases.", no_args_is_help=True)

METRIC_COLUMNS = ("cgF1", "IL_MCC", "pmF1")


@app.command("list")
def list_(model: str | None = typer.Option(None, "--model", help="Only this model.")) -> None:
    """A table of every version (stderr) and the same rows as JSON (stdout)."""
    from rich.table import Table

    from components.embedded_store import default_store
    from components.promote.registry import Registry, list_models
    from pipeline.commands.progress import stderr

    store = default_store()
    table = Table(title=f"model registry in {store.uri('registry/')}")
    for column in ("model", "version", "created", "stage", *METRIC_COLUMNS, "aliases"):
        table.add_column(
            column, justify="right" if column in METRIC_COLUMNS or column == "version" else "left"
        )
    rows = []
    for name in [model] if model else list_models(store):
        reg = Registry(store, name)
        by_version: dict[int, list[str]] = {}
        for alias, record in sorted(reg.aliases().items()):
            by_version.setdefault(record.version, []).append(alias)
        for card in reg.cards():
            version = card.version
            metrics = card.metrics.get(card.stage) or next(iter(card.metrics.values()), {})
            aliases = by_version.get(version, [])
            values = [f"{metrics[m]:.4f}" if m in metrics else "-" for m in METRIC_COLUMNS]
            table.add_row(name, str(version), card.created_at[:19], card.stage, *values, ", ".join(aliases))
            rows.append({"model": name, "version": version, "aliases": aliases, "metrics": metrics})
    stderr.print(table)
    typer.echo(json.dumps(rows))


@app.command()
def show(
    model: str = typer.Argument(..., help="Model name."),
    ref: str | None = typer.Argument(None, help="Version or alias (default: production, else newest)."),
) -> None:
    """Print a version's model card JSON."""
    from components.embedded_store import default_store
    from components.errors import ConfigError
    from components.promote.registry import Registry

    reg = Registry(default_store(), model)
    if ref is None:
        production = reg.alias("production")
        if production is not None:
            ref = str(production.version)
        else:
            versions = reg.versions()
            if not versions:
                raise ConfigError(f"model {model!r} has no versions in the registry")
            ref = str(versions[-1])
    typer.echo(reg.resolve(ref).model_dump_json(indent=1))


@app.command()
def promote(
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to point the alias at."),
    alias: str = typer.Option("production", "--alias", help="Alias to move."),
    updated_by: str = typer.Option("", "--by", help="Who or what promotes (recorded)."),
) -> None:
    """Point an alias at a version (a conditional write: a concurrent change is refused)."""
    from components.embedded_store import default_store
    from components.promote.registry import Registry
    from pipeline.commands.progress import stderr

    record = Registry(default_store(), model).set_alias(alias, version, updated_by=updated_by)
    stderr.print(f"{model} {alias} -> version {record.version}")
    typer.echo(record.model_dump_json())


@app.command()
def rollback(
    model: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Option("production", "--alias", help="Alias to move back."),
    updated_by: str = typer.Option("", "--by", help="Who or what rolls back (recorded)."),
) -> None:
    """Point an alias back at the version it pointed at before."""
    from components.embedded_store import default_store
    from components.promote.registry import Registry
    from pipeline.commands.progress import stderr

    record = Registry(default_store(), model).rollback(alias, updated_by=updated_by)
    stderr.print(f"{model} {alias} rolled back to version {record.version}")
    typer.echo(record.model_dump_json())


IMPORT_HELP = (
    "Import released SAM 3 weights (Meta's sam3.pt) as a new version of a model.\n\n"
    "Every key and shape is checked against the project's full model; a file that does not fit, or that "
    "cannot be read, is refused (exit code 2) naming its missing, unexpected and mismatched keys, and "
    "nothing is registered. The file is opened with torch.load(weights_only=True), so it can hold nothing "
    "but tensors (no code is unpickled), and mapped rather than read: it is never in memory twice.\n\n"
    "The weights are stored as safetensors, as the trainer writes them (via a temporary file under "
    "TMPDIR); the model card names the source, its sha256, the architecture, and that the weights are "
    "Meta's, under Meta's SAM License. Prints the card as JSON; importing the same file again prints the "
    "existing version's card."
)


@app.command("import", help=IMPORT_HELP)
def import_(
    source: str = typer.Argument(
        ...,
        help="Meta's checkpoint (sam3.pt): a local file, an s3:// object in the configured store, or "
        "hf://facebook/sam3 (needs huggingface_hub, access to the gated repository and HF_TOKEN).",
    ),
    model: str = typer.Option(..., "--model", help="Model to add the version to (created if new)."),
    architecture: str | None = typer.Option(
        None,
        "--architecture",
        help="image or video: the model the keys are checked against, and the layout stored "
        "(default: video when the file holds the tracker, else image).",
    ),
) -> None:
    """Import released SAM 3 weights as a new version of a model: see IMPORT_HELP."""
    from typing import cast

    from components.embedded_store import default_store
    from components.promote.importer import Architecture, import_weights
    from pipeline.commands.progress import stderr

    # import_weights refuses any other value, naming it
    card, created = import_weights(
        default_store(), source, model, architecture=cast("Architecture | None", architecture)
    )
    stderr.print(f"{source}: {'imported as' if created else 'already in'} {model} version {card.version}")
    typer.echo(card.model_dump_json())
