"""`submit` against KFP backends of several versions (a fake client stands in for ``kfp.Client``; one test
reads the version through the real client from a local HTTP server)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from components.errors import LaunchError
from pipeline.config import CONFIGS, PipelineConfig
from pipeline.submit import submit


class FakeKfp:
    """The calls ``submit`` makes on ``kfp.Client``, recorded; the healthz endpoint answers ``healthz``
    (a JSON body) or raises ``error``."""

    def __init__(self, healthz: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.healthz, self.error = healthz, error
        self.healthzs = SimpleNamespace(healthz_service_get_healthz=self._healthz)

    def _healthz(self, **kwargs: Any) -> Any:
        self.calls.append("healthz")
        assert kwargs.get("_preload_content") is False  # the body, not the SDK's model (it drops tag_name)
        if self.error is not None:
            raise self.error
        return SimpleNamespace(data=json.dumps(self.healthz).encode())

    def get_experiment(self, **_: Any) -> Any:
        self.calls.append("get_experiment")
        return SimpleNamespace(experiment_id="exp-1")

    def create_experiment(self, *_: Any, **__: Any) -> Any:
        self.calls.append("create_experiment")
        return SimpleNamespace(experiment_id="exp-1")

    def list_runs(self, **_: Any) -> Any:
        self.calls.append("list_runs")
        return SimpleNamespace(runs=[])

    def create_run_from_pipeline_func(self, *_: Any, **__: Any) -> Any:
        self.calls.append("create_run")
        return SimpleNamespace(run_id="run-1")

    def list_recurring_runs(self, **_: Any) -> Any:
        self.calls.append("list_recurring_runs")
        return SimpleNamespace(recurring_runs=[])

    def create_recurring_run(self, *_: Any, **__: Any) -> Any:
        self.calls.append("create_recurring_run")
        return SimpleNamespace(recurring_run_id="job-1")


CREATING = {"get_experiment", "create_experiment", "create_run", "create_recurring_run"}


@pytest.fixture(scope="module")
def cfg() -> PipelineConfig:
    return PipelineConfig.load(CONFIGS / "cluster.yaml")


def _submit(
    monkeypatch: pytest.MonkeyPatch, fake: FakeKfp, cfg: PipelineConfig, recurring: str | None = None
) -> Any:
    import kfp

    monkeypatch.setattr(kfp, "Client", lambda **_: fake)
    # the pipeline the fake would get is not what is tested here (test_compile.py checks it)
    monkeypatch.setattr("pipeline.submit.build_pipeline", lambda *_, **__: "the pipeline")
    monkeypatch.setattr("pipeline.submit.compile_pipeline", lambda _, out: out)
    return submit(cfg, "http://kfp.test:8888", recurring=recurring)


def _api_error(status: int) -> Exception:
    from kfp_server_api import ApiException

    return ApiException(status=status, reason="Not Found" if status == 404 else "Unauthorized")


@pytest.mark.parametrize("recurring", [None, "0 0 3 * * *"])
@pytest.mark.parametrize(
    ("healthz", "version"),
    [
        ({"commit_sha": "abc", "tag_name": "2.5.0", "multi_user": False}, "2.5.0"),
        ({"tag_name": "2.13.9"}, "2.13.9"),
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
    fake = FakeKfp(healthz)
    with pytest.raises(LaunchError) as err:
        _submit(monkeypatch, fake, cfg, recurring)
    message = str(err.value)
    assert f"KFP at http://kfp.test:8888 is version {version}" in message
    assert "needs KFP >= 2.14" in message and "PipelineTaskFinalStatus" in message
    assert "Nothing was submitted" in message
    assert fake.calls == ["healthz"]  # no experiment, no run, no upload


@pytest.mark.parametrize("tag", ["2.14.0", "2.14.3", "v2.15.1", "2.17.0-rc.1", "3.0.0"])
def test_a_current_backend_gets_the_run(
    monkeypatch: pytest.MonkeyPatch, cfg: PipelineConfig, tag: str
) -> None:
    fake = FakeKfp({"commit_sha": "abc", "tag_name": tag, "multi_user": True, "pipeline_store": "database"})
    result = _submit(monkeypatch, fake, cfg)
    assert result.created and result.id == "run-1"
    assert fake.calls == ["healthz", "get_experiment", "list_runs", "create_run"]
    fake = FakeKfp({"tag_name": tag})
    result = _submit(monkeypatch, fake, cfg, recurring="0 0 3 * * *")
    assert result.created and result.recurring and result.id == "job-1"
    assert fake.calls == ["healthz", "get_experiment", "list_recurring_runs", "create_recurring_run"]


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ({"tag_name": "unknown", "multi_user": False}, "no version"),  # a server image built without a tag
        ({"multi_user": False}, "no version"),
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
    fake = FakeKfp(error=answer) if isinstance(answer, Exception) else FakeKfp(answer)
    with caplog.at_level(logging.WARNING, logger="pipeline.submit"):
        result = _submit(monkeypatch, fake, cfg)
    assert result.created and "create_run" in fake.calls
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"KFP at http://kfp.test:8888 reports {said}" in warning
    assert "not checked" in warning and "KFP >= 2.14" in warning and "PipelineTaskFinalStatus" in warning


def test_a_backend_that_refuses_the_version_request_stops_the_submission(
    monkeypatch: pytest.MonkeyPatch, cfg: PipelineConfig
) -> None:
    fake = FakeKfp(error=_api_error(401))
    with pytest.raises(LaunchError, match=r"KFP at http://kfp.test:8888: ApiException"):
        _submit(monkeypatch, fake, cfg)
    assert not CREATING & set(fake.calls)


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

    from pipeline.submit import backend_version

    host, answer = kfp_api
    answer.update({"commit_sha": "0123abc", "tag_name": "2.14.3", "multi_user": False})
    client = kfp.Client(host=host, namespace="kubeflow")
    assert client.get_kfp_healthz().multi_user is False  # what the SDK's own model keeps
    assert backend_version(client) == "2.14.3"
    answer["tag_name"] = "unknown"
    assert backend_version(client) is None


def test_the_documented_minimum_is_the_one_checked(repo_root: Path) -> None:
    from pipeline.submit import MIN_KFP_BACKEND

    need = "Kubeflow Pipelines {}.{} or newer".format(*MIN_KFP_BACKEND)
    for doc in ("README.md", "manifests/README.md"):
        assert need in " ".join((repo_root / doc).read_text().split()), doc
