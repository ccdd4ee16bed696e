"""KFP component: add hard negative noun phrases to a dataset (a new version)."""

from kfp import dsl

from components.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def mine_hard_negatives(data: str, dataset: str) -> str:
    """Up to data.negatives_per_image closest absent concepts per image; returns the new dataset URI."""
    import logging

    from components.ingest.config import DataConfig
    from components.negatives.negatives import hard_negatives
    from components.progress import log_progress, step_logging
    from components.storage import ObjectStore

    step_logging()
    cfg = DataConfig.model_validate_json(data)
    progress = log_progress(logging.getLogger("negatives"))
    return hard_negatives(cfg, ObjectStore.from_env(), dataset, progress)
