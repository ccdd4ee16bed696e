"""Reading evaluation inputs: JSON files validated against pydantic record types.

Records are TypedDicts (they stay plain dicts; unknown keys are ignored, as SA-Co
files carry many) validated straight from the file's bytes by pydantic's JSON
parser, which is faster than ``json`` followed by validation. Every error names
the file and the record (its index and ids), so a bad prediction can be found.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from components.errors import ConfigError, DataError

IouType = Literal["segm", "bbox"]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Size = Annotated[int, Field(gt=0)]
Box = tuple[
    FiniteFloat, FiniteFloat, Annotated[FiniteFloat, Field(ge=0)], Annotated[FiniteFloat, Field(ge=0)]
]


class Rle(TypedDict):
    """A COCO RLE: ``counts`` is a compressed string or a list of run lengths; size is [height, width]."""

    size: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]
    counts: str | list[int]


Segmentation = Rle | list[list[FiniteFloat]]
Describe = Callable[[Any, tuple[Any, ...]], str]
"""(parsed document, pydantic error location) -> the record in words, e.g. "prediction #3 (image_id=7)"."""

T = TypeVar("T")


@cache
def adapter(record_type: Any) -> TypeAdapter[Any]:
    """The pydantic validator of ``record_type``, built on first use (building one takes start-up time)."""
    return TypeAdapter(record_type)


def require_files(paths: Sequence[Path]) -> None:
    """Every input must be an existing file: bad usage otherwise, found before any work starts."""
    for path in paths:
        if not Path(path).exists():
            raise ConfigError(f"{path}: no such file")
        if not Path(path).is_file():
            raise ConfigError(f"{path}: is not a file, expected a JSON file")


def read_bytes(path: Path) -> bytes:
    """A file's bytes; a missing file is bad usage."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, expected a JSON file") from exc


def load_validated(adapter: TypeAdapter[T], path: Path, describe: Describe) -> T:
    """Parse and validate a JSON file; on failure a DataError naming the file and the first bad record."""
    raw = read_bytes(path)
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        if first["type"].startswith("json_"):
            raise DataError(f"{path}: not valid JSON: {first['msg']}") from exc
        try:
            document = json.loads(raw)
        except ValueError:  # pragma: no cover - pydantic parsed it
            document = None
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        where = describe(document, tuple(first["loc"]))
        raise DataError(f"{path}: {where}: {first['msg']}{more}") from exc


def field_path(loc: tuple[Any, ...]) -> str:
    """('segmentation', 'counts') -> 'segmentation.counts'; the field part of an error location."""
    return ".".join(str(part) for part in loc) or "record"


def describe_in_list(what: str, ident: str) -> Describe:
    """Describe errors in a top-level list of records: "<what> #<index> (<ident>=...)"."""

    def describe(document: Any, loc: tuple[Any, ...]) -> str:
        if not loc or not isinstance(loc[0], int):
            return f"expected a JSON list of {what}s" if not isinstance(document, list) else field_path(loc)
        record = document[loc[0]] if isinstance(document, list) else None
        label = f" ({ident}={record.get(ident)!r})" if isinstance(record, dict) else ""
        return f"{what} #{loc[0]}{label}: {field_path(loc[1:])}"

    return describe


def describe_in_sections(document: Any, loc: tuple[Any, ...]) -> str:
    """Describe errors in a COCO-like object of lists: "annotations[12] (id=40): segmentation"."""
    if len(loc) >= 2 and isinstance(loc[1], int) and isinstance(document, dict):
        record = document[loc[0]][loc[1]]
        label = f" (id={record.get('id')!r})" if isinstance(record, dict) and "id" in record else ""
        return f"{loc[0]}[{loc[1]}]{label}: {field_path(loc[2:])}"
    return field_path(loc)
