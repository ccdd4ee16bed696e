"""Meta's reference cgF1 evaluator as a command, for side-by-side benchmarks.

    python benchmarks/reference_evaluate.py --gt GT.json [--gt GT_b.json ...] --pred PRED.json
        [--iou-type segm|bbox] --out METRICS.json

Loads ``sam3/eval/cgf1_eval.py`` by file path (the `sam3` package's ``__init__``
builds models and imports torch; the evaluator itself needs only numpy,
pycocotools and scipy), runs ``CGF1Evaluator`` and writes its metrics as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType


def load_reference() -> ModuleType:
    spec = importlib.util.find_spec("sam3")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "eval" / "cgf1_eval.py"
    module_spec = importlib.util.spec_from_file_location("_sam3_reference_cgf1_eval", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", action="append", required=True)
    parser.add_argument("--pred", required=True)
    parser.add_argument("--iou-type", default="segm", choices=["segm", "bbox"])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    reference = load_reference()
    with contextlib.redirect_stdout(sys.stderr):
        metrics = reference.CGF1Evaluator(args.gt, iou_type=args.iou_type).evaluate(args.pred)
    Path(args.out).write_text(json.dumps(metrics, indent=1))
    print(args.out)


if __name__ == "__main__":
    main()
