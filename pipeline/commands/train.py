"""`sam3-pipeline train`: one training stage through the TorchX runner."""

from __future__ import annotations

import typer

from components.images import TRAINER_IMAGE


def train(
    stage: str = typer.Option(..., "--stage", help="pretrain | detector | presence | tracker | joint"),
    dataset: str = typer.Option(..., "--dataset", help="Dataset URI (s3://.../datasets/NAME/VERSION)."),
    eval_dataset: str | None = typer.Option(
        None,
        "--eval-dataset",
        help="pretrain: gold dataset URI scored for recognition AUC at each checkpoint.",
    ),
    run_id: str = typer.Option(..., "--run", help="Run id: checkpoints go to runs/RUN/STAGE/."),
    size: str = typer.Option("tiny", "--size", help="tiny | tiny112 | small | full"),
    steps: int = typer.Option(100, "--steps", min=1),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Images per rank per step."),
    init: str | None = typer.Option(None, "--init", help="Checkpoint to start from (s3:// or a path)."),
    nnodes: int = typer.Option(1, "--nnodes", min=1),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes per node."),
    gpus: int = typer.Option(0, "--gpus", min=0, help="GPUs per node (kubernetes)."),
    scheduler: str = typer.Option("local_cwd", "--scheduler", help="local_cwd | kubernetes"),
    image: str = typer.Option(TRAINER_IMAGE, "--image", help="Trainer image."),
    pull_secrets: list[str] = typer.Option(
        [], "--image-pull-secret", help="Secret the pods pull the image with (kubernetes); repeat."
    ),
    queue: str = typer.Option("sam3", "--queue", help="Volcano queue (kubernetes)."),
    namespace: str = typer.Option("sam3", "--namespace", help="Namespace (kubernetes)."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", min=1),
    metrics_port: int = typer.Option(0, "--metrics-port", min=0, help="Rank r serves /metrics on base+r."),
    lr: float = typer.Option(1e-4, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    dry_run: bool = typer.Option(
        False, "--dryrun", help="Print the job the scheduler would get; run nothing."
    ),
) -> None:
    """Train one stage; prints the committed checkpoint URI last (or the job spec with --dryrun)."""
    from pydantic import ValidationError

    from components.errors import ConfigError
    from components.train.config import TrainConfig
    from components.train.job import dryrun, run_stage
    from components.train.launcher import Scheduler
    from components.train.placement import Cluster, Resources
    from pipeline.commands.progress import stderr

    if scheduler not in ("local_cwd", "kubernetes"):
        raise ConfigError(f"--scheduler {scheduler!r}: expected local_cwd or kubernetes")
    try:
        cfg = TrainConfig.model_validate(
            {
                "stage": stage,
                "dataset": dataset,
                "eval_dataset": eval_dataset,
                "run_id": run_id,
                "size": size,
                "steps": steps,
                "batch_size": batch_size,
                "init": init,
                "checkpoint_every": checkpoint_every,
                "metrics_port": metrics_port,
                "seed": seed,
                "optim": {"lr": lr},
            }
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}") from None
    resources = Resources(nnodes=nnodes, nproc=nproc, gpus=gpus)
    try:
        cluster = Cluster(
            queue=queue, namespace=namespace, trainer_image=image, image_pull_secrets=pull_secrets
        )
    except ValidationError as exc:
        raise ConfigError(f"--image-pull-secret: {exc.errors()[0]['msg']}") from None
    sched: Scheduler = "kubernetes" if scheduler == "kubernetes" else "local_cwd"
    if dry_run:
        typer.echo(dryrun(cfg, resources, sched, cluster=cluster))
        return
    from components.embedded_store import default_store

    result = run_stage(
        cfg,
        resources,
        sched,
        default_store(),
        cluster=cluster,
        log_lines=lambda line: stderr.print(line, markup=False, highlight=False, soft_wrap=True),
    )
    typer.echo(result.checkpoint)
