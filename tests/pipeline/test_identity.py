"""A run created elsewhere than the config places the pipeline (another namespace, or the profile's default
service account, as a run created in the KFP UI may be) stops at its first step, saying how to create it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.errors import ConfigError
from components.identity import (
    NAMESPACE_ENV,
    POD_NAMESPACE_ENV,
    POD_SERVICE_ACCOUNT_ENV,
    SERVICE_ACCOUNT_ENV,
    check_pod_identity,
)
from pipeline.config import CONFIGS, PipelineConfig
from pipeline.submit import compile_pipeline

AS_SUBMITTED = {
    POD_NAMESPACE_ENV: "sam3",
    POD_SERVICE_ACCOUNT_ENV: "sam3-pipeline",
    NAMESPACE_ENV: "sam3",
    SERVICE_ACCOUNT_ENV: "sam3-pipeline",
}


def test_a_pod_where_the_config_places_it_goes_on() -> None:
    check_pod_identity(AS_SUBMITTED)
    check_pod_identity({})  # the local runner, a CLI command: nothing to compare
    check_pod_identity({k: v for k, v in AS_SUBMITTED.items() if k != POD_SERVICE_ACCOUNT_ENV})


@pytest.mark.parametrize(
    ("pod", "said"),
    [
        ({POD_SERVICE_ACCOUNT_ENV: "default-editor"}, "as service account 'default-editor'"),
        ({POD_NAMESPACE_ENV: "kubeflow-user-example-com"}, "in namespace 'kubeflow-user-example-com'"),
    ],
    ids=["the-profiles-default-account", "another-namespace"],
)
def test_a_pod_elsewhere_stops_the_run(pod: dict[str, str], said: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_pod_identity({**AS_SUBMITTED, **pod})
    message = str(err.value)
    assert said in message and "namespace 'sam3' as 'sam3-pipeline'" in message
    assert "KFP UI" in message and "'Service Account'" in message


def test_the_first_step_checks_before_it_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.ingest.component import prepare_sources

    for name, value in {**AS_SUBMITTED, POD_SERVICE_ACCOUNT_ENV: "default-editor"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(
        "components.storage.ObjectStore.from_env", lambda *_, **__: pytest.fail("the store was used")
    )
    data = PipelineConfig.load(CONFIGS / "cluster.yaml").data.model_dump_json()
    with pytest.raises(ConfigError, match="default-editor"):
        prepare_sources.python_func(data=data)


def test_every_step_knows_its_pod_and_the_configs_placement(tmp_path: Path) -> None:
    cfg = PipelineConfig.load(CONFIGS / "cluster.yaml")
    spec, platform = yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml").read_text())
    k8s: dict[str, Any] = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, executor in spec["deploymentSpec"]["executors"].items():
        env = {e["name"]: e["value"] for e in executor["container"]["env"]}
        assert env[NAMESPACE_ENV] == cfg.kubernetes.namespace, name
        assert env[SERVICE_ACCOUNT_ENV] == cfg.kubernetes.pipeline_service_account, name
        fields = {f["name"]: f["fieldPath"] for f in k8s[name]["fieldPathAsEnv"]}
        assert fields == {
            POD_NAMESPACE_ENV: "metadata.namespace",
            POD_SERVICE_ACCOUNT_ENV: "spec.serviceAccountName",
        }
    first = spec["root"]["dag"]["tasks"]["exit-handler-1"]["componentRef"]["name"]
    tasks = spec["components"][first]["dag"]["tasks"]
    assert "prepare-sources" in tasks and not tasks["prepare-sources"].get("dependentTasks")
    assert "check_pod_identity()" in json.dumps(spec["deploymentSpec"]["executors"]["exec-prepare-sources"])
