"""The Dockerfiles, .dockerignore and `make images`, checked without a Docker engine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from components.images import image, package_version

REPO = Path(__file__).resolve().parents[2]
KINDS = ["component", "trainer"]


def instructions(kind: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of images/<kind>.Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "images" / f"{kind}.Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(w.split(None, 1)[0].upper(), w.split(None, 1)[1]) for w in lines if w and not w.startswith("#")]


@pytest.mark.parametrize("kind", KINDS)
def test_base_images_are_pinned(kind: str) -> None:
    bases = [args.split()[0] for op, args in instructions(kind) if op == "FROM"]
    assert bases
    for base in bases:
        name, _, tag = base.partition("@")[0].rpartition(":")
        assert name and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), (
            f"{kind}: {base} is not pinned"
        )


@pytest.mark.parametrize("kind", KINDS)
def test_runs_as_a_non_root_user_in_app(kind: str) -> None:
    ops = instructions(kind)
    users = [args for op, args in ops if op == "USER"]
    assert users and users[-1].split(":")[0] == "10001", users
    assert ("WORKDIR", "/app") in ops
    assert any(op == "RUN" and "--uid 10001" in args for op, args in ops)


@pytest.mark.parametrize("kind", KINDS)
def test_version_label_and_locked_install(kind: str) -> None:
    ops = instructions(kind)
    assert ("ARG", "VERSION=0.0.0") in ops
    labels = " ".join(args for op, args in ops if op == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    runs = [args for op, args in ops if op == "RUN"]
    assert any("pip install -c requirements.lock ." in r for r in runs)
    # the dependency layer comes before the code is copied, the version after the heavy layers
    order = [op + " " + args for op, args in ops]
    first_code = next(i for i, o in enumerate(order) if o.startswith("COPY components"))
    deps = next(i for i, o in enumerate(order) if "-r /tmp/dependencies.txt" in o)
    version = order.index("ARG VERSION=0.0.0")
    assert deps < first_code < version


@pytest.mark.parametrize("kind", KINDS)
def test_no_secrets_in_the_image(kind: str) -> None:
    for op, args in instructions(kind):
        if op in ("ENV", "ARG"):
            assert not re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY", args, re.I), args


def test_the_build_context_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip()[:1] not in ("", "#")
    ]
    assert lines[0] == "*", "everything is excluded unless allowed"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for kind in KINDS:
        for op, args in instructions(kind):
            if op == "COPY" and not args.startswith("--from"):
                for source in args.split()[:-1]:
                    assert source.rstrip("/") in allowed, (
                        f"{kind}: COPY {source} is excluded by .dockerignore"
                    )
    assert not allowed & {".venv", ".sam3", ".git", "tests"}


def _make(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    env = {**os.environ, "PATH": path} if path is not None else None
    # -o: treat the venv stamp as up to date (the test does not reinstall)
    return subprocess.run(
        [make, "-s", "-o", ".venv/.installed", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_make_images_tags_them_with_the_package_version() -> None:
    done = _make("-n", "images")
    assert done.returncode == 0, done.stderr
    tags = re.findall(r"-t (\S+)", done.stdout)
    assert tags == [image("component"), image("trainer")]
    assert all(tag.endswith(":" + package_version()) for tag in tags)
    for kind in KINDS:
        assert f"-f images/{kind}.Dockerfile --build-arg VERSION={package_version()}" in done.stdout


def test_make_images_without_docker_says_so(tmp_path: Path) -> None:
    done = _make("images", path=str(tmp_path))  # a PATH without docker (the venv's bin comes first)
    assert done.returncode != 0
    assert "'docker' is not installed or not on PATH" in done.stderr


def test_torchx_is_one_dated_nightly_build() -> None:
    """The images run the TorchX build that the tests ran, never whichever nightly is newest: the
    dependency is an exact dated nightly, and the lock the images install with pins the same one."""
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (pin,) = [d for d in pyproject["project"]["dependencies"] if re.match(r"torchx\b", d)]
    assert re.fullmatch(r"torchx-nightly==20\d\d\.\d{1,2}\.\d{1,2}", pin), pin
    locked = [
        line for line in (REPO / "requirements.lock").read_text().splitlines() if line.startswith("torchx")
    ]
    assert locked == [pin]
    for kind in KINDS:
        runs = [args for op, args in instructions(kind) if op == "RUN" and "pip install" in args]
        assert runs and all("-c requirements.lock" in r for r in runs), kind
