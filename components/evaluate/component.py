"""KFP component: evaluate a stage's checkpoint on the gold set; metrics and an HTML report for the UI."""

from kfp import dsl

from components.images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def evaluate_stage(
    stage: str,
    run_id: str,
    checkpoint: str,
    gold: str,
    data: str,
    max_images: int,
    examples: int,
    size: str,
    base_metrics: str,
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.HTML],
    probes: str = "[]",
) -> str:
    """cgF1, IL_MCC, pmF1 (...) of the checkpoint's predictions (video stages: also on the gold videos;
    the pretrain stage: recognition AUC of its presence logits, overall and by phrase length);
    returns the metrics.json URI.

    ``stage`` "base": the model the run starts from (components.promote.base), at ``size`` (the first
    stage's; "": the size in the checkpoint's config.json). ``base_metrics``: the base's metrics.json,
    shown beside this stage's in the report ("" without a base). ``probes``: a JSON list of
    components.evaluate.probes.Probe, scored beside the headline into ``eval/probes/`` (exemplar prompts,
    the score without presence)."""
    import json
    import logging
    import tempfile
    from pathlib import Path

    from components.evaluate.probes import Probe, evaluate_probes
    from components.evaluate.result import VideoEvaluation
    from components.evaluate.stage import (
        evaluate_alignment_checkpoint,
        evaluate_checkpoint,
        evaluate_video_checkpoint,
    )
    from components.ingest.config import DataConfig
    from components.ingest.datasets import gold_annotations, gold_video_annotations
    from components.progress import log_progress, step_logging
    from components.schemas import evaluation_prefix
    from components.storage import ObjectStore
    from components.train.config import ALIGN_STAGE, VIDEO_STAGES
    from components.train.history import read_history

    step_logging()
    store = ObjectStore.from_env()
    history = read_history(store, run_id, stage)
    base = store.get_json(store.key_of(base_metrics)).get("result") if base_metrics else None
    if stage == ALIGN_STAGE:  # stage 0 makes no detections to score
        evaluation = evaluate_alignment_checkpoint(
            checkpoint,
            gold,
            store,
            evaluation_prefix(run_id, stage),
            max_images=max_images or None,
            history=history,
        )
    else:
        config = DataConfig.model_validate_json(data)
        references = None
        # the gap to a good model: true masks, some words of the phrase ignored
        if config.synthetic is not None:
            from components.synthetic.baselines import all_predictions

            syn = config.synthetic
            references = all_predictions(syn.gold_images, syn.size, syn.seed)
        progress = log_progress(logging.getLogger(f"evaluate[{stage}]"))
        with tempfile.TemporaryDirectory(prefix="sam3-gold-") as tmp:
            truth_files = gold_annotations(config, store, Path(tmp))

            def videos() -> VideoEvaluation:
                truth = gold_video_annotations(config, store, Path(tmp))
                return evaluate_video_checkpoint(checkpoint, gold, truth, store, progress)

            evaluation = evaluate_checkpoint(
                checkpoint,
                gold,
                truth_files,
                store,
                evaluation_prefix(run_id, stage),
                max_images=max_images or None,
                examples=examples,
                progress=progress,
                references=references,
                video=videos if stage in VIDEO_STAGES else None,
                history=history,
                size=size or None,
                base=base,
            )
            asked = [Probe.model_validate(p) for p in json.loads(probes)]
            probed = evaluate_probes(
                checkpoint,
                gold,
                truth_files,
                store,
                evaluation_prefix(run_id, stage),
                asked,
                max_images=max_images or None,
                size=size or None,
                progress=progress,
            )
            for probe, scores in probed.items():
                for name, value in scores.items():
                    metrics.log_metric(f"{stage}/probe {probe}/{name}", value)
    for name, value in {**evaluation.headline(), **evaluation.diagnostics}.items():
        metrics.log_metric(f"{stage}/{name}", value)
    for words, value in (evaluation.recognition or {}).get("by_length", {}).items():
        metrics.log_metric(f"{stage}/recognition_AUC_{words}_words", value)
    for name, scores in evaluation.references.items():
        metrics.log_metric(f"{stage}/reference {name}/cgF1", scores["cgF1"])
    for name, tracker in (evaluation.video.references if evaluation.video else {}).items():
        for key, value in tracker.model_dump().items():
            metrics.log_metric(f"{stage}/reference {name}/{key}", value)
    Path(report.path).write_text(evaluation.report_html)
    return evaluation.metrics_uri
