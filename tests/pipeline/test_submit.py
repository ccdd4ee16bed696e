"""`sam3-pipeline submit` against a stand-in for kfp.Client (there is no KFP backend here; tests/pipeline/
fake_kfp.py): the credentials it builds the client with, the namespace its run lands in and the service
account its pods run as, the KFP backends it accepts (one test reads the version through the real client
from a local HTTP server), and when it starts a config's run again (a retry of a failed or cancelled
run)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.errors import LaunchError
from pipeline.config import CONFIGS, PipelineConfig
from pipeline.submit import TOKEN_ENV, run_name, submit
from tests.pipeline.fake_kfp import FakeClient, Run, authorization, install, run_cli

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
    config = tmp_path / "team-a.yaml"  # the pipeline placed in another profile namespace
    config.write_text(
        CLUSTER.read_text().replace("kubernetes:\n  namespace: sam3\n", "kubernetes:\n  namespace: team-a\n")
    )
    args = ["--config", str(config), "--host", HOST, "--namespace", "team-a", "--token-path", str(token)]
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
    assert client.calls[0] == "healthz"  # the backend's version, checked before the experiment and run
    cfg = PipelineConfig.load(config)
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


@pytest.mark.parametrize("recurring", [None, "0 0 3 * * *"])
def test_the_run_goes_to_the_configs_namespace_as_the_pipelines_service_account(
    fake: type[FakeClient],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    recurring: str | None,
) -> None:
    """Without --namespace, the run (and its experiment) goes to the profile namespace the config places
    the pipeline in, where its service account, Secret and training jobs are; its pods run as the
    pipeline's service account, not as the profile's default-editor."""
    cfg = PipelineConfig.load(CLUSTER)
    args = ["--config", str(CLUSTER), "--host", HOST] + (["--recurring", recurring] if recurring else [])
    code, _, err = run_cli(monkeypatch, capsys, "submit", *args)
    assert code == 0, err
    (client,) = fake.built
    assert client.kwargs["namespace"] == cfg.kubernetes.namespace == "sam3"
    assert list(client.experiments.values()) == [("sam3", "sam3")]
    (run,) = client.created_recurring_runs if recurring else client.created_runs
    assert run.namespace == cfg.kubernetes.namespace
    assert run.service_account == cfg.kubernetes.pipeline_service_account == "sam3-pipeline"
    if not recurring:
        assert run.asked_namespace == cfg.kubernetes.namespace


def test_another_namespace_than_the_configs_is_refused(
    fake: type[FakeClient], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's pods would run in one namespace and its training jobs in another: refused before any
    request, naming both."""
    args = ["--config", str(CLUSTER), "--host", HOST, "--namespace", "kubeflow-user-example-com"]
    code, _, err = run_cli(monkeypatch, capsys, "submit", *args)
    assert code == 2, err
    assert "--namespace kubeflow-user-example-com" in err and "'sam3' (kubernetes.namespace)" in err
    assert fake.built == []


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


# -- the KFP backend's version ----------------------------------------------------------------------

CREATING = {"get_experiment", "create_experiment", "create_run", "create_recurring_run"}


@pytest.fixture(scope="module")
def cfg() -> PipelineConfig:
    return PipelineConfig.load(CONFIGS / "cluster.yaml")


