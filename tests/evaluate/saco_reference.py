"""Meta's reference evaluators, loaded from the installed `sam3` package without its heavy `__init__`.

- Images: ``sam3/eval/cgf1_eval.py`` imports only numpy, pycocotools, scipy and tqdm,
  so it is loaded by file path under a private module name.
- Videos: ``sam3/eval/saco_veval_evaluators.py`` imports other `sam3` submodules;
  they are loaded from the package's directories through stand-in parent packages
  (``sam3``, ``sam3.eval``, ...) whose ``__init__`` is never run, and ``sys.modules``
  is restored afterwards.

Results are returned under the reference's metric names (``cgF1``, ``cgF1@0.5``,
``positive_micro_F1``, ``IL_MCC``, ...) on its 0-1 scale.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import types
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from components.evaluate import EvaluationResult

_REFERENCE_NAMES = {  # reference name -> (our field, scale)
    "cgF1": ("cgF1", 100.0),
    "precision": ("precision", 1.0),
    "recall": ("recall", 1.0),
    "F1": ("F1", 1.0),
    "positive_macro_F1": ("positive_macro_F1", 1.0),
    "positive_micro_F1": ("pmF1", 100.0),
    "positive_micro_precision": ("pm_precision", 1.0),
}
_IMAGE_LEVEL = ["IL_precision", "IL_recall", "IL_F1", "IL_FPR", "IL_MCC"]


def sam3_dir() -> Path:
    spec = importlib.util.find_spec("sam3")  # finds the package without importing it
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def cgf1_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_sam3_reference_cgf1_eval", sam3_dir() / "eval" / "cgf1_eval.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_image_metrics(
    gt_paths: list[Path], pred_path: Path, iou_type: str = "segm"
) -> dict[str, float]:
    module = cgf1_module()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference's own numpy warnings (0/0 when no positive pair)
        evaluator = module.CGF1Evaluator([str(p) for p in gt_paths], iou_type=iou_type)
        out = evaluator.evaluate(str(pred_path))
    prefix = f"cgF1_eval_{iou_type}_"
    return {k[len(prefix) :]: v for k, v in out.items()}


@contextlib.contextmanager
def video_reference() -> Iterator[types.ModuleType]:
    """``sam3.eval.saco_veval_evaluators`` loaded without running ``sam3/__init__.py``."""
    saved = {k: v for k, v in sys.modules.items() if k == "sam3" or k.startswith("sam3.")}
    root = sam3_dir()
    try:
        for name in ["sam3", "sam3.eval", "sam3.model", "sam3.train", "sam3.train.utils"]:
            stand_in = types.ModuleType(name)
            stand_in.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
            sys.modules[name] = stand_in
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module("sam3.eval.saco_veval_evaluators")
        yield module
    finally:
        for k in [k for k in sys.modules if k == "sam3" or k.startswith("sam3.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def reference_video_metrics(
    module: types.ModuleType, gt_path: Path, pred_path: Path, iou_type: str = "segm"
) -> dict[str, float]:
    """Run the reference ``VideoCGF1Evaluator`` and read every metric off its inner evaluator."""
    captured: list[Any] = []
    base: Any = getattr(module, "VideoDemoF1Eval")  # noqa: B009

    class Recording(base):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            captured.append(self)

    setattr(module, "VideoDemoF1Eval", Recording)  # noqa: B010
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module.VideoCGF1Evaluator(str(gt_path), iou_types=[iou_type]).evaluate(str(pred_path))
    finally:
        setattr(module, "VideoDemoF1Eval", base)  # noqa: B010
    names = sys.modules["sam3.eval.cgf1_eval"].CGF1_METRICS
    out = {}
    for metric, value in zip(names, captured[0].stats, strict=True):
        suffix = "" if metric.iou_threshold is None else f"@{metric.iou_threshold}"
        out[f"{metric.name}{suffix}"] = float(value)
    return out


def ours_by_reference_name(result: EvaluationResult) -> dict[str, float]:
    """Our result under the reference's names and scale."""
    out: dict[str, float] = {name: getattr(result, name) for name in _IMAGE_LEVEL}
    per = result.per_threshold
    i50, i75 = per.iou_thresholds.index(0.5), per.iou_thresholds.index(0.75)
    for ref_name, (field, scale) in _REFERENCE_NAMES.items():
        out[ref_name] = getattr(result, field) / scale
        values = getattr(per, field)
        out[f"{ref_name}@0.5"] = values[i50] / scale
        out[f"{ref_name}@0.75"] = values[i75] / scale
    return out


def differences(ours: dict[str, float], reference: dict[str, float], tol: float = 1e-6) -> dict[str, tuple]:
    """Metrics that differ by more than ``tol`` (every reference metric must be present in ours)."""
    return {k: (ours.get(k), v) for k, v in reference.items() if k not in ours or abs(ours[k] - v) > tol}
