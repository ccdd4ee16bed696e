"""The pipeline config: shipped files load, bad values fail naming the file and field, the two hashes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.errors import ConfigError
from pipeline.config import CONFIGS, DEFAULT_CONFIG, PipelineConfig

DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_shipped_configs_load() -> None:
    local = PipelineConfig.load(DEFAULT_CONFIG)
    assert local.scheduler == "local_cwd" and local.data.synthetic is not None
    cluster = PipelineConfig.load(CONFIGS / "cluster.yaml")  # a fine-tune of the imported release
    assert cluster.scheduler == "kubernetes" and cluster.detector.size == "full"
    assert cluster.base is not None and cluster.base.model == "sam3-full@released"
    assert cluster.stages() == ["detector", "presence"] and cluster.registry.model == "sam3-full"
    assert cluster.detector.resources.nnodes * cluster.detector.resources.nproc == 8
    scratch = PipelineConfig.load(CONFIGS / "cluster-scratch.yaml")  # every stage from random weights
    assert scratch.base is None and scratch.stages() == ["pretrain", *cluster.stages(), "tracker", "joint"]
    assert scratch.detector.resources.nnodes * scratch.detector.resources.nproc == 16
    assert scratch.registry.model != cluster.registry.model  # its versions never mix with the fine-tunes
    retrain = PipelineConfig.load(CONFIGS / "retrain.yaml")
    assert retrain.base is not None and retrain.base.model == "sam3-tiny@production"
    assert retrain.stages() == ["detector", "presence"] and retrain.detector.gate.max_base_regression == 1.0


def _write(tmp_path: Path, **changes: object) -> Path:
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for dotted, value in changes.items():
        node = doc
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"detector__steps": 0}, "detector.steps"),
        ({"presence__gate": {"cgF1": 120}}, "presence.gate.cgF1"),
        ({"detector__colour": "blue"}, "detector.colour"),
        ({"detector__train": {"optim": {"lr": -1}}}, "detector.train.optim.lr"),
        ({"detector__train": {"steps": 5}}, "set by the pipeline"),
        ({"detector__resources": {"nproc": 4, "gpus": 2}}, "exceeds"),
        ({"data__negatives_per_image": 31}, "data.negatives_per_image"),
        ({"registry__alias": "staging"}, "registry.alias"),
        ({"kubernetes__pushgateway_url": "pushgateway:9091"}, "kubernetes.pushgateway_url"),
        ({"pretrain__colour": "blue"}, "pretrain.colour"),
        ({"pretrain__train": {"eval_dataset": "s3://x/datasets/g/1"}}, "set by the pipeline"),
        ({"pretrain__gate": {"recognition_AUC": 1.5}}, "pretrain.gate.recognition_AUC"),
        ({"pretrain__gate": {"cgF1": 10.0, "recognition_AUC": 0.8}}, "pretrain.gate: cgF1 gate detections"),
        ({"pretrain__gate": {"max_regression": 1.0}}, "pretrain.gate: max_regression"),
        ({"detector__gate": {"recognition_AUC": 0.8}}, "detector.gate.recognition_AUC: only the pretrain"),
        ({"pretrain__size": "small"}, "pretrain.size: small is not the detector's size (tiny112)"),
        (
            {"kubernetes__images": {"tag": "0.2.0", "digests": {"component": DIGEST, "trainer": DIGEST}}},
            "kubernetes.images: Value error, give a tag or digests, not both",
        ),
        (
            {"kubernetes__images": {"digests": {"component": "sha256:1234", "trainer": DIGEST}}},
            "kubernetes.images.digests.component: Value error, 'sha256:1234' is not an image digest",
        ),
        (
            {"kubernetes__images": {"digests": {"component": DIGEST.upper(), "trainer": DIGEST}}},
            "is not an image digest (sha256: and 64 lowercase hex digits, or sha512: and 128)",
        ),
        ({"kubernetes__images": {"digests": {"component": DIGEST}}}, "kubernetes.images.digests.trainer"),
        ({"kubernetes__images": {"digest": DIGEST}}, "kubernetes.images.digest: Extra inputs"),
        (
            {"kubernetes__images": {"registry": "https://registry.example.com/ml"}},
            "images.registry: Value error, 'https://registry.example.com/ml' is not a registry host",
        ),
        ({"kubernetes__images": {"registry": "registry.example.com/ml/"}}, "is not a registry host and path"),
        (
            {"kubernetes__images": {"tag": "1.0:beta"}},
            "kubernetes.images.tag: Value error, '1.0:beta' is not",
        ),
        (
            {"kubernetes__image_pull_secrets": ["regcred", "Reg_Cred"]},
            "kubernetes.image_pull_secrets.1: Value error, 'Reg_Cred' is not a Secret name",
        ),
        (
            {"kubernetes__image_pull_secrets": "regcred"},
            "kubernetes.image_pull_secrets: Input should be a valid list",
        ),
    ],
)
def test_bad_values_name_the_file_and_field(tmp_path: Path, change: dict[str, object], message: str) -> None:
    path = _write(tmp_path, **change)
    with pytest.raises(ConfigError) as err:
        PipelineConfig.load(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        PipelineConfig.load(tmp_path / "absent.yaml")
    (tmp_path / "x.yaml").write_text("detector: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        PipelineConfig.load(tmp_path / "x.yaml")


def test_run_id_names_what_is_trained_not_how_it_is_gated() -> None:
    base = PipelineConfig.load(DEFAULT_CONFIG)
    doc = base.model_dump(mode="json")
    doc["detector"]["gate"]["cgF1"] = 99.0
    doc["detector"]["step_seconds"] = 60.0  # sizes the cluster's retry window only
    doc["registry"]["alias"] = "candidate"
    regated = PipelineConfig.model_validate(doc)
    assert regated.effective_run_id() == base.effective_run_id()
    assert regated.content_hash() != base.content_hash()  # a different run name on a KFP host
    doc["detector"]["steps"] += 1
    assert PipelineConfig.model_validate(doc).effective_run_id() != base.effective_run_id()


def test_stage_train_config_merges_overrides() -> None:
    cfg = PipelineConfig.load(DEFAULT_CONFIG)
    train = cfg.train_config("detector", "s3://sam3/datasets/shapes/v1", init="s3://x/ckpt")
    assert train.steps == cfg.detector.steps and train.run_id == cfg.effective_run_id()
    assert train.optim.lr == cfg.detector.train["optim"]["lr"] and train.init == "s3://x/ckpt"
    with pytest.raises(ConfigError, match="unknown stage"):
        cfg.stage("segmenter")
    assert cfg.stages() == ["pretrain", "detector", "presence", "tracker", "joint"]
    image_only = PipelineConfig.model_validate(
        {**cfg.model_dump(mode="json"), "tracker": None, "joint": None}
    )
    assert image_only.stages() == ["pretrain", "detector", "presence"]
    with pytest.raises(ConfigError, match="unknown stage 'tracker'"):
        image_only.stage("tracker")
    # the run id covers what is trained, video stages included
    assert image_only.effective_run_id() != cfg.effective_run_id()
    tracker = cfg.train_config("tracker", "s3://sam3/datasets/shapes/v1")
    assert tracker.video and tracker.batch_size == cfg.tracker.batch_size  # type: ignore[union-attr]


def test_video_stages_need_their_order_and_videos() -> None:
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    no_tracker = {**doc, "tracker": None}
    with pytest.raises(ConfigError, match="joint: the joint stage starts from the tracker stage"):
        PipelineConfig.parse(yaml.safe_dump(no_tracker))
    no_videos = {**doc, "data": {**doc["data"], "synthetic": {**doc["data"]["synthetic"], "videos": 0}}}
    with pytest.raises(ConfigError, match="tracker: the video stages need training and gold videos"):
        PipelineConfig.parse(yaml.safe_dump(no_videos))
    bad_fraction = yaml.safe_load(yaml.safe_dump(doc))
    bad_fraction["joint"]["train"]["video_fraction"] = 1.0
    with pytest.raises(ConfigError, match=r"joint\.train.*video_fraction"):
        PipelineConfig.parse(yaml.safe_dump(bad_fraction))


def test_pretrain_is_optional_and_first() -> None:
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    with_pretrain = PipelineConfig.parse(yaml.safe_dump(doc))
    assert with_pretrain.stages()[0] == "pretrain" and with_pretrain.pretrain is not None
    assert with_pretrain.pretrain.gate.recognition_AUC == 0.8
    # the embedded default scores whole instances in stage 0 too (docs/results.md); the field's default is off
    assert with_pretrain.train_config("pretrain", "s3://b/datasets/d/0").align_loss.instance == 0.3
    assert with_pretrain.train_config("detector", "s3://b/datasets/d/0").align_loss.instance == 0.0
    without = PipelineConfig.parse(yaml.safe_dump({k: v for k, v in doc.items() if k != "pretrain"}))
    assert without.pretrain is None and without.stages() == ["detector", "presence", "tracker", "joint"]
    with pytest.raises(ConfigError, match="unknown stage 'pretrain'"):
        without.stage("pretrain")
    # a config without the stage keeps the run id it had before the stage existed; with it, it trains more
    assert PipelineConfig.parse(yaml.safe_dump({**doc, "pretrain": None})).effective_run_id() == (
        without.effective_run_id()
    )
    assert with_pretrain.effective_run_id() != without.effective_run_id()
    regated = {**doc, "pretrain": {**doc["pretrain"], "gate": {"recognition_AUC": 0.95}}}
    assert (
        PipelineConfig.parse(yaml.safe_dump(regated)).effective_run_id() == with_pretrain.effective_run_id()
    )
    scratch = PipelineConfig.load(CONFIGS / "cluster-scratch.yaml")
    assert scratch.stages()[:2] == ["pretrain", "detector"] and scratch.stage("pretrain").size == "full"


def test_train_config_sets_the_pretrain_stages_eval_dataset() -> None:
    cfg = PipelineConfig.load(DEFAULT_CONFIG)
    gold = "s3://sam3/datasets/shapes-gold/v1"
    train = cfg.train_config("pretrain", "s3://sam3/datasets/shapes/v1", eval_dataset=gold)
    assert train.align and train.eval_dataset == gold and train.init is None
    assert train.steps == 600 and train.batch_size == 16 and train.optim.schedule == "cosine"
    assert cfg.train_config("pretrain", "s3://sam3/datasets/shapes/v1", eval_dataset="").eval_dataset is None
    detector = cfg.train_config("detector", "s3://sam3/datasets/shapes/v1", init="s3://sam3/runs/r/pretrain")
    assert not detector.align and detector.eval_dataset is None


def test_images_default_to_the_packages_and_move_with_the_config() -> None:
    from components.images import package_version

    version = package_version()
    default = PipelineConfig.load(CONFIGS / "cluster.yaml").kubernetes
    assert default.images.ref("component") == f"ghcr.io/sam3-pipeline/component:{version}"
    assert default.cluster().trainer_image == f"ghcr.io/sam3-pipeline/trainer:{version}"
    assert default.image_pull_secrets == [] and default.cluster().image_pull_secrets == []

    def kubernetes(**section: object) -> Any:
        doc = yaml.safe_load((CONFIGS / "cluster.yaml").read_text())
        doc["kubernetes"].update(section)
        return PipelineConfig.parse(yaml.safe_dump(doc)).kubernetes

    tagged = kubernetes(images={"registry": "localhost:5000", "tag": "2026-01-rc1"})
    assert tagged.images.ref("trainer") == "localhost:5000/trainer:2026-01-rc1"
    pinned = kubernetes(
        images={
            "registry": "registry.example.com/ml/sam3",
            "digests": {"component": DIGEST, "trainer": DIGEST},
        },
        image_pull_secrets=["regcred"],
    )
    assert pinned.images.ref("component") == f"registry.example.com/ml/sam3/component@{DIGEST}"
    cluster = pinned.cluster()
    assert cluster.trainer_image == f"registry.example.com/ml/sam3/trainer@{DIGEST}"
    assert cluster.image_pull_secrets == ["regcred"]
    base = PipelineConfig.load(CONFIGS / "cluster.yaml")
    moved = PipelineConfig.model_validate(
        {**base.model_dump(mode="json"), "kubernetes": pinned.model_dump(mode="json")}
    )
    assert moved.effective_run_id() == base.effective_run_id()  # where pods pull from is not what is trained


def test_a_base_skips_pretrain_names_the_run_and_is_needed_by_its_gate() -> None:
    doc = yaml.safe_load((CONFIGS / "retrain.yaml").read_text())
    retrain = PipelineConfig.model_validate(doc)
    unpinned = retrain.effective_run_id()
    pinned = retrain.model_copy(update={"base": retrain.base.model_copy(update={"pinned": 1})})  # type: ignore[union-attr]
    assert pinned.effective_run_id() != unpinned  # `run` pins the alias: production moved, a new run
    with pytest.raises(ConfigError, match="checkpoint 'https://x': expected an s3:// URI"):
        PipelineConfig.parse(yaml.safe_dump({**doc, "base": {"checkpoint": "https://x"}}))
    with_pretrain = {**doc, "pretrain": {"size": "tiny112", "gate": {"recognition_AUC": 0.5}}}
    with pytest.raises(ConfigError, match="pretrain: stage 0 aligns a backbone trained from scratch"):
        PipelineConfig.parse(yaml.safe_dump(with_pretrain))
    without = {k: v for k, v in doc.items() if k != "base"}
    with pytest.raises(ConfigError, match=r"detector\.gate\.max_base_regression: the config has no base"):
        PipelineConfig.parse(yaml.safe_dump(without))
    # configs without a base keep their run ids
    assert "base" not in PipelineConfig.load(DEFAULT_CONFIG).model_dump(exclude_none=True)
