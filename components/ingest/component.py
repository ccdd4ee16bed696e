"""KFP components of the data steps: prepare sources, ingest one partition, commit both datasets."""

from typing import NamedTuple

from kfp import dsl

from components.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def prepare_sources(data: str) -> list:
    """Write the synthetic data into the store when configured; return the partitions to ingest. The
    run's first step: it stops a run whose pods run elsewhere than the config places them."""
    import logging

    from components.identity import check_pod_identity
    from components.ingest.config import DataConfig
    from components.ingest.datasets import prepare
    from components.progress import log_progress, step_logging
    from components.storage import ObjectStore

    step_logging()
    check_pod_identity()
    cfg = DataConfig.model_validate_json(data)
    store = ObjectStore.from_env()
    store.ensure_bucket()
    prepare(cfg, store, log_progress(logging.getLogger("prepare_sources")))
    return list(range(cfg.partitions))


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest_partition(data: str, partition: int) -> None:
    """Check and write the shards of one partition of the train and gold datasets."""
    import logging

    from components.ingest.config import DataConfig
    from components.ingest.datasets import ingest_partition as run_partition
    from components.progress import log_progress, step_logging
    from components.storage import ObjectStore

    step_logging()
    cfg = DataConfig.model_validate_json(data)
    progress = log_progress(logging.getLogger(f"ingest[{partition}]"))
    run_partition(cfg, ObjectStore.from_env(), partition, cfg.partitions, progress)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def commit_datasets(data: str) -> NamedTuple("Datasets", [("train", str), ("gold", str)]):  # type: ignore[valid-type]
    """Merge the partitions into the train and gold dataset versions (manifest last)."""

    from components.ingest.config import DataConfig
    from components.ingest.datasets import commit
    from components.progress import step_logging
    from components.storage import ObjectStore

    step_logging()
    uris = commit(DataConfig.model_validate_json(data), ObjectStore.from_env())
    return (uris["train"], uris["gold"])