def _backend(
    monkeypatch: pytest.MonkeyPatch,
    healthz: dict[str, Any] | None = None,
    error: Exception | None = None,
) -> type[FakeClient]:
    """The fake client, its healthz endpoint answering ``healthz`` or raising ``error``."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    fake = install(monkeypatch, healthz=healthz, healthz_error=error)
    # the pipeline the fake would get is not what is tested here (test_compile.py checks it)
    monkeypatch.setattr("pipeline.submit.build_pipeline", lambda *_, **__: "the pipeline")
    monkeypatch.setattr("pipeline.submit.compile_pipeline", lambda _, out: out)
    return fake


def _submit(cfg: PipelineConfig, recurring: str | None = None) -> Any:
    return submit(cfg, "http://kfp.test:8888", recurring=recurring)


def _calls(fake: type[FakeClient]) -> list[str]:
    """The calls ``submit`` made on the one client it built."""
    (client,) = fake.built
    return client.calls


def _api_error(status: int) -> Exception:
    from kfp_server_api import ApiException

    return ApiException(status=status, reason="Not Found" if status == 404 else "Unauthorized")


@pytest.mark.parametrize("recurring", [None, "0 0 3 * * *"])
@pytest.mark.parametrize(
    ("healthz", "version"),
    [
        ({"commit_sha": "abc", "tag_name": "2.5.0", "multi_user": False}, "2.5.0"),
        ({"tag_name": "2.13.9"}, "2.13.9"),
        ({"tag_name": "2.14.3", "multi_user": True}, "2.14.3"),
        ({"tag_name": "v2.15.1", "multi_user": True}, "v2.15.1"),
        # a host that is the Kubeflow UI: its proxy reports the API server's release under another name
        ({"apiServerTagName": "2.3.0", "frontendTagName": "2.15.0", "apiServerReady": True}, "2.3.0"),
    ],
)
def test_an_older_backend_is_refused_before_anything_is_created(
    monkeypatch: pytest.MonkeyPatch,
    cfg: PipelineConfig,
    healthz: dict[str, Any],
    version: str,
    recurring: str | None,
) -> None:
    fake = _backend(monkeypatch, healthz)
    with pytest.raises(LaunchError) as err:
        _submit(cfg, recurring)
    message = str(err.value)
    assert f"KFP at http://kfp.test:8888 is version {version}" in message
    assert (
        "needs KFP >= 2.16" in message
        and "security context" in message
        and "PipelineTaskFinalStatus" in message
    )
    assert "Nothing was submitted" in message
    assert _calls(fake) == ["healthz"]  # no experiment, no run, no upload


@pytest.mark.parametrize("tag", ["2.16.0", "v2.16.1", "2.17.0-rc.1", "3.0.0"])
def test_a_current_backend_gets_the_run(
    monkeypatch: pytest.MonkeyPatch, cfg: PipelineConfig, tag: str
) -> None:
    healthz = {"commit_sha": "abc", "tag_name": tag, "multi_user": True, "pipeline_store": "database"}
    fake = _backend(monkeypatch, healthz)
    result = _submit(cfg)
    assert result.created and result.id == "run-1"
    # the fake starts without the experiment: submit looks for it, then creates it
    assert _calls(fake) == ["healthz", "get_experiment", "create_experiment", "list_runs", "create_run"]
    fake = _backend(monkeypatch, {"tag_name": tag})
    result = _submit(cfg, recurring="0 0 3 * * *")
    assert result.created and result.recurring and result.id == "job-1"
    assert _calls(fake) == [
        "healthz", "get_experiment", "create_experiment", "list_recurring_runs", "create_recurring_run",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ({"tag_name": "unknown", "multi_user": True}, "no version"),  # a server image built without a tag
        ({"multi_user": True}, "no version"),
        ({"tag_name": "master"}, "the version 'master'"),
        (_api_error(404), "no version: ApiException"),  # no healthz endpoint
    ],
)
def test_a_backend_without_a_version_gets_a_warning_and_the_run(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cfg: PipelineConfig,
    answer: dict[str, Any] | Exception,
    said: str,
) -> None:
    if isinstance(answer, Exception):
        fake = _backend(monkeypatch, error=answer)
    else:
        fake = _backend(monkeypatch, answer)
    with caplog.at_level(logging.WARNING, logger="pipeline.submit"):
        result = _submit(cfg)
    assert result.created and "create_run" in _calls(fake)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"KFP at http://kfp.test:8888 reports {said}" in warning
    assert "not checked" in warning and "KFP >= 2.16" in warning and "PipelineTaskFinalStatus" in warning


@pytest.mark.parametrize("recurring", [None, "0 0 3 * * *"])
@pytest.mark.parametrize(
    "healthz",
    [
        {"commit_sha": "abc", "tag_name": "2.16.0", "multi_user": False, "pipeline_store": "database"},
        {"tag_name": "unknown", "multi_user": False},
        # a host that is the Kubeflow UI: its proxy reports the API server's mode under another name
        {"apiServerTagName": "2.17.0", "apiServerMultiUser": False, "apiServerReady": True},
    ],
)
def test_a_single_user_backend_is_refused_before_anything_is_created(
    monkeypatch: pytest.MonkeyPatch, cfg: PipelineConfig, healthz: dict[str, Any], recurring: str | None
) -> None:
    """A single-user deployment runs every run in its own namespace, not in the profile namespace that
    holds the pipeline's service account, Secret and rights."""
    fake = _backend(monkeypatch, healthz)
    with pytest.raises(LaunchError) as err:
        _submit(cfg, recurring)
    message = str(err.value)
    assert "KFP at http://kfp.test:8888 is a single-user deployment" in message
    assert "'sam3'" in message and "Nothing was submitted" in message and "multi-user" in message
    assert _calls(fake) == ["healthz"]


