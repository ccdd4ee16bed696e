"""`sam3-pipeline submit` against a stand-in for kfp.Client (there is no KFP backend here): the credentials it
builds the client with, and the namespace its run lands in."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import CONFIGS, PipelineConfig
from pipeline.submit import TOKEN_ENV, run_name
from tests.pipeline.fake_kfp import FakeClient, authorization, install, run_cli

CLUSTER = CONFIGS / "cluster.yaml"
HOST = "http://ml-pipeline.kubeflow:8888"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    return install(monkeypatch)


def test_submit_authenticates_with_the_token_file_and_runs_in_the_namespace(
    fake: type[FakeClient],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    token = tmp_path / "token"
    token.write_text("projected-token-1\n")
    args = ["--config", str(CLUSTER), "--host", HOST, "--namespace", "team-a", "--token-path", str(token)]
    code, out, err = run_cli(monkeypatch, capsys, "submit", *args)
    assert code == 0, err
    (client,) = fake.built
    assert client.kwargs["host"] == HOST
    assert client.kwargs["existing_token"] is None
    credentials = client.kwargs["credentials"]
    assert isinstance(credentials, ServiceAccountTokenVolumeCredentials)
    assert authorization(credentials) == "Bearer projected-token-1"
    token.write_text("projected-token-2\n")  # the kubelet rotated it: the next request reads the new one
    assert authorization(credentials) == "Bearer projected-token-2"
    cfg = PipelineConfig.load(CLUSTER)
    (run,) = client.created_runs
    assert run.namespace == run.asked_namespace == "team-a"
    assert list(client.experiments.values()) == [("sam3", "team-a")]
    assert run.name == run_name(cfg) and run.service_account == cfg.kubernetes.pipeline_service_account
    assert out.strip().splitlines()[-1] == "run-1" and f"run {run.name} created" in err


def test_the_real_client_sends_the_token_file_to_an_explicit_host(tmp_path: Path) -> None:
    """kfp.Client looks for the projected token only when it discovers the host itself: given a host, it
    authenticates with the credentials it is handed, and with nothing otherwise."""
    import kfp
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    token = tmp_path / "token"
    token.write_text("projected-token\n")
    # a namespace other than kfp's default "kubeflow" keeps the constructor from calling the host
    with pytest.warns(FutureWarning):
        bare = kfp.Client(host="http://127.0.0.1:9", namespace="team-a")
        ours = kfp.Client(
            host="http://127.0.0.1:9",
            namespace="team-a",
            credentials=ServiceAccountTokenVolumeCredentials(path=str(token)),
        )
    assert bare._existing_config.get_api_key_with_prefix("authorization") is None
    assert ours._existing_config.get_api_key_with_prefix("authorization") == "Bearer projected-token"


def test_a_token_in_the_environment_is_used_instead_of_the_file(
    fake: type[FakeClient],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment")
    token = tmp_path / "token"
    token.write_text("projected-token\n")
    args = ["--config", str(CLUSTER), "--token-path", str(token)]
    code, _, err = run_cli(monkeypatch, capsys, "submit", *args)
    assert code == 0, err
    (client,) = fake.built
    assert client.kwargs["existing_token"] == "from-the-environment" and client.kwargs["credentials"] is None
    (run,) = client.created_runs
    assert run.namespace is None  # no --namespace: a single-user deployment


@pytest.mark.parametrize("content", [None, ""], ids=["missing", "empty"])
def test_an_unusable_token_file_fails_before_any_request(
    fake: type[FakeClient],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
) -> None:
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    args = ["--config", str(CLUSTER), "--host", HOST, "--token-path", str(token)]
    code, _, err = run_cli(monkeypatch, capsys, "submit", *args)
    assert code == 2 and f"--token-path {token}" in err, err
    assert fake.built == []
