"""KFP component: the gate after a stage; its boolean output drives the pipeline's dsl.If.

The output is the single return value (``Output``): kfp's local runner resolves
conditions on outputs named that way. The reasons, for both outcomes, are a
Markdown artifact for the UI and a record in the store.
"""

from kfp import dsl

from components.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def gate_stage(
    stage: str,
    run_id: str,
    execution: str,
    metrics_uri: str,
    gate: str,
    model: str,
    base_metrics: str,
    decision: dsl.Output[dsl.Markdown],
) -> bool:
    """Thresholds on cgF1 / IL_MCC / pmF1 (pretrain: recognition AUC), no regression against production
    nor against the run's base (``base_metrics``: its evaluation's metrics.json, "" without a base);
    True to go on."""
    from pathlib import Path

    from components.gate.policy import Gate
    from components.gate.policy import gate_stage as decide_stage
    from components.progress import step_logging
    from components.report.outcome import gate_key
    from components.storage import ObjectStore

    step_logging()
    result = decide_stage(
        ObjectStore.from_env(),
        stage=stage,
        gate=Gate.model_validate_json(gate),
        metrics_uri=metrics_uri,
        model=model,
        run_id=run_id,
        record_key=gate_key(run_id, execution, stage),
        base_metrics_uri=base_metrics or None,
    )
    verdict = "passed" if result.passed else "FAILED"
    lines = [f"## {stage} gate {verdict}", ""] + [f"- {reason}" for reason in result.reasons]
    Path(decision.path).write_text("\n".join(lines) + "\n")
    return result.passed
