"""A stand-in for ``kfp.Client``: records how ``submit`` builds it and what it asks the KFP API for.

There is no KFP backend here. Install it with ``install(monkeypatch)``; every client built afterwards is
in ``FakeClient.built``. Experiments belong to a namespace, a run to its experiment's namespace (as in
KFP's v2 API): ``created_runs`` has the namespace each run landed in.
"""

from __future__ import annotations

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


class FakeClient:
    """Built as ``kfp.Client(**kwargs)``; ``kwargs`` keeps the constructor's arguments."""

    built: ClassVar[list[FakeClient]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.experiments: dict[str, tuple[str, str | None]] = {}  # id -> (name, namespace)
        self.created_runs: list[Run] = []
        FakeClient.built.append(self)

    def get_experiment(self, experiment_name: str, namespace: str | None = None) -> Any:
        for exp_id, (name, ns) in self.experiments.items():
            if (name, ns) == (experiment_name, namespace):
                return SimpleNamespace(experiment_id=exp_id)
        raise ValueError(f"no experiment {experiment_name!r} in {namespace!r}")  # as kfp.Client does

    def create_experiment(self, name: str, namespace: str | None = None, **_: Any) -> Any:
        exp_id = f"exp-{len(self.experiments) + 1}"
        self.experiments[exp_id] = (name, namespace)
        return SimpleNamespace(experiment_id=exp_id)

    def list_runs(self, experiment_id: str, namespace: str | None = None, **_: Any) -> Any:
        return SimpleNamespace(runs=None)

    def create_run_from_pipeline_func(
        self,
        pipeline_func: Any,
        run_name: str,
        experiment_id: str,
        namespace: str | None = None,
        service_account: str | None = None,
        **_: Any,
    ) -> Any:
        _, exp_namespace = self.experiments[experiment_id]
        run = Run(run_name, experiment_id, exp_namespace, namespace, service_account)
        self.created_runs.append(run)
        return SimpleNamespace(run_id=f"run-{len(self.created_runs)}")


def install(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    """Replace ``kfp.Client`` with the fake for this test; the real client would call a KFP host."""
    import kfp

    FakeClient.built = []
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
