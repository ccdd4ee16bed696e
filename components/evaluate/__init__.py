"""SAM 3 evaluation: cgF1, IL_MCC, pmF1 for images and videos, the reference's numbers, fast.

``evaluate_images`` / ``evaluate_videos`` read SA-Co ground truth and predictions
and return an ``EvaluationResult`` (the METRICS.json document).
"""

from components.evaluate.cgf1 import evaluate_images
from components.evaluate.result import EvaluationResult
from components.evaluate.video import evaluate_videos

__all__ = ["EvaluationResult", "evaluate_images", "evaluate_videos"]
