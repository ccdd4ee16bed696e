"""The pods a KFP backend makes of the compiled pipeline, as far as Pod Security admission looks at them.

There is no KFP backend here. A run's pods are built on the cluster, by KFP's Argo compiler (at run
creation), KFP's driver (the step's Kubernetes settings) and Argo (its init and wait containers), out of
the compiled YAML. What they add to a pod's security fields is restated here from the sources of the
minimum backend, ``pipeline.submit.MIN_KFP_BACKEND`` (kubeflow/pipelines 2.16.0):

- ``backend/src/v2/compiler/argocompiler/security_context.go``: a step's (executor's) pod gets the
  runtime's default seccomp profile; its main container no privilege escalation, no capabilities and
  that seccomp profile; the launcher's init container (``kfp-launcher``, which copies KFP's launcher
  into the pod) all of that and ``runAsNonRoot``. The drivers' pods (one before each step and DAG) get
  all of it on the pod and their container.
- ``backend/src/v2/driver/k8s.go``: the step's ``securityContext`` from the compiled platform spec
  (``kfp.kubernetes.set_security_context``: ``runAsUser``, ``runAsGroup``, ``runAsNonRoot``) on the main
  container, and capabilities dropped.
- ``manifests/kustomize/third-party/argo/base/workflow-controller-configmap-patch.yaml``: Argo's own
  containers (``init`` and ``wait``) get the ``executor.securityContext`` of the workflow controller's
  configuration: non-root (65532), no privilege escalation, no capabilities, the default seccomp profile.

Volumes: KFP's executor mounts emptyDir volumes (the launcher, scratch folders), Argo its ``var-run-argo``
emptyDir; the step's own volumes come from its platform spec.
"""

from __future__ import annotations

import copy
from typing import Any

NO_ESCALATION = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""What KFP's compiler puts on a step's main container."""
KFP_SYSTEM_CONTAINER = {**NO_ESCALATION, "runAsNonRoot": True}
"""What KFP's compiler puts on its own containers (the launcher's init container, the drivers)."""
ARGO_EXECUTOR = {**KFP_SYSTEM_CONTAINER, "runAsUser": 65532}
"""Argo's init and wait containers, as KFP's manifests configure the workflow controller."""
KFP_EMPTY_DIRS = [
    "kfp-launcher", "gcs-scratch", "s3-scratch", "minio-scratch", "dot-local-scratch", "dot-cache-scratch",
    "dot-config-scratch",
]  # fmt: skip
ARGO_EMPTY_DIRS = ["var-run-argo"]

PLATFORM_VOLUMES = {
    "emptyDirMounts": lambda m: {"name": m["volumeName"], "emptyDir": {}},
    "secretAsVolume": lambda m: {"name": m["secretName"], "secret": {"secretName": m["secretName"]}},
    "configMapAsVolume": lambda m: {"name": m["configMapName"], "configMap": {"name": m["configMapName"]}},
    "pvcMount": lambda m: {"name": m.get("constant", "pvc"), "persistentVolumeClaim": {"claimName": "x"}},
    "genericEphemeralVolume": lambda m: {"name": m["volumeName"], "ephemeral": {}},
}
"""How the step's volumes in the compiled platform spec become pod volumes (by kind, for admission)."""


def _int(value: Any) -> Any:
    """int64 fields come out of the compiled protobuf as JSON strings."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


def step_pod(platform: dict[str, Any]) -> dict[str, Any]:
    """The pod spec (security fields and volumes) of one step, from its executor's platform spec
    (``platforms.kubernetes.deploymentSpec.executors.<executor>`` of the compiled YAML)."""
    main = copy.deepcopy(NO_ESCALATION)
    for key, value in (platform.get("securityContext") or {}).items():
        main[key] = _int(value)
    if platform.get("securityContext"):
        main["capabilities"] = {"drop": ["ALL"]}
    volumes = [{"name": name, "emptyDir": {}} for name in KFP_EMPTY_DIRS + ARGO_EMPTY_DIRS]
    for key, make in PLATFORM_VOLUMES.items():
        volumes += [make(m) for m in platform.get(key) or []]
    return {
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [
            {"name": "init", "securityContext": dict(ARGO_EXECUTOR)},
            {"name": "kfp-launcher", "securityContext": dict(KFP_SYSTEM_CONTAINER)},
        ],
        "containers": [
            {"name": "wait", "securityContext": dict(ARGO_EXECUTOR)},
            {"name": "main", "securityContext": main},
        ],
        "volumes": volumes,
    }


def driver_pod() -> dict[str, Any]:
    """The pod of a driver (KFP's own image), before each step and DAG of the run."""
    return {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [{"name": "init", "securityContext": dict(ARGO_EXECUTOR)}],
        "containers": [
            {"name": "wait", "securityContext": dict(ARGO_EXECUTOR)},
            {"name": "main", "securityContext": dict(KFP_SYSTEM_CONTAINER)},
        ],
        "volumes": [{"name": name, "emptyDir": {}} for name in ARGO_EMPTY_DIRS],
    }
