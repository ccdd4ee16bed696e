"""KFP component: register the gated checkpoint as a new model version and move the alias."""

from kfp import dsl

from components.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def promote_model(
    run_id: str,
    execution: str,
    checkpoint: str,
    model: str,
    alias: str,
    stages: list,
    train_dataset: str,
    gold_dataset: str,
    config: str,
) -> str:
    """Returns the version's URI (registry/<model>/versions/<N>)."""
    import json

    from components.progress import step_logging
    from components.promote.promote import promote
    from components.storage import ObjectStore

    step_logging()
    promotion = promote(
        ObjectStore.from_env(),
        model=model,
        alias=alias,
        checkpoint=checkpoint,
        run_id=run_id,
        stages=[str(s) for s in stages],
        datasets={"train": train_dataset, "gold": gold_dataset},
        config=json.loads(config),
        execution=execution,
    )
    return promotion.uri
