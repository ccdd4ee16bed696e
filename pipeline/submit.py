"""Compile the pipeline for Kubeflow, and submit it to a KFP host without starting duplicates.

A run is named after the config's content hash: the same config submitted
twice (a re-synced GitOps trigger, a repeated CI job) finds the existing run
instead of starting a second one, as long as that run is pending, running or
succeeded. A run that failed, errored or was cancelled does not count: the
config is submitted again as a new run named ``<name>-retry-<n>`` (KFP keeps
the failed run, and its name, for its logs). A recurring run is named the same
way (without retries: it starts runs of its own on its schedule).

Authentication: a bearer token from ``SAM3_KFP_TOKEN``, else the token file
``token_path`` (a projected service account token with audience
``pipelines.kubeflow.org``, re-read before each request because the kubelet
rotates it), else kfp.Client's own discovery. That discovery finds the
projected token only when no host is given (the client then also picks the
in-cluster address itself): with an explicit host it sends no credentials, so
a pod that names its KFP host must pass the token path.

The namespace model (manifests/README.md): the config's ``kubernetes.namespace``
is a Kubeflow profile namespace of a multi-user deployment, holding the
pipeline's service account, the S3 Secret and the rights. The run goes there
(its experiment is found or created there), so its pods run there, as the
pipeline's service account (``kubernetes.pipeline_service_account``), and its
train steps submit their training jobs into the same namespace. A
``namespace`` other than the config's is refused: the run's pods would run in
one namespace and its training jobs in another, and neither has the other's
service accounts, Secret and rights. A single-user deployment runs every run
in its own namespace whatever the request says, so ``submit`` refuses it too.

The compiled pipeline needs a KFP backend of at least ``MIN_KFP_BACKEND``:
``submit`` asks the API server its version and mode first, and refuses an
older or a single-user one, saying why, before it creates anything (an
experiment, a run, an upload).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.errors import ConfigError, LaunchError
from pipeline.config import PipelineConfig
from pipeline.dag import build_pipeline

log = logging.getLogger(__name__)

TOKEN_ENV = "SAM3_KFP_TOKEN"  # a bearer token; before the token path, if both are given

MIN_KFP_BACKEND = (2, 16)
KFP_BACKEND_NEEDS = (
    "the steps' security context (kfp-kubernetes set_security_context) needs 2.16, whose backend also "
    "gives its own driver and launcher containers what Pod Security `restricted` requires (an older "
    "backend fails to compile the run, and its pods would be refused in the namespace), the exit "
    "handler's dsl.PipelineTaskFinalStatus 2.14, the steps' retries 2.5, the reports and notes that "
    "steps behind a gate output (artifacts of a nested DAG) 2.3"
)
"""Why: the newest feature the pipeline uses sets the minimum."""


def compile_pipeline(cfg: PipelineConfig, out: Path) -> Path:
    from kfp import compiler

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.partial{out.suffix}")  # kfp wants the suffix
    compiler.Compiler().compile(build_pipeline(cfg, target="kubernetes"), str(partial))
    partial.replace(out)
    return out


def run_name(cfg: PipelineConfig) -> str:
    return f"{cfg.name}-{cfg.content_hash()[:12]}"


def name_filter(name: str, operation: str = "EQUALS") -> str:
    """A KFP API filter selecting runs (or recurring runs) by display name (``operation`` ``IS_SUBSTRING``:
    those whose name contains ``name``)."""
    return json.dumps({"predicates": [{"key": "display_name", "operation": operation, "string_value": name}]})


ENDED_UNDONE = frozenset({"FAILED", "CANCELING", "CANCELED"})
"""Run states (KFP v2's V2beta1RuntimeState) of a run that ended, or is ending, without its work done: the
config is submitted again. In any other state (PENDING, RUNNING, PAUSED, SUCCEEDED, SKIPPED, or one not
known here, such as a newer server's) the run counts as submitted: a duplicate run is worse than a retry
left to the user."""

RETRY_SUFFIX = "-retry-"


def retry_number(base: str, display_name: str) -> int | None:
    """0 for the first run of ``base``, n for its retry ``<base>-retry-<n>``, None for another name."""
    if display_name == base:
        return 0
    found = re.fullmatch(re.escape(base + RETRY_SUFFIX) + r"([1-9][0-9]*)", display_name)
    return int(found[1]) if found else None


def _state(run: Any) -> str:
    state = getattr(run, "state", None)
    return str(getattr(state, "value", state) or "RUNTIME_STATE_UNSPECIFIED").upper()


@dataclass
class Submitted:
    name: str
    id: str
    created: bool  # False: a run of this config already existed
    recurring: bool
    retried: str | None = None  # the run that failed or was cancelled, when this one starts it again


def submit(
    cfg: PipelineConfig,
    host: str | None,
    *,
    experiment: str = "sam3",
    recurring: str | None = None,
    namespace: str | None = None,
    token_path: Path | None = None,
) -> Submitted:
    """Start a run of ``cfg`` (or a recurring run on the ``recurring`` cron schedule), unless one exists,
    in ``namespace`` (default: the config's ``kubernetes.namespace``, the only one accepted) as the
    pipeline's service account."""
    if cfg.scheduler != "kubernetes":
        raise ConfigError("submit runs on a cluster: set `scheduler: kubernetes` in the config")
    namespace = namespace_of(cfg, namespace)
    name = run_name(cfg)
    try:
        client = kfp_client(host, namespace, token_path)
        check_backend(client, host, namespace)
        exp = _experiment(client, experiment, namespace)
        if recurring is None:
            runs = _runs_of(client, exp, namespace, name)
            for _, run in runs:
                if _state(run) not in ENDED_UNDONE:
                    return Submitted(str(run.display_name), str(run.run_id), created=False, recurring=False)
            retried = None
            if runs:
                last, run = runs[0]
                retried = f"{run.display_name} ({_state(run).lower()})"
                name = f"{name}{RETRY_SUFFIX}{last + 1}"
            result = client.create_run_from_pipeline_func(
                build_pipeline(cfg, target="kubernetes"),
                run_name=name,
                experiment_id=exp,
                namespace=namespace,
                service_account=cfg.kubernetes.pipeline_service_account,
            )
            return Submitted(name, result.run_id, created=True, recurring=False, retried=retried)
        jobs = client.list_recurring_runs(experiment_id=exp, namespace=namespace, filter=name_filter(name))
        if jobs.recurring_runs:
            return Submitted(name, jobs.recurring_runs[0].recurring_run_id, created=False, recurring=True)
        with tempfile.TemporaryDirectory() as tmp:
            package = compile_pipeline(cfg, Path(tmp) / "pipeline.yaml")
            job = client.create_recurring_run(
                exp,
                name,
                cron_expression=recurring,
                pipeline_package_path=str(package),
                service_account=cfg.kubernetes.pipeline_service_account,
                max_concurrency=1,
                no_catchup=True,
            )
        return Submitted(name, job.recurring_run_id, created=True, recurring=True)
    except (ConfigError, LaunchError):
        raise
    except Exception as exc:  # the KFP client raises many kinds (connection, HTTP, auth)
        raise LaunchError(f"KFP at {host or 'in-cluster'}: {type(exc).__name__}: {_short(exc)}") from exc


def kfp_client(host: str | None, namespace: str, token_path: Path | None = None) -> Any:
    """A kfp.Client authenticated as the module's docstring says."""
    import kfp

    token = os.environ.get(TOKEN_ENV) or None
    credentials = None if token or token_path is None else _token_file_credentials(token_path)
    return kfp.Client(host=host, existing_token=token, credentials=credentials, namespace=namespace)


FINISHED = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
"""Run states after which a run does nothing more."""


def wait_for_runs(
    run_ids: list[str],
    host: str | None,
    namespace: str,
    *,
    token_path: Path | None = None,
    poll_s: float = 60.0,
    timeout_s: float = 7 * 24 * 3600.0,
) -> dict[str, str]:
    """Poll KFP until every run has finished (or ``timeout_s`` passed); run id -> its last state."""
    import time

    client = kfp_client(host, namespace, token_path)
    states: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            states = {run_id: _state(client.get_run(run_id)) for run_id in run_ids}
        except Exception as exc:  # the KFP client raises many kinds (connection, HTTP, auth)
            raise LaunchError(f"KFP at {host or 'in-cluster'}: {type(exc).__name__}: {_short(exc)}") from exc
        if all(s in FINISHED for s in states.values()) or time.monotonic() > deadline:
            return states
        log.info("waiting for %d of %d runs", sum(s not in FINISHED for s in states.values()), len(states))
        time.sleep(poll_s)


def _runs_of(client: Any, experiment_id: str, namespace: str, name: str) -> list[tuple[int, Any]]:
    """The runs of config run name ``name`` in the experiment, the first and its retries, as (retry
    number, run), the latest first; all pages of the answer."""
    found: list[tuple[int, Any]] = []
    token = ""
    while True:
        page = client.list_runs(
            experiment_id=experiment_id,
            namespace=namespace,
            filter=name_filter(name, "IS_SUBSTRING"),
            page_token=token,
            page_size=100,
        )
        for run in page.runs or []:
            number = retry_number(name, str(getattr(run, "display_name", "")))
            if number is not None:
                found.append((number, run))
        token = getattr(page, "next_page_token", None) or ""
        if not token:
            return sorted(found, key=lambda item: item[0], reverse=True)


def namespace_of(cfg: PipelineConfig, namespace: str | None) -> str:
    """The profile namespace the run goes to: the config's ``kubernetes.namespace``. An explicit
    ``namespace`` must be that one (the run's pods run where the run is, its training jobs in
    ``kubernetes.namespace``, and only that namespace has their service accounts, Secret and rights)."""
    want = cfg.kubernetes.namespace
    if namespace is not None and namespace != want:
        raise ConfigError(
            f"--namespace {namespace}: the config places the pipeline in namespace {want!r} "
            "(kubernetes.namespace): its steps' pods run in the namespace the run is submitted to, and its "
            "training jobs, service accounts, Secret and rights are in kubernetes.namespace. Submit to "
            f"{want!r}, or set kubernetes.namespace: {namespace} in the config (and deploy the manifests "
            "there)"
        )
    return want


def _token_file_credentials(path: Path) -> Any:
    """kfp's credentials for a projected service account token file, read once here so that a missing or
    unreadable token fails before anything is sent."""
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    try:
        if not path.read_text().strip():
            raise ConfigError(f"--token-path {path}: the token file is empty")
    except OSError as exc:
        raise ConfigError(f"--token-path {path}: cannot read the token: {exc.strerror}") from None
    return ServiceAccountTokenVolumeCredentials(path=str(path))


VERSION_FIELDS = ("tag_name", "apiServerTagName")
"""Where a healthz answer names the API server's release: the API server's own field, and the one the
Kubeflow UI's proxy (a host that is the UI's address) reports it under."""


def healthz(client: Any) -> dict[str, Any]:
    """The KFP API server's healthz answer (``/apis/v2beta1/healthz``), read as JSON: the SDK's healthz
    model keeps only ``multi_user`` and ``pipeline_store``. Raises ``ValueError`` for a body that is no
    JSON object."""
    response = client.healthzs.healthz_service_get_healthz(_preload_content=False)
    body = json.loads(response.data or b"{}")
    if not isinstance(body, dict):
        raise ValueError(f"the healthz answer is no JSON object: {str(body)[:80]}")
    return body


def version_of(body: dict[str, Any]) -> str | None:
    """The release the server's image was built as, from a healthz answer; None when it reports none
    (``unknown``: a build without a tag)."""
    tag = next((str(body[f]).strip() for f in VERSION_FIELDS if body.get(f)), "")
    return tag if tag and tag.lower() != "unknown" else None


MULTI_USER_FIELDS = ("multi_user", "apiServerMultiUser")
"""Where a healthz answer says whether the deployment is multi-user: the API server's own field, and the
one the Kubeflow UI's proxy reports it under."""


def check_backend(client: Any, host: str | None, namespace: str) -> None:
    """Refuse a KFP backend older than ``MIN_KFP_BACKEND``, or a single-user one, before anything is
    created. When the server answers without a version that can be read, warn and go on (the run may
    then fail to start on an older backend); a server that cannot be reached or refuses the request
    fails as any other call."""
    where = f"KFP at {host or 'in-cluster'}"
    need = ".".join(map(str, MIN_KFP_BACKEND))
    try:
        body = healthz(client)
    except Exception as exc:
        if not isinstance(exc, ValueError) and getattr(exc, "status", None) != 404:
            raise  # unreachable, unauthorised, a server error: the caller reports it
        body, tag, why = {}, None, f"no version: {type(exc).__name__}: {_short(exc)}"
    else:
        tag = version_of(body)
        why = f"the version {tag!r}" if tag else "no version"
    found = re.match(r"v?(\d+)\.(\d+)", tag or "")
    if found is not None and (int(found[1]), int(found[2])) < MIN_KFP_BACKEND:
        raise LaunchError(
            f"{where} is version {tag}; this pipeline needs KFP >= {need}: {KFP_BACKEND_NEEDS}. "
            "Nothing was submitted: upgrade Kubeflow Pipelines"
        )
    if next((body[f] for f in MULTI_USER_FIELDS if f in body), None) is False:
        raise LaunchError(
            f"{where} is a single-user deployment: it runs every run's pods in its own namespace, whatever "
            f"the run asks for, and this pipeline's service account, S3 Secret and rights are in the "
            f"profile namespace {namespace!r} (manifests/README.md). Nothing was submitted: use Kubeflow "
            "Pipelines in multi-user mode, with a profile for that namespace"
        )
    if found is None:
        log.warning(
            "%s reports %s, so it is not checked that it is KFP >= %s, which this pipeline needs (%s)",
            where,
            why,
            need,
            KFP_BACKEND_NEEDS,
        )


def _experiment(client: Any, name: str, namespace: str | None) -> str:
    try:
        return str(client.get_experiment(experiment_name=name, namespace=namespace).experiment_id)
    except ValueError:  # no such experiment
        return str(client.create_experiment(name, namespace=namespace).experiment_id)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
