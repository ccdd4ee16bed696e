"""A malformed-input corpus: every defect is rejected with its reason, valid records around it are kept."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from components.dataset import Dataset
from components.ingest.ingest import Ingest, IngestOptions
from components.ingest.sources import SourceSpec
from components.storage import ObjectStore
from tests.ingest.factory import box_mask, jpeg, rle

SIZE = 32


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose (valid, CRC-correct) header claims width x height pixels: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = zlib.compress(b"\x00" * 10)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(idat))
        + b"IDAT"
        + idat
        + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
        + struct.pack(">I", 0)
        + b"IEND"
        + struct.pack(">I", zlib.crc32(b"IEND"))
    )


def pair(pid: int, fn: str, phrase: str, size: int = SIZE) -> dict[str, Any]:
    return {
        "id": pid,
        "file_name": fn,
        "text_input": phrase,
        "width": size,
        "height": size,
        "is_instance_exhaustive": True,
    }


def ann(aid: int, pid: int, **over: Any) -> dict[str, Any]:
    m = box_mask(SIZE, SIZE, 4, 4, 12, 12)
    a = {
        "id": aid,
        "image_id": pid,
        "iscrowd": 0,
        "area": 64,
        "bbox": [4 / SIZE, 4 / SIZE, 8 / SIZE, 8 / SIZE],
        "segmentation": rle(m),
    }
    a.update(over)
    return a


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    src = tmp_path / "bad"
    (src / "images").mkdir(parents=True)
    for i in range(6):
        (src / "images" / f"ok{i}.jpg").write_bytes(jpeg(SIZE, SIZE, i))
    (src / "images" / "truncated.jpg").write_bytes(jpeg(SIZE, SIZE, 99)[:200])
    (src / "images" / "cut.jpg").write_bytes(jpeg(SIZE, SIZE, 98)[:-40])  # cut inside the scan data
    png = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(noise).save(png, "PNG")
    (src / "images" / "cut.png").write_bytes(png.getvalue()[:-30])
    (src / "images" / "bomb.png").write_bytes(png_claiming(50_000, 50_000))
    (src / "images" / "wrongsize.jpg").write_bytes(jpeg(SIZE * 2, SIZE, 7))
    images = [
        pair(1, "ok0.jpg", "red square"),  # good
        pair(2, "ok0.jpg", "blue circle"),  # good negative
        pair(3, "ok1.jpg", "green star"),  # bad RLE
        pair(4, "ok1.jpg", "yellow star"),  # RLE of the wrong size
        pair(5, "ok2.jpg", "purple ring"),  # box outside the image
        pair(6, "ok2.jpg", "orange ring"),  # box of zero width
        pair(7, "missing.jpg", "cat"),  # image file missing
        pair(8, "truncated.jpg", "dog"),  # corrupt image
        pair(9, "bomb.png", "sheep"),  # decompression bomb header
        pair(10, "ok3.jpg", "   "),  # empty noun phrase
        pair(11, "ok3.jpg", "word " * 100),  # absurdly long noun phrase
        pair(12, "ok3.jpg", "white square"),  # good
        pair(12, "ok4.jpg", "duplicate pair id"),  # duplicate id
        pair(13, "ok4.jpg", "black square"),  # a duplicate annotation id spoils it
        pair(14, "wrongsize.jpg", "grey square"),  # image size differs from its record
        {"id": 15, "file_name": "ok5.jpg", "width": -3, "height": SIZE, "text_input": "x"},  # bad record
        pair(16, "cut.jpg", "goat"),  # JPEG cut short inside its scan
        pair(17, "cut.png", "pig"),  # PNG cut short
    ]
    anns = [
        ann(1, 1),
        ann(2, 3, segmentation={"size": [SIZE, SIZE], "counts": "garbage!!"}),
        ann(3, 4, segmentation=rle(box_mask(SIZE * 2, SIZE, 1, 1, 5, 5))),
        ann(4, 5, bbox=[0.9, 0.9, 0.5, 0.5]),
        ann(5, 6, bbox=[0.1, 0.1, 0.0, 0.2]),
        ann(6, 9999),  # unknown image id
        ann(7, 12),
        ann(8, 13),
        ann(8, 13),  # duplicate annotation id
    ]
    (src / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns}))
    (src / "broken.json").write_text('{"images": [')
    return src


@pytest.mark.parametrize("image_check", ["structure", "decode"])
def test_every_defect_is_rejected_with_its_reason(corpus: Path, store: ObjectStore, image_check: str) -> None:
    opts = IngestOptions(max_pixels=10_000_000, image_check=image_check)  # type: ignore[arg-type]
    job = Ingest("bad", [SourceSpec.parse(f"hq={corpus}")], store, opts)
    result = job.run()
    assert result.created and result.manifest is not None
    rejects = [json.loads(line) for line in store.get_bytes(result.manifest.rejects.key or "").splitlines()]
    by_record = {(Path(r["file"]).name, r["record"]): r for r in rejects}

    def reason(record_prefix: str, file: str = "annotations.json") -> tuple[str, str]:
        hits = [r for (f, rec), r in by_record.items() if rec.startswith(record_prefix) and f == file]
        assert len(hits) == 1, (record_prefix, file, rejects)
        return hits[0]["code"], hits[0]["reason"]

    assert reason("<file>", "broken.json")[0] == "invalid_json"
    assert reason("images[2] (id 3)") == (
        "bad_rle",
        "annotations[1] (id 2): RLE does not decode: malformed counts string",
    )
    assert reason("images[3] (id 4)")[0] == "rle_size_mismatch"
    assert reason("images[4] (id 5)")[0] == "bad_box" and "outside" in reason("images[4] (id 5)")[1]
    assert reason("images[5] (id 6)")[0] == "bad_box" and "non-positive" in reason("images[5] (id 6)")[1]
    assert reason("images[6] (id 7)")[0] == "image_missing"
    assert reason("images[7] (id 8)", "truncated.jpg")[0] == "image_corrupt"
    assert reason("images[8] (id 9)", "bomb.png") == (
        "image_too_large",
        "header claims 50000x50000 = 2500000000 pixels (limit 10000000)",
    )
    assert reason("images[9] (id 10)") == ("bad_noun_phrase", "empty noun phrase")
    assert reason("images[10] (id 11)")[0] == "bad_noun_phrase"
    assert reason("images[12] (id 12)")[0] == "duplicate_id"
    assert reason("images[13] (id 13)")[0] == "bad_record"  # lost its duplicate annotation
    assert reason("annotations[8] (id 8)")[0] == "duplicate_id"
    assert reason("annotations[5] (id 6)")[0] == "unknown_image_id"
    assert reason("images[14] (id 14)", "wrongsize.jpg")[0] == "image_size_mismatch"
    assert reason("images[15]")[0] == "bad_record"
    assert reason("images[16] (id 16)", "cut.jpg")[0] == "image_corrupt"
    assert reason("images[17] (id 17)", "cut.png")[0] == "image_corrupt"
    assert result.manifest.rejects.count == len(rejects) == 18

    kept = {q.origin_id: q for r in Dataset.open(result.uri, store).records() for q in r.queries}
    assert set(kept) == {"1", "2", "12"}
    assert kept["1"].positive and not kept["2"].positive and kept["12"].positive


def test_nothing_valid_fails_and_strict_refuses(corpus: Path, store: ObjectStore, tmp_path: Path) -> None:
    from components.errors import DataError

    strict = Ingest("bad", [SourceSpec.parse(f"hq={corpus}")], store)
    with pytest.raises(DataError, match="--strict: 18 records rejected"):
        strict.run(strict=True)
    assert not strict.committed()

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "annotations.json").write_text("not json")
    with pytest.raises(DataError, match="no valid records remained"):
        Ingest("empty", [SourceSpec.parse(f"hq={empty}")], store).run()
