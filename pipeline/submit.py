"""Compile the pipeline for Kubeflow, and submit it to a KFP host without starting duplicates.

A run is named after the config's content hash: the same config submitted
twice (a re-synced GitOps trigger, a repeated CI job) finds the existing run
instead of starting a second one. A recurring run is named the same way.

Authentication: a bearer token from ``SAM3_KFP_TOKEN``, else the token file
``token_path`` (a projected service account token with audience
``pipelines.kubeflow.org``, re-read before each request because the kubelet
rotates it), else kfp.Client's own discovery. That discovery finds the
projected token only when no host is given (the client then also picks the
in-cluster address itself): with an explicit host it sends no credentials, so
a pod that names its KFP host must pass the token path.

``namespace``: the Kubeflow profile namespace of a multi-user deployment; the
run's experiment is found or created there, and the run with it (None for a
single-user deployment).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.errors import ConfigError, LaunchError
from pipeline.config import PipelineConfig
from pipeline.dag import build_pipeline

log = logging.getLogger(__name__)

TOKEN_ENV = "SAM3_KFP_TOKEN"  # a bearer token; before the token path, if both are given


def compile_pipeline(cfg: PipelineConfig, out: Path) -> Path:
    from kfp import compiler

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.partial{out.suffix}")  # kfp wants the suffix
    compiler.Compiler().compile(build_pipeline(cfg, target="kubernetes"), str(partial))
    partial.replace(out)
    return out


def run_name(cfg: PipelineConfig) -> str:
    return f"{cfg.name}-{cfg.content_hash()[:12]}"


def name_filter(name: str) -> str:
    """A KFP API filter selecting runs (or recurring runs) by display name."""
    return json.dumps({"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": name}]})


@dataclass
class Submitted:
    name: str
    id: str
    created: bool  # False: a run of this config already existed
    recurring: bool


def submit(
    cfg: PipelineConfig,
    host: str | None,
    *,
    experiment: str = "sam3",
    recurring: str | None = None,
    namespace: str | None = None,
    token_path: Path | None = None,
) -> Submitted:
    """Start a run of ``cfg`` (or a recurring run on the ``recurring`` cron schedule), unless one exists."""
    import kfp

    if cfg.scheduler != "kubernetes":
        raise ConfigError("submit runs on a cluster: set `scheduler: kubernetes` in the config")
    name = run_name(cfg)
    token = os.environ.get(TOKEN_ENV) or None
    credentials = None if token or token_path is None else _token_file_credentials(token_path)
    try:
        client = kfp.Client(
            host=host, existing_token=token, credentials=credentials, namespace=namespace or "kubeflow"
        )
        exp = _experiment(client, experiment, namespace)
        if recurring is None:
            found = (
                client.list_runs(experiment_id=exp, namespace=namespace, filter=name_filter(name)).runs or []
            )
            if found:
                return Submitted(name, found[0].run_id, created=False, recurring=False)
            result = client.create_run_from_pipeline_func(
                build_pipeline(cfg, target="kubernetes"),
                run_name=name,
                experiment_id=exp,
                namespace=namespace,
                service_account=cfg.kubernetes.pipeline_service_account,
            )
            return Submitted(name, result.run_id, created=True, recurring=False)
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


def _experiment(client: Any, name: str, namespace: str | None) -> str:
    try:
        return str(client.get_experiment(experiment_name=name, namespace=namespace).experiment_id)
    except ValueError:  # no such experiment
        return str(client.create_experiment(name, namespace=namespace).experiment_id)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
