"""Where a step's pod runs on the cluster, against where the pipeline config places the pipeline.

A run created with ``sam3-pipeline submit`` goes to the config's namespace (``kubernetes.namespace``, a
Kubeflow profile namespace) and runs as the pipeline's service account
(``kubernetes.pipeline_service_account``). A run created in the KFP UI gets both from whoever creates it:
created as the profile's default service account (``default-editor``), which may not submit the training
jobs, it would ingest and mine negatives for hours and fail at its first train step. The compiled
pipeline gives every step its pod's namespace and service account (the downward API) beside the
config's, and the first step stops the run when they differ. Where none is set (the local runner, a CLI
command), nothing is checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from components.errors import ConfigError

POD_NAMESPACE_ENV = "SAM3_POD_NAMESPACE"  # the downward API's metadata.namespace
POD_SERVICE_ACCOUNT_ENV = "SAM3_POD_SERVICE_ACCOUNT"  # the downward API's spec.serviceAccountName
NAMESPACE_ENV = "SAM3_NAMESPACE"  # kubernetes.namespace of the config
SERVICE_ACCOUNT_ENV = "SAM3_SERVICE_ACCOUNT"  # kubernetes.pipeline_service_account of the config


def check_pod_identity(env: Mapping[str, str] | None = None) -> None:
    """Raise ``ConfigError`` when this pod runs in another namespace, or as another service account, than
    the config's; nothing when either side is unknown."""
    env = os.environ if env is None else env
    pairs = [(POD_NAMESPACE_ENV, NAMESPACE_ENV), (POD_SERVICE_ACCOUNT_ENV, SERVICE_ACCOUNT_ENV)]
    if all(env.get(pod) and env.get(cfg) for pod, cfg in pairs) and any(
        env[pod] != env[cfg] for pod, cfg in pairs
    ):
        namespace, account = env[NAMESPACE_ENV], env[SERVICE_ACCOUNT_ENV]
        raise ConfigError(
            f"this run's pods run in namespace {env[POD_NAMESPACE_ENV]!r} as service account "
            f"{env[POD_SERVICE_ACCOUNT_ENV]!r}, and the pipeline config places the pipeline in namespace "
            f"{namespace!r} as {account!r} (kubernetes.namespace, kubernetes.pipeline_service_account), "
            f"whose rights the training steps need. Create the run in namespace {namespace!r} with service "
            f"account {account!r}: in the KFP UI, choose that namespace and enter the service account under "
            "'Service Account'; `sam3-pipeline submit` sets both"
        )
