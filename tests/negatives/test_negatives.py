"""Hard negative mining: closest absent concepts, never present ones or their ancestors; K = 0, 5, 30."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.dataset import Dataset
from components.errors import DataError
from components.ingest.ingest import Ingest
from components.ingest.sources import SourceSpec
from components.negatives.mining import NegativeMiner
from components.negatives.negatives import mine_negatives
from components.ontology import Concept, Ontology
from components.storage import ObjectStore
from tests.ingest.factory import write_saco

SHAPES = ["square", "circle", "star", "triangle", "ring"]
COLOURS = ["red", "blue", "green", "yellow", "white", "black", "purple"]


def colour_ontology() -> Ontology:
    concepts = [Concept(name=s, attributes={"shape": s}) for s in SHAPES]
    concepts += [
        Concept(name=f"{c} {s}", parents=(s,), attributes={"shape": s, "colour": c})
        for s in SHAPES
        for c in COLOURS
    ]
    return Ontology(attributes={"shape": SHAPES, "colour": COLOURS}, concepts=tuple(concepts))


def test_miner_ranks_siblings_first_and_never_picks_present_or_related() -> None:
    onto = colour_ontology()
    miner = NegativeMiner(onto)
    picked = miner.choose("m1", positives={"red square"}, existing={"red square", "blue circle"}, k=30)
    assert len(picked) == 30 and len(set(picked)) == 30
    assert set(picked[:6]) == {f"{c} square" for c in COLOURS if c != "red"}  # siblings first
    assert not {"red square", "square", "blue circle"} & set(picked)
    # a coarse positive blocks its descendants: any of them might be what the image shows
    coarse = miner.choose("m1", positives={"circle"}, existing=set(), k=100)
    assert not [p for p in coarse if p.endswith("circle")]
    assert miner.choose("m1", {"red square"}, set(), 0) == []
    # ties spread differently over images
    assert miner.choose("a", {"red square"}, set(), 3) != miner.choose(
        "b", {"red square"}, set(), 3
    ) or miner.choose("c", {"red square"}, set(), 3) != miner.choose("d", {"red square"}, set(), 3)


def test_ontology_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "onto.json"
    bad.write_text('{"concepts": [{"name": "a", "parents": ["b"]}]}')
    with pytest.raises(DataError, match=r"onto.json: invalid ontology .*unknown parents"):
        Ontology.load(bad)
    cyclic = tmp_path / "cyc.json"
    cyclic.write_text('{"concepts": [{"name": "a", "parents": ["b"]}, {"name": "b", "parents": ["a"]}]}')
    with pytest.raises(DataError, match="cycle"):
        Ontology.load(cyclic)


@pytest.mark.parametrize("k", [0, 5, 30])
def test_negatives_make_a_new_version_with_k_per_image(k: int, tmp_path: Path, store: ObjectStore) -> None:
    write_saco(tmp_path / "hq", n_images=4)
    parent = Ingest("neg", [SourceSpec.parse(f"hq={tmp_path / 'hq'}")], store).run()
    onto_path = tmp_path / "ontology.json"
    colour_ontology().dump(onto_path)

    uri, manifest, created = mine_negatives(parent.uri, k, onto_path, store)
    assert created and uri != parent.uri and manifest.parents == [parent.uri]
    assert manifest.sources["hq"].hard_negatives == 4 * k
    for record in Dataset.open(uri, store).records():
        hard = [q for q in record.queries if q.hard_negative]
        assert len(hard) == k
        assert all(not q.positive and q.exhaustive and not q.instances for q in hard)
        phrases = {q.noun_phrase for q in hard}
        assert not phrases & {"red square", "square", "blue circle"}
        assert len({q.query_id for q in record.queries}) == len(record.queries)
    again_uri, _, again_created = mine_negatives(parent.uri, k, onto_path, store)
    assert again_uri == uri and not again_created
