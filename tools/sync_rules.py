"""Write manifests/monitoring/prometheusrule.yaml from the plain rules file (its spec is that file).

    python -m tools.sync_rules          # rewrite it
    python -m tools.sync_rules --check  # exit 1 when it is stale

The rules live in one place, ``manifests/monitoring/rules/sam3.rules.yaml``, where
``promtool check rules`` and ``promtool test rules`` run on them; the
PrometheusRule embeds the same text (comments included) under ``spec:``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tools.generated import sync

MONITORING = Path(__file__).resolve().parents[1] / "manifests" / "monitoring"
RULES = MONITORING / "rules" / "sam3.rules.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"

HEADER = """\
# GENERATED from rules/sam3.rules.yaml by `python -m tools.sync_rules`: edit that file.
# The prometheus-operator loads these groups into every Prometheus whose ruleSelector matches
# the labels below (kube-prometheus-stack selects `release: <its release name>`; patch the
# label in an overlay if yours differs).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: sam3-rules
  labels:
    app.kubernetes.io/name: sam3-pipeline
    app.kubernetes.io/component: monitoring
    release: kube-prometheus-stack
spec:
"""


def render() -> str:
    body = [
        line for line in RULES.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    return HEADER + "".join(f"  {line}\n" for line in body)


def main(argv: list[str]) -> int:
    return sync(PROMETHEUS_RULE, render(), "tools.sync_rules", argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
