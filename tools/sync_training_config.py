"""Write manifests/gitops/training-config.yaml from the cluster config (it is that file, with a header).

    python -m tools.sync_training_config          # rewrite it
    python -m tools.sync_training_config --check  # exit 1 when it is stale

The cluster's training config lives in one place, ``pipeline/configs/cluster.yaml`` (the package ships
it, the tests compile it). Kustomize reads files only from inside the kustomization's folder, so the
GitOps folder holds a generated copy, which Argo CD turns into the retraining Job's ConfigMap. The copy is
the file as it is, ``base:`` included: the retraining run starts from the model that config names.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tools.generated import sync

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_CONFIG = ROOT / "pipeline" / "configs" / "cluster.yaml"
TRAINING_CONFIG = ROOT / "manifests" / "gitops" / "training-config.yaml"

HEADER = """\
# GENERATED from pipeline/configs/cluster.yaml by `python -m tools.sync_training_config`: edit that file.
# Argo CD submits this config: a commit that changes it starts a run (kustomization.yaml, retrain-job.yaml).
"""


def render() -> str:
    return HEADER + CLUSTER_CONFIG.read_text()


def main(argv: list[str]) -> int:
    return sync(TRAINING_CONFIG, render(), "tools.sync_training_config", argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
