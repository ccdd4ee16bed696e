"""Self-contained HTML pages for one evaluation: metrics, learning curves and a few predictions drawn.

Kubeflow shows an ``HTML`` output artifact in its UI, so everything is inline: images as PNG data
URIs, charts as SVG drawn here; nothing is fetched. ``render_report`` is the page of a detection
stage, ``render_recognition_report`` that of the alignment stage (stage 0, no detections). Both draw
the stage's training history (components.train.history) when it was recorded.

Examples are drawn as outlines just outside each mask, so an object keeps its own colour: ground truth
solid, predictions kept at the evaluator's score threshold dashed on top.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from components.evaluate.charts import learning_curves
from components.evaluate.result import EvaluationResult
from components.schemas import MediaRecord, Query

ROWS = ("cgF1", "IL_MCC", "pmF1", "cgF1@0.5", "cgF1@0.75", "IL_precision", "IL_recall", "precision", "recall")
GT_COLOUR, PRED_COLOUR = ("green", (40, 200, 80)), ("red", (230, 40, 40))
FIGURE_WIDTH = 256  # pixels an example is drawn at: outlines stay 2 px whatever the image size
DASH = 6  # contour pixels per dash of a prediction's outline
STYLE = """body{font-family:sans-serif} td{padding:2px 10px} figure{display:inline-block;margin:6px;
vertical-align:top} figcaption{font-size:13px} svg{margin:4px} .warn{color:#b00}"""


def render_report(
    result: EvaluationResult,
    diagnostics: dict[str, float],
    records: list[MediaRecord],
    predictions: list[dict[str, Any]],
    checkpoint: str,
    examples: int = 4,
    references: dict[str, dict[str, float]] | None = None,
    *,
    history: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> str:
    """``base``: the ``result`` of the model the run started from, on the same gold set: a column beside."""
    doc = result.to_json_dict()
    rows = "".join(
        f"<tr><td>{name}</td><td>{float(doc[name]):.4f}</td>"  # type: ignore[arg-type]
        + (f"<td>{float(base[name]):.4f}</td>" if base is not None and name in base else "")
        + "</tr>"
        for name in ROWS
    )
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
    threshold = result.score_threshold
    figures = "".join(_figure(r, q, predictions, threshold) for r, q in _pick(records, examples))
    legend = (
        f"{GT_COLOUR[0]} outline: ground truth, {PRED_COLOUR[0]} dashed outline: predictions "
        f"at score &ge; {threshold}"
    )
    base_head = "<th>base (the model the run started from)</th>" if base is not None else ""
    return _page(
        f"Evaluation of {html.escape(checkpoint)}",
        f"<p>{summary}</p>{warnings}<table><tr><th>metric</th><th>value</th>{base_head}</tr>{rows}</table>{gap}"
        f"{learning_curves(history)}<h3>Examples ({legend})</h3>{figures}",
    )


def render_recognition_report(
    recognition: dict[str, Any], checkpoint: str, history: dict[str, Any] | None = None
) -> str:
    """The alignment stage's page: ``recognition`` is components.evaluate.recognition.recognition_metrics."""
    by_length = sorted(recognition.get("by_length", {}).items(), key=lambda item: int(item[0]))
    rows = "".join(f"<tr><td>{n}</td><td>{auc:.3f}</td></tr>" for n, auc in by_length)
    pairs, positives = recognition.get("pairs", 0), recognition.get("positive_pairs", 0)
    return _page(
        f"Recognition of {html.escape(checkpoint)}",
        f"<p>recognition AUC <b>{recognition['recognition_AUC']:.3f}</b> on {pairs} gold image-noun-phrase "
        f"pairs ({positives} present, {pairs - positives} absent).</p>"
        "<p>The AUC is the chance that the model's presence score ranks a noun phrase present in an "
        "image above one absent from it: 0.5 is chance, 1 a perfect ranking of present over absent "
        "noun phrases on the gold pairs.</p>"
        f"<table><tr><th>words in the phrase</th><th>AUC</th></tr>{rows}</table>{learning_curves(history)}",
    )


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>sam3 evaluation</title>
<style>{STYLE}</style></head><body>
<h2>{title}</h2>{body}
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
    """Up to k pairs, one image at a time in record order (round-robin): positives and, when k >= 2, about
    a third negatives (at least one); an image shows twice only when there are fewer images than pairs."""
    negatives = 0 if k < 2 else max(1, k // 3)
    quota = {True: k - negatives, False: negatives}
    unused = [list(r.queries) for r in records]
    picked: list[tuple[MediaRecord, Query]] = []
    for strict in (True, False):  # quotas first; then whatever is left when one kind ran out
        found = True
        while found and len(picked) < k:
            found = False
            for record, queries in zip(records, unused, strict=True):
                wanted = [q for q in queries if quota[q.positive] > 0 or not strict]
                if len(picked) == k or not wanted:
                    continue
                query = max(wanted, key=lambda q: quota[q.positive])  # the kind most still wanted
                queries.remove(query)
                quota[query.positive] -= 1
                picked.append((record, query))
                found = True
    return picked


def outline(image: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int], *, dashed: bool = False) -> None:
    """Draw ``mask``'s outline on ``image`` (H, W, 3 uint8, in place): 2 px just outside the mask, so the
    object's own pixels keep their colour; ``dashed`` lets an outline drawn below show through."""
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8))
    contours, _ = cv2.findContours(grown, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    line = np.zeros(mask.shape, np.uint8)
    if dashed:
        dashes = [c[i : i + DASH] for c in contours for i in range(0, len(c), 2 * DASH)]
        cv2.polylines(line, dashes, isClosed=False, color=1, thickness=2)
    else:
        cv2.drawContours(line, contours, -1, color=1, thickness=2)
    image[(line > 0) & ~mask.astype(bool)] = rgb


def _figure(record: MediaRecord, query: Query, predictions: list[dict[str, Any]], threshold: float) -> str:
    image = np.asarray(Image.open(io.BytesIO(record.frames[0])).convert("RGB"))
    size = (FIGURE_WIDTH, max(1, round(record.height * FIGURE_WIDTH / record.width)))
    shrink = record.width > FIGURE_WIDTH
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    pair = int(query.origin_id)
    scored = [p for p in predictions if p["image_id"] == pair]
    kept = [p for p in scored if p["score"] >= threshold]
    gt = [m for inst in query.instances for m in inst.masks[:1] if m]
    shape = [record.height, record.width]
    drawn = [
        *((m, GT_COLOUR[1], False) for m in gt),
        *((p["segmentation"]["counts"], PRED_COLOUR[1], True) for p in kept),
    ]
    for counts, rgb, dashed in drawn:
        mask = np.ascontiguousarray(mask_utils.decode({"size": shape, "counts": counts.encode()}))
        outline(image, cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST), rgb, dashed=dashed)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    best = f"best score {max(p['score'] for p in scored):.2f}" if scored else "no prediction"
    caption = (
        f"<b>{html.escape(query.noun_phrase)}</b>: {'present' if query.positive else 'absent'}; "
        f"{len(gt)} true, {len(kept)} predicted; {best}<br><small>{html.escape(record.origin)}</small>"
    )
    img = f'<img src="data:image/png;base64,{data}" width={size[0]} height={size[1]}>'
    return f'<figure style="width:{size[0]}px">{img}<figcaption>{caption}</figcaption></figure>'
