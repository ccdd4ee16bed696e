"""A stand-in for ``kfp.Client``: records how ``submit`` builds it and what it asks the KFP API for.

There is no KFP backend here. Install it with ``install(monkeypatch)``; every client built afterwards is
in ``FakeClient.built``, and each records the calls made on it, in order, in ``calls``. Experiments belong
to a namespace, a run to its experiment's namespace (as in KFP's v2 API): ``created_runs`` and
``created_recurring_runs`` have the namespace each landed in and the service account its pods run as.
The runs the server holds outlive a client (``FakeClient.runs``, emptied by ``install``): ``list_runs``
finds them by name, with the ``state`` a test gives them (a new run is PENDING).
The API server's healthz endpoint answers ``install``'s ``healthz`` (a JSON body; by default that of a
multi-user backend recent enough for the pipeline) or raises its ``healthz_error``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest


@dataclass
class Run:
    name: str
    experiment_id: str
    namespace: str | None  # the namespace of the run's experiment
    asked_namespace: str | None  # the namespace argument of the create call
    service_account: str | None
    run_id: str = ""
    state: str = "PENDING"

    @property
    def display_name(self) -> str:
        return self.name


SUPPORTED_HEALTHZ: dict[str, Any] = {"commit_sha": "0123abc", "tag_name": "2.16.1", "multi_user": True}
"""What a multi-user KFP API server recent enough for the pipeline (>= pipeline.submit.MIN_KFP_BACKEND)
answers."""


class FakeClient:
    """Built as ``kfp.Client(**kwargs)``; ``kwargs`` keeps the constructor's arguments."""

    built: ClassVar[list[FakeClient]] = []
    runs: ClassVar[list[Run]] = []  # the server's runs, of every client
    page_size: ClassVar[int] = 2  # small, so that submit must read every page
    healthz: ClassVar[dict[str, Any]] = SUPPORTED_HEALTHZ
    healthz_error: ClassVar[Exception | None] = None

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[str] = []
        self.experiments: dict[str, tuple[str, str | None]] = {}  # id -> (name, namespace)
        self.created_runs: list[Run] = []
        self.created_recurring_runs: list[Run] = []
        self.healthzs = SimpleNamespace(healthz_service_get_healthz=self._healthz)
        FakeClient.built.append(self)

    def _healthz(self, **kwargs: Any) -> Any:
        self.calls.append("healthz")
        assert kwargs.get("_preload_content") is False  # the body, not the SDK's model (it drops tag_name)
        if FakeClient.healthz_error is not None:
            raise FakeClient.healthz_error
        return SimpleNamespace(data=json.dumps(FakeClient.healthz).encode())

    def get_experiment(self, experiment_name: str, namespace: str | None = None) -> Any:
        self.calls.append("get_experiment")
        for exp_id, (name, ns) in self.experiments.items():
            if (name, ns) == (experiment_name, namespace):
                return SimpleNamespace(experiment_id=exp_id)
        raise ValueError(f"no experiment {experiment_name!r} in {namespace!r}")  # as kfp.Client does

    def create_experiment(self, name: str, namespace: str | None = None, **_: Any) -> Any:
        self.calls.append("create_experiment")
        exp_id = f"exp-{len(self.experiments) + 1}"
        self.experiments[exp_id] = (name, namespace)
        return SimpleNamespace(experiment_id=exp_id)

    def list_runs(
        self,
        experiment_id: str,
        namespace: str | None = None,
        filter: str | None = None,
        page_token: str = "",
        page_size: int = 10,
        **_: Any,
    ) -> Any:
        self.calls.append("list_runs")
        found = [r for r in FakeClient.runs if r.experiment_id == experiment_id and _matches(r.name, filter)]
        start = int(page_token or 0)
        end = start + min(page_size, FakeClient.page_size)
        token = str(end) if end < len(found) else ""
        return SimpleNamespace(runs=found[start:end] or None, next_page_token=token)

    def create_run_from_pipeline_func(
        self,
        pipeline_func: Any,
        run_name: str,
        experiment_id: str,
        namespace: str | None = None,
        service_account: str | None = None,
        **_: Any,
    ) -> Any:
        self.calls.append("create_run")
        _, exp_namespace = self.experiments[experiment_id]
        run = Run(run_name, experiment_id, exp_namespace, namespace, service_account)
        run.run_id = f"run-{len(FakeClient.runs) + 1}"
        self.created_runs.append(run)
        FakeClient.runs.append(run)
        return SimpleNamespace(run_id=run.run_id)

    def list_recurring_runs(self, experiment_id: str, namespace: str | None = None, **_: Any) -> Any:
        self.calls.append("list_recurring_runs")
        return SimpleNamespace(recurring_runs=None)

    def create_recurring_run(
        self, experiment_id: str, job_name: str, *_: Any, service_account: str | None = None, **__: Any
    ) -> Any:
        self.calls.append("create_recurring_run")
        _, exp_namespace = self.experiments[experiment_id]
        self.created_recurring_runs.append(Run(job_name, experiment_id, exp_namespace, None, service_account))
        return SimpleNamespace(recurring_run_id="job-1")


def _matches(name: str, api_filter: str | None) -> bool:
    """Whether a display name passes a KFP API filter's display_name predicates (EQUALS, IS_SUBSTRING)."""
    for predicate in json.loads(api_filter or "{}").get("predicates", []):
        assert predicate["key"] == "display_name", predicate
        want, operation = predicate["string_value"], predicate["operation"]
        assert operation in ("EQUALS", "IS_SUBSTRING"), predicate
        if (operation == "EQUALS" and name != want) or (operation == "IS_SUBSTRING" and want not in name):
            return False
    return True


def install(
    monkeypatch: pytest.MonkeyPatch,
    healthz: dict[str, Any] | None = None,
    healthz_error: Exception | None = None,
) -> type[FakeClient]:
    """Replace ``kfp.Client`` with the fake for this test; the real client would call a KFP host. Its
    healthz endpoint answers ``healthz`` (default: a supported backend's answer) or raises
    ``healthz_error``."""
    import kfp

    FakeClient.built = []
    FakeClient.runs = []
    FakeClient.healthz = SUPPORTED_HEALTHZ if healthz is None else healthz
    FakeClient.healthz_error = healthz_error
    monkeypatch.setattr(kfp, "Client", FakeClient)
    return FakeClient


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run ``sam3-pipeline ARGS`` through its console entry point in this process (so that the client it
    builds is the fake): (exit code, stdout, stderr)."""
    from pipeline.cli import main

    monkeypatch.setattr(sys, "argv", ["sam3-pipeline", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def authorization(credentials: object) -> str:
    """The Authorization header kfp's API client sends with these credentials."""
    import kfp_server_api

    config = kfp_server_api.Configuration()
    config.api_key_prefix["authorization"] = "Bearer"
    config.refresh_api_key_hook = credentials.refresh_api_key_hook  # type: ignore[attr-defined]
    return str(config.get_api_key_with_prefix("authorization"))