def test_a_backend_that_refuses_the_version_request_stops_the_submission(
    monkeypatch: pytest.MonkeyPatch, cfg: PipelineConfig
) -> None:
    fake = _backend(monkeypatch, error=_api_error(401))
    with pytest.raises(LaunchError, match=r"KFP at http://kfp.test:8888: ApiException"):
        _submit(cfg)
    assert not CREATING & set(_calls(fake))


@pytest.fixture
def kfp_api() -> Iterator[tuple[str, dict[str, Any]]]:
    """A local HTTP server that answers the KFP API's healthz endpoint as the API server does."""
    answer: dict[str, Any] = {}

    class Healthz(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/apis/v2beta1/healthz"
            body = json.dumps(answer).encode() if found else b"{}"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", answer
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.filterwarnings("ignore:This client only works with Kubeflow Pipeline v2.0.0-beta.2")
def test_the_real_client_reads_the_servers_version(kfp_api: tuple[str, dict[str, Any]]) -> None:
    import kfp

    from pipeline.submit import healthz, version_of

    host, answer = kfp_api
    answer.update({"commit_sha": "0123abc", "tag_name": "2.14.3", "multi_user": False})
    client = kfp.Client(host=host, namespace="kubeflow")
    assert client.get_kfp_healthz().multi_user is False  # what the SDK's own model keeps
    assert version_of(healthz(client)) == "2.14.3"
    answer["tag_name"] = "unknown"
    assert version_of(healthz(client)) is None


def test_the_documented_minimum_is_the_one_checked(repo_root: Path) -> None:
    from pipeline.submit import MIN_KFP_BACKEND

    need = "Kubeflow Pipelines {}.{} or newer".format(*MIN_KFP_BACKEND)
    for doc in ("docs/cluster.md", "manifests/README.md"):
        assert need in " ".join((repo_root / doc).read_text().split()), doc


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "SUCCEEDED", "PAUSED", "A_NEWER_STATE"])
def test_a_run_under_way_or_done_is_not_started_again(
    monkeypatch: pytest.MonkeyPatch, cfg: PipelineConfig, state: str
) -> None:
    fake = _backend(monkeypatch)
    first = _submit(cfg)
    (run,) = fake.runs
    run.state = state
    again = _submit(cfg)
    assert (again.created, again.id, again.name, again.retried) == (False, first.id, run_name(cfg), None)
    assert len(fake.runs) == 1


@pytest.mark.parametrize("state", ["FAILED", "CANCELED", "CANCELING"])
def test_a_failed_or_cancelled_run_is_started_again_as_a_retry(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cfg: PipelineConfig,
    state: str,
) -> None:
    fake = _backend(monkeypatch)
    name = run_name(cfg)
    _submit(cfg)
    fake.runs[-1].state = state
    retry = _submit(cfg)
    assert retry.created and retry.name == f"{name}-retry-1" and retry.id == "run-2"
    assert retry.retried == f"{name} ({state.lower()})"
    # the retry fails too: the next one is numbered after it, whatever order the server lists them in
    fake.runs[-1].state = "FAILED"
    fake.runs.reverse()
    assert _submit(cfg).name == f"{name}-retry-2"
    # a retry under way (or done) is the config's run: a re-synced trigger does not start another
    assert _submit(cfg).created is False
    assert [r.name for r in fake.runs] == [f"{name}-retry-1", name, f"{name}-retry-2"]
    fake.runs[-1].state = "SUCCEEDED"
    fake.runs[1].state = "FAILED"
    code, out, err = run_cli(monkeypatch, capsys, "submit", "--config", str(CLUSTER), "--host", HOST)
    assert code == 0 and out.strip().splitlines()[-1] == "run-3" and "already exists" in err


def test_runs_of_other_configs_do_not_count(monkeypatch: pytest.MonkeyPatch, cfg: PipelineConfig) -> None:
    fake = _backend(monkeypatch)
    name = run_name(cfg)
    _submit(cfg)
    fake.runs[0].state = "FAILED"
    # names that contain the config's run name without being it or one of its retries
    for other in (f"{name}-retry-x", f"{name}-retry-0", f"copy-of-{name}", f"{name}-retry-7-b"):
        fake.runs.append(Run(other, fake.runs[0].experiment_id, "sam3", "sam3", None))
    assert _submit(cfg).name == f"{name}-retry-1"
