"""A self-contained HTML page for one evaluation: the metrics table and a few predictions drawn.

Kubeflow shows an ``HTML`` output artifact in its UI; images are inlined as
PNG data URIs so the page needs nothing else. Ground truth is drawn in green,
predictions kept at the evaluator's score threshold in red.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from components.evaluate.result import EvaluationResult
from components.schemas import MediaRecord, Query

ROWS = ("cgF1", "IL_MCC", "pmF1", "cgF1@0.5", "cgF1@0.75", "IL_precision", "IL_recall", "precision", "recall")
GT_RGB, PRED_RGB = (40, 200, 80), (230, 40, 40)


def render_report(
    result: EvaluationResult,
    diagnostics: dict[str, float],
    records: list[MediaRecord],
    predictions: list[dict[str, Any]],
    checkpoint: str,
    examples: int = 4,
    references: dict[str, dict[str, float]] | None = None,
) -> str:
    doc = result.to_json_dict()
    rows = "".join(f"<tr><td>{name}</td><td>{float(doc[name]):.4f}</td></tr>" for name in ROWS)  # type: ignore[arg-type]
    c = result.counts
    summary = (
        f"{c.pairs} image-noun-phrase pairs ({c.IL_TP + c.IL_FN} positive, {c.IL_FP + c.IL_TN} negative); "
        f"{c.kept_predictions} predictions at score &ge; {result.score_threshold}"
    )
    rows += "".join(
        f"<tr><td><i>{name}</i> (diagnostic)</td><td>{value:.4f}</td></tr>"
        for name, value in diagnostics.items()
    )
    gap = _references_table(doc, references or {})
    warnings = "".join(f"<p class=warn>{html.escape(w)}</p>" for w in result.warnings)
    figures = "".join(_figure(r, q, predictions, result.score_threshold) for r, q in _pick(records, examples))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>sam3 evaluation</title>
<style>body{{font-family:sans-serif}} td{{padding:2px 10px}} figure{{display:inline-block;margin:6px}}
.warn{{color:#b00}}</style></head><body>
<h2>Evaluation of {html.escape(checkpoint)}</h2><p>{summary}</p>{warnings}
<table><tr><th>metric</th><th>value</th></tr>{rows}</table>{gap}
<h3>Examples (green: ground truth, red: predictions)</h3>{figures}
</body></html>
"""


def _references_table(doc: dict[str, Any], references: dict[str, dict[str, float]]) -> str:
    """This model beside the reference predictors, by cgF1 (where a good model would land)."""
    if not references:
        return ""
    rows = [("<b>this model</b>", {k: float(doc[k]) for k in ("cgF1", "IL_MCC", "pmF1")})]
    rows += [(html.escape(name), metrics) for name, metrics in references.items()]
    rows.sort(key=lambda row: -row[1]["cgF1"])
    body = "".join(
        f"<tr><td>{name}</td><td>{m['cgF1']:.1f}</td><td>{m['IL_MCC']:.3f}</td><td>{m['pmF1']:.1f}</td></tr>"
        for name, m in rows
    )
    return (
        "<h3>The gap to a good model</h3><p>Reference predictors on the same pairs: the true masks, "
        "with some words of the phrase ignored (score 1).</p>"
        f"<table><tr><th>predictor</th><th>cgF1</th><th>IL_MCC</th><th>pmF1</th></tr>{body}</table>"
    )


def _pick(records: list[MediaRecord], k: int) -> list[tuple[MediaRecord, Query]]:
    """Up to k pairs: positives first, then one negative."""
    positives = [(r, q) for r in records for q in r.queries if q.positive]
    negatives = [(r, q) for r in records for q in r.queries if not q.positive]
    if k <= 0:
        return []
    return positives[: max(k - 1, 1)] + negatives[: k - max(k - 1, 1)]


def _figure(record: MediaRecord, query: Query, predictions: list[dict[str, Any]], threshold: float) -> str:
    image = np.asarray(Image.open(io.BytesIO(record.frames[0])).convert("RGB")).astype(np.float32)
    pair = int(query.origin_id)
    kept = [p for p in predictions if p["image_id"] == pair and p["score"] >= threshold]
    gt = [m for inst in query.instances for m in inst.masks[:1] if m]
    size = [record.height, record.width]
    for counts, rgb in [*((m, GT_RGB) for m in gt), *((p["segmentation"]["counts"], PRED_RGB) for p in kept)]:
        mask = mask_utils.decode({"size": size, "counts": counts.encode()}).astype(bool)
        image[mask] = 0.5 * image[mask] + 0.5 * np.array(rgb, dtype=np.float32)
    buf = io.BytesIO()
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    caption = f"{html.escape(query.noun_phrase)}: {len(gt)} true, {len(kept)} predicted"
    img = f'<img src="data:image/png;base64,{data}" width=224>'
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"
