"""KFP components: register the gated checkpoint as a new model version and move the alias; resolve the
run's base (the model a fine-tune starts from)."""

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


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def resolve_base(run_id: str, execution: str, base: str, size: str) -> str:
    """The weights URI the config's ``base`` names now (an alias is read here, once per execution), checked
    against the first stage's ``size`` and recorded in the execution's base.json."""
    from components.progress import step_logging
    from components.promote.base import Base, resolve_and_record
    from components.storage import ObjectStore

    step_logging()
    found = resolve_and_record(
        ObjectStore.from_env(), Base.model_validate_json(base), size, run_id, execution
    )
    return found.weights
