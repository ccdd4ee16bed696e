"""`sam3-pipeline compile` and `submit`: the pipeline for a Kubeflow Pipelines host."""

from __future__ import annotations

from pathlib import Path

import typer

CLUSTER_CONFIG = Path(__file__).parents[1] / "configs" / "cluster.yaml"


def compile_cmd(
    config: Path = typer.Option(CLUSTER_CONFIG, "--config", help="Pipeline config (YAML)."),
    out: Path = typer.Option(Path("sam3_training_pipeline.yaml"), "--out", help="Where to write the YAML."),
) -> None:
    """Compile the pipeline (for upload in the Kubeflow UI); prints the file's path last."""
    from pipeline.config import PipelineConfig
    from pipeline.submit import compile_pipeline

    typer.echo(str(compile_pipeline(PipelineConfig.load(config), out)))


def submit_cmd(
    config: Path = typer.Option(..., "--config", help="Pipeline config (YAML)."),
    host: str | None = typer.Option(None, "--host", help="KFP API URL (default: in-cluster discovery)."),
    experiment: str = typer.Option("sam3", "--experiment"),
    recurring: str | None = typer.Option(
        None, "--recurring", help="Cron schedule (KFP's 6 fields, seconds first) for a recurring run."
    ),
    namespace: str | None = typer.Option(
        None,
        "--namespace",
        help="Kubeflow profile namespace the run goes to: the config's kubernetes.namespace (the default); "
        "another is refused.",
    ),
    token_path: Path | None = typer.Option(
        None,
        "--token-path",
        help="File with a service account token for KFP (projected, audience pipelines.kubeflow.org); "
        "re-read before each request. SAM3_KFP_TOKEN, if set, is used instead.",
    ),
) -> None:
    """Submit a run named after the config's hash (an existing one is reused unless it failed or was
    cancelled: then a retry starts); prints the run id last."""
    from pipeline.commands.progress import stderr
    from pipeline.config import PipelineConfig
    from pipeline.submit import submit

    result = submit(
        PipelineConfig.load(config),
        host,
        experiment=experiment,
        recurring=recurring,
        namespace=namespace,
        token_path=token_path,
    )
    kind = "recurring run" if result.recurring else "run"
    verb = "created" if result.created else "already exists, not started again:"
    if result.retried:
        verb = f"created to start again {result.retried}:"
    stderr.print(f"{kind} {result.name} {verb} ({result.id})")
    typer.echo(result.id)
