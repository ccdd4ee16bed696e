"""The synthetic SA-Co-style generator: determinism, formats, exhaustive queries, ontology, occlusions."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from components.errors import ConfigError
from components.ontology import Ontology
from components.synthetic import SynthSummary, generate
from components.synthetic.images import image_item
from components.synthetic.ontology import matches
from components.synthetic.queries import gold_queries, is_hard_negative, train_queries
from components.synthetic.scene import MIN_VISIBLE
from components.synthetic.video import reappears, video_item

# pycocotools' decode trips numpy 2's copy-keyword deprecation on every call
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIZE, FRAMES = 96, 6


def _small(out: Path, seed: int) -> None:
    generate(out, images=12, videos=2, frames=FRAMES, size=SIZE, seed=seed)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "a"
    _small(out, seed=0)
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


# -- determinism and the summary -------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_differs(data: Path, tmp_path: Path) -> None:
    _small(tmp_path / "b", seed=0)
    first, again = _tree(data), _tree(tmp_path / "b")
    assert first.keys() == again.keys()
    assert [k for k in first if first[k] != again[k]] == []

    _small(tmp_path / "c", seed=1)
    other = _tree(tmp_path / "c")
    assert other["train/annotations.json"] != first["train/annotations.json"]
    assert other["train/images/000000.jpg"] != first["train/images/000000.jpg"]
    assert other["ontology.json"] == first["ontology.json"]


def test_summary_matches_the_files_and_gold_defaults(data: Path) -> None:
    summary = SynthSummary.model_validate_json((data / "summary.json").read_text())
    assert summary.params.gold_images == 20 and summary.params.gold_videos == 4
    assert summary.concepts == 252
    for name, split in summary.splits.items():
        doc = _load(data / split.annotations)
        if split.kind == "image":
            assert len({p["file_name"] for p in doc["images"]}) == split.media
            positive = {a["image_id"] for a in doc["annotations"]}
            assert (split.pairs, split.positive_pairs) == (len(doc["images"]), len(positive)), name
        else:
            assert len(doc["videos"]) == split.media
            assert split.pairs == len(doc["video_np_pairs"])
            assert split.negative_pairs == sum(p["num_masklets"] == 0 for p in doc["video_np_pairs"])
        assert split.pairs == split.positive_pairs + split.negative_pairs
        assert split.instances == len(doc["annotations"])
        assert len(list((data / split.images).rglob("*.jpg"))) == split.media * (
            1 if split.kind == "image" else FRAMES
        )


def test_rewrites_its_own_output_and_refuses_other_folders(tmp_path: Path) -> None:
    out = tmp_path / "d"
    generate(out, images=3, gold_images=2, videos=1, gold_videos=1, frames=3, size=64)
    generate(out, images=1, gold_images=1, videos=0, gold_videos=0, frames=3, size=64)
    assert sorted(p.name for p in (out / "train" / "images").iterdir()) == ["000000.jpg"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"notes\.txt"):
        generate(out, images=1)
    with pytest.raises(ConfigError, match="size"):
        generate(tmp_path / "e", size=16)


# -- the ontology ----------------------------------------------------------------------------------


def test_ontology_is_the_attribute_graph(data: Path) -> None:
    onto = Ontology.load(data / "ontology.json")
    assert len(onto.concepts) == 252
    assert set(onto.attributes) == {"shape", "colour", "size", "texture"}
    assert len(onto.attributes["colour"]) == 6 and len(onto.attributes["shape"]) == 4
    order = ["size", "texture", "colour", "shape"]
    for c in onto.concepts:
        assert c.name == " ".join(c.attributes[a] for a in order if a in c.attributes)
        dropped = {
            " ".join(c.attributes[a] for a in order if a in c.attributes and a != gone)
            for gone in c.attributes
            if gone != "shape"
        }
        assert set(c.parents) == dropped
    assert onto.by_name["small striped red circle"].parents == (
        "striped red circle",
        "small red circle",
        "small striped circle",
    )
    assert [c.name for c in onto.concepts if not c.parents] == ["circle", "square", "triangle", "diamond"]
    assert onto.ancestors("small red circle") == {"red circle", "small circle", "circle"}
    assert {"small blue circle", "large red circle"} <= onto.siblings("small red circle")


# -- image splits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "gold"])
def test_image_records_are_well_formed(data: Path, split: str) -> None:
    doc = _load(data / split / "annotations.json")
    names = {c["id"]: c["name"] for c in doc["categories"]}
    ids = {c.name: i + 1 for i, c in enumerate(Ontology.load(data / "ontology.json").concepts)}
    assert all(ids[name] == i for i, name in names.items())
    assert len({p["id"] for p in doc["images"]}) == len(doc["images"])
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])
    pairs = {p["id"]: p for p in doc["images"]}
    for p in doc["images"]:
        assert (p["width"], p["height"], p["is_instance_exhaustive"]) == (SIZE, SIZE, True)
        assert names[p["queried_category"]] == p["text_input"]
        with Image.open(data / split / "images" / p["file_name"]) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (SIZE, SIZE))
    for a in doc["annotations"]:
        assert a["iscrowd"] == 0 and a["category_id"] == pairs[a["image_id"]]["queried_category"]
        mask = _decode(a["segmentation"])
        assert mask.shape == (SIZE, SIZE) and a["area"] == int(mask.sum()) > 0
        ys, xs = np.nonzero(mask)
        tight = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        np.testing.assert_allclose(np.array(a["bbox"]) * SIZE, tight, atol=1e-3)


@pytest.mark.parametrize("split", ["train", "gold"])
def test_image_queries_are_exhaustive_against_the_scene(data: Path, split: str) -> None:
    doc = _load(data / split / "annotations.json")
    onto = Ontology.load(data / "ontology.json")
    masks_of: dict[int, list[np.ndarray]] = defaultdict(list)
    for a in doc["annotations"]:
        masks_of[a["image_id"]].append(_decode(a["segmentation"]))
    by_file: dict[str, list[dict]] = defaultdict(list)
    for p in doc["images"]:
        by_file[p["file_name"]].append(p)
    negatives = 0
    for index, file_name in enumerate(sorted(by_file)):
        assert file_name == f"{index:06d}.jpg"
        scene, _ = image_item(0, split, index, SIZE)
        assert 3 <= len(scene.objects) <= 6
        for o in scene.objects:
            assert o.visible.sum() >= MIN_VISIBLE * o.mask.sum()
        with Image.open(data / split / "images" / file_name) as im:
            assert np.abs(np.asarray(im, np.float32) - scene.image).mean() < 8.0  # JPEG drops the pixel noise
        for p in by_file[file_name]:
            concept = onto.by_name[p["text_input"]].attributes
            expected = [o.visible for o in scene.objects if matches(concept, o.attributes)]
            got = masks_of[p["id"]]
            assert len(got) == len(expected), p["text_input"]
            for want in expected:
                assert any(np.array_equal(want, m) for m in got), p["text_input"]
            negatives += not expected
    assert negatives > 0


def test_gold_has_balanced_negatives_half_hard(data: Path) -> None:
    summary = SynthSummary.model_validate_json((data / "summary.json").read_text())
    gold = summary.splits["gold"]
    assert gold.negative_pairs == gold.positive_pairs
    assert 0.35 <= gold.hard_negative_pairs / gold.negative_pairs <= 0.8
    train = summary.splits["train"]
    assert summary.params.images <= train.negative_pairs <= 3 * summary.params.images
    assert summary.splits["video_gold"].negative_pairs > 0


def test_negative_kinds_are_what_they_claim() -> None:
    for index in range(20):
        scene, _ = image_item(7, "gold", index, SIZE)
        objects = [o.attributes for o in scene.objects]
        rng = np.random.default_rng(index)
        for query in itertools.chain(gold_queries(rng, objects), train_queries(rng, objects)):
            if query.positive:
                continue
            assert not any(matches(query.attributes, o) for o in objects)
            assert query.hard_negative == is_hard_negative(query.attributes, objects)


# -- video splits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["video_train", "video_gold"])
def test_video_masklets_are_well_formed_and_exhaustive(data: Path, split: str) -> None:
    doc = _load(data / split / "annotations.json")
    onto = Ontology.load(data / "ontology.json")
    masklets: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for a in doc["annotations"]:
        masklets[(a["video_id"], a["noun_phrase"])].append(a)
        assert len(a["segmentations"]) == len(a["bboxes"]) == len(a["areas"]) == FRAMES
        for rle, box, area in zip(a["segmentations"], a["bboxes"], a["areas"], strict=True):
            assert (rle is None) == (box is None) == (area is None)
            if rle is not None:
                mask = _decode(rle)
                ys, xs = np.nonzero(mask)
                assert mask.shape == (SIZE, SIZE) and area == int(mask.sum()) > 0
                assert box == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    for index, video in enumerate(doc["videos"]):
        assert video["id"] == index + 1 and video["length"] == FRAMES
        assert video["file_names"] == [f"{index + 1:05d}/{t:05d}.jpg" for t in range(FRAMES)]
        clip, _ = video_item(0, split, index, SIZE, FRAMES)
        pairs = [p for p in doc["video_np_pairs"] if p["video_id"] == video["id"]]
        assert any(p["num_masklets"] == 0 for p in pairs)
        for p in pairs:
            concept = onto.by_name[p["noun_phrase"]].attributes
            expected = [t for t in clip.tracks if matches(concept, t.attributes)]
            got = masklets[(video["id"], p["noun_phrase"])]
            assert p["num_masklets"] == len(got) == len(expected)
            for track in expected:  # one masklet per matching object, frame by frame
                assert any(
                    all(
                        (rle is None and not v.any()) or (rle is not None and np.array_equal(_decode(rle), v))
                        for rle, v in zip(m["segmentations"], track.visible, strict=True)
                    )
                    for m in got
                )


def test_every_training_video_hides_and_reveals_an_object(data: Path) -> None:
    doc = _load(data / "video_train" / "annotations.json")
    for video in doc["videos"]:
        seen = [
            [s is not None for s in a["segmentations"]]
            for a in doc["annotations"]
            if a["video_id"] == video["id"]
        ]
        assert any(reappears(s) for s in seen), video["id"]
        assert all(any(s) for s in seen)
