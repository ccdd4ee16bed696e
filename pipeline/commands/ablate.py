"""`sam3-pipeline ablate`: the variants of an ablation file as pipeline runs, and one comparison table.

Here (no ``--host``) each row runs as ``sam3-pipeline run`` runs a config (pipeline.local.run_local, the
embedded store unless ``SAM3_S3_*`` is set), one after another; rows that train the same thing share a run
id, so the later ones train nothing. With ``--host`` the rows are submitted to Kubeflow Pipelines as
``submit`` submits a config (an existing run of the same config is reused, pipeline.submit), the command
waits for them and reads the table from the store that ``SAM3_S3_*`` names. ``--compile DIR`` writes each
row's compiled pipeline instead of running anything; ``--plan`` prints the rows and their run ids only.

The table goes to stderr (rich), to ``ablations/<name>/<plan>/table.{json,md,html}`` in the store, and
the JSON's URI is the last line on stdout. Exit 1 when a row has no numbers (a run failed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from components.storage import ObjectStore
    from pipeline.ablation import PlannedRun
    from pipeline.ablation_table import AblationTable

ABLATIONS = Path(__file__).parents[1] / "configs" / "ablations.yaml"


def ablate(
    config: Path = typer.Option(ABLATIONS, "--config", help="Ablation config (YAML): a base and variants."),
    host: str | None = typer.Option(
        None, "--host", help="KFP API URL: submit the rows there (idempotently) and wait for them."
    ),
    experiment: str = typer.Option("sam3-ablations", "--experiment", help="KFP experiment (with --host)."),
    token_path: Path | None = typer.Option(
        None, "--token-path", help="Service account token file for KFP (as for `submit`)."
    ),
    compile_dir: Path | None = typer.Option(
        None, "--compile", help="Write each row's compiled pipeline into this folder; run nothing."
    ),
    plan_only: bool = typer.Option(False, "--plan", help="Print the rows and their run ids; run nothing."),
) -> None:
    """Run an ablation's variants as pipeline runs (sharing what they share) and print one table."""
    from components.errors import ConfigError
    from pipeline.ablation import load
    from pipeline.commands.progress import stderr

    ablation, planned = load(config)
    for run in planned:
        shared = f" (reuses {run.shares}'s checkpoints)" if run.shares else ""
        stderr.print(f"{run.variant}: run {run.run_id}{shared}", soft_wrap=True)
    if plan_only:
        typer.echo(str(config))
        return
    if compile_dir is not None:
        from pipeline.submit import compile_pipeline

        for run in planned:
            compile_pipeline(run.config, compile_dir / f"{ablation.name}-{run.variant}.yaml")
        typer.echo(str(compile_dir))
        return
    schedulers = {run.config.scheduler for run in planned}
    want = "kubernetes" if host is not None else "local_cwd"
    if schedulers != {want}:
        where = "--host submits to a cluster" if host is not None else "without --host the runs train here"
        raise ConfigError(f"{config}: {where}: the base's scheduler must be {want}, not {sorted(schedulers)}")
    store = _store(local=host is None)
    if host is None:
        _run_here(planned, store)
    else:
        _run_on_cluster(planned, host, experiment, token_path)
    from pipeline.ablation_table import collect, write_table

    table = collect(ablation, planned, store)
    key = write_table(table, store)
    print_table(table)
    typer.echo(store.uri(key))
    if any(row.status == "missing" for row in table.rows):
        raise typer.Exit(1)


def _store(*, local: bool) -> ObjectStore:
    import os

    from components.embedded_store import EmbeddedStore
    from components.storage import ObjectStore

    if os.environ.get("SAM3_S3_ENDPOINT") or not local:
        store = ObjectStore.from_env()
    else:
        store = ObjectStore(EmbeddedStore().up())
    store.ensure_bucket()
    return store


def _run_here(planned: list[PlannedRun], store: ObjectStore) -> None:
    from components.embedded_store import sam3_home
    from pipeline.commands.progress import stderr
    from pipeline.local import run_local

    done: set[str] = set()
    for run in planned:
        if run.config.content_hash() in done:  # the same config twice: its run is already there
            continue
        stderr.print(f"[bold]{run.variant}[/]: run {run.run_id}", soft_wrap=True)
        outcome = run_local(run.config, store, sam3_home() / "kfp")
        stderr.print(f"{run.variant}: {outcome.verdict} ({outcome.state})")
        done.add(run.config.content_hash())


def _run_on_cluster(planned: list[PlannedRun], host: str, experiment: str, token_path: Path | None) -> None:
    from pipeline.commands.progress import stderr
    from pipeline.submit import namespace_of, submit, wait_for_runs

    submitted: dict[str, str] = {}
    for run in planned:
        result = submit(run.config, host, experiment=experiment, token_path=token_path)
        verb = "submitted" if result.created else "already submitted"
        stderr.print(f"{run.variant}: {verb} as {result.name} ({result.id})", soft_wrap=True)
        submitted[result.id] = run.variant
    namespace = namespace_of(planned[0].config, None)
    states = wait_for_runs(list(submitted), host, namespace, token_path=token_path)
    for run_id, state in states.items():
        stderr.print(f"{submitted[run_id]}: {state.lower()}")


def print_table(table: AblationTable) -> None:
    from rich.table import Table

    from pipeline.ablation_table import COLUMNS, cells
    from pipeline.commands.progress import stderr

    shown = Table(title=f"ablation {table.name}: {table.stage} stage (paper: SAM 3's ablation tables)")
    for column in COLUMNS:
        shown.add_column(column, justify="left" if column in ("ablation", "row") else "right")
    for row in table.rows:
        shown.add_row(*cells(row))
    stderr.print(shown)
