"""The data plane through its CLI: synth -> ingest (single and partitioned) -> negatives -> read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from components.dataset import Dataset
from components.storage import ObjectStore

pytestmark = pytest.mark.slow


def cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "data",
            "synth",
            "--out",
            str(out),
            "--images",
            "24",
            "--videos",
            "3",
            "--frames",
            "5",
            "--size",
            "96",
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    return out


def test_synth_ingest_read_back_exactly(synth: Path, s3_env: dict[str, str], store: ObjectStore) -> None:
    uri = cli(
        s3_env,
        "data",
        "ingest",
        "--dataset",
        "synth",
        "--source",
        f"hq={synth / 'train'}",
        "--source",
        f"video={synth / 'video_train'}",
    )
    records = list(Dataset.open(uri, store).records())
    images = json.loads((synth / "train" / "annotations.json").read_text())
    videos = json.loads((synth / "video_train" / "annotations.json").read_text())
    assert sum(r.kind == "image" for r in records) == len({i["file_name"] for i in images["images"]})
    assert sum(r.kind == "video" for r in records) == len(videos["videos"])
    queries = {q.origin_id: (r, q) for r in records for q in r.queries}
    assert len(queries) == len(images["images"]) + len(videos["video_np_pairs"])

    by_pair: dict[int, list[dict]] = {}
    for a in images["annotations"]:
        by_pair.setdefault(a["image_id"], []).append(a)
    for pair in images["images"]:
        record, q = queries[str(pair["id"])]
        assert q.noun_phrase == pair["text_input"] and record.origin == pair["file_name"]
        assert record.frames[0] == (synth / "train" / "images" / pair["file_name"]).read_bytes()
        anns = by_pair.get(pair["id"], [])
        assert q.positive == bool(anns)
        assert [i.masks[0] for i in q.instances] == [a["segmentation"]["counts"] for a in anns]
        assert [np.float32(i.boxes[0]).tolist() for i in q.instances] == [
            np.float32(a["bbox"]).tolist() for a in anns
        ]
    for pair in videos["video_np_pairs"]:
        record, q = queries[f"{pair['video_id']}:{pair['category_id']}"]
        masklets = [
            a
            for a in videos["annotations"]
            if (a["video_id"], a["category_id"]) == (pair["video_id"], pair["category_id"])
        ]
        assert len(q.instances) == pair["num_masklets"] == len(masklets)
        for inst, a in zip(q.instances, masklets, strict=True):
            assert inst.masks == [s["counts"] if s else None for s in a["segmentations"]]
            w, h = record.width, record.height
            expect = [
                None if b is None else np.float32([b[0] / w, b[1] / h, b[2] / w, b[3] / h]).tolist()
                for b in a["bboxes"]
            ]
            assert [None if b is None else np.float32(b).tolist() for b in inst.boxes] == expect

    # again: the same URI, nothing new
    assert (
        cli(
            s3_env,
            "data",
            "ingest",
            "--dataset",
            "synth",
            "--source",
            f"video={synth / 'video_train'}",
            "--source",
            f"hq={synth / 'train'}",
        )
        == uri
    )


def test_partitioned_cli_then_negatives(synth: Path, s3_env: dict[str, str], store: ObjectStore) -> None:
    args = ["data", "ingest", "--dataset", "parts", "--source", f"hq={synth / 'gold'}", "--shard-rows", "3"]
    for i in range(3):
        cli(s3_env, *args, "--partition", f"{i}/3")
    uri = cli(s3_env, *args, "--commit")
    single = ObjectStore(store.settings.model_copy(update={"bucket": store.bucket + "s"}))
    single.ensure_bucket()
    assert cli({**s3_env, "SAM3_S3_BUCKET": single.bucket}, *args).replace(single.bucket, store.bucket) == uri

    mined = cli(
        s3_env,
        "data",
        "negatives",
        "--dataset",
        uri,
        "--per-image",
        "30",
        "--ontology",
        str(synth / "ontology.json"),
    )
    ds = Dataset.open(mined, store)
    assert ds.manifest.parents == [uri]
    gold = json.loads((synth / "gold" / "annotations.json").read_text())
    from components.ontology import Ontology

    onto = Ontology.load(synth / "ontology.json")
    for record in ds.records():
        hard = [q.noun_phrase for q in record.queries if q.hard_negative]
        assert len(hard) == 30
        present = {q.noun_phrase for q in record.queries if q.positive}
        implied = present | {a for p in present for a in onto.ancestors(p)}
        assert not implied & set(hard)
    assert ds.manifest.media == len({i["file_name"] for i in gold["images"]})
    inspect = subprocess.run(
        [sys.executable, "-m", "pipeline", "data", "inspect", mined],
        env=s3_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert inspect.returncode == 0 and json.loads(inspect.stdout)["version"] == mined.rsplit("/", 1)[-1]


def test_bad_usage_exit_codes(s3_env: dict[str, str], tmp_path: Path) -> None:
    run = [sys.executable, "-m", "pipeline", "data", "ingest", "--dataset", "x"]
    bad_tag = subprocess.run([*run, "--source", "gold=/tmp"], env=s3_env, capture_output=True, text=True)
    assert bad_tag.returncode == 2 and "unknown tag 'gold'" in bad_tag.stderr
    missing = subprocess.run(
        [*run, "--source", f"hq={tmp_path / 'nope'}"], env=s3_env, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "source folder not found" in missing.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.json").write_text("{")
    nothing = subprocess.run(
        [*run, "--source", f"hq={tmp_path / 'empty'}"], env=s3_env, capture_output=True, text=True
    )
    assert nothing.returncode == 1 and "no valid records remained" in nothing.stderr
