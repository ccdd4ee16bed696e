"""KFP component: the exit handler; records the run's outcome whatever happened."""

from kfp import dsl

from components.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def report_outcome(
    run_id: str,
    execution: str,
    stages: list,
    status: dsl.PipelineTaskFinalStatus,
) -> str:
    """Gather the steps' records into runs/<run_id>/executions/<execution>/outcome.json; returns its URI."""
    import logging

    from components.progress import step_logging
    from components.report.outcome import collect, record
    from components.storage import ObjectStore

    step_logging()
    store = ObjectStore.from_env()
    error = status.error_message or ""
    outcome = collect(store, run_id, execution, [str(s) for s in stages], status.state, error)
    uri = record(store, outcome)
    logging.getLogger("outcome").info("%s: %s (%s)", outcome.verdict, outcome.brief(), uri)
    return uri
