"""KFP component: train one stage as a TorchX job (local torchrun processes or a Volcano job).

A retried pod finds the job it submitted before (``runs/<run_id>/<stage>/job.json``)
and watches it instead of submitting a second one (components.train.job).
"""

from typing import NamedTuple

from kfp import dsl

from components.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train_stage(
    train_config: str,
    dataset: str,
    init: str,
    eval_dataset: str,
    resources: str,
    cluster: str,
    scheduler: str,
    max_restarts: int,
) -> NamedTuple("Trained", [("checkpoint", str), ("steps", int)]):  # type: ignore[valid-type]
    """Train to the step count (resuming from the stage's last checkpoint), streaming the job's log.

    ``init``: the previous stage's checkpoint ("" for the first stage); ``eval_dataset``: the gold dataset
    the pretrain stage scores at each checkpoint ("" for the other stages)."""
    import json
    import sys

    from components.progress import step_logging
    from components.storage import ObjectStore
    from components.train.config import TrainConfig
    from components.train.job import run_stage
    from components.train.placement import Cluster, Resources

    step_logging()
    cfg = TrainConfig.model_validate(
        {
            **json.loads(train_config),
            "dataset": dataset,
            "init": init or None,
            "eval_dataset": eval_dataset or None,
        }
    )
    result = run_stage(
        cfg,
        Resources.model_validate_json(resources),
        "kubernetes" if scheduler == "kubernetes" else "local_cwd",
        ObjectStore.from_env(),
        cluster=Cluster.model_validate_json(cluster),
        max_restarts=max_restarts,
        log_lines=lambda line: print(line, file=sys.stderr, flush=True),
    )
    return (result.checkpoint, result.steps)
