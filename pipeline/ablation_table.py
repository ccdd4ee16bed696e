"""The comparison table of an ablation: collected from the runs' evaluations, written where people look.

One row per planned run (the base first), plus one per evaluation probe a run asks for (exemplar prompts,
the score without presence); each with cgF1, IL_MCC, pmF1 and the recognition AUC (threshold-free: does a
pair's best score rank present phrases above absent ones; components.evaluate.diagnostics) of the stage
the table reads, and the published figures beside them where the ablation file gives them. A row whose
run has not evaluated that stage yet is ``missing``.

``write_table`` puts, under ``ablations/<name>/<plan hash>/``, ``table.json`` (``AblationTable``),
``table.md`` and ``table.html``, then moves the pointer ``ablations/<name>/latest.json`` to them: data
first, pointer last.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from components.evaluate.probes import Probe, probe_key
from components.schemas import evaluation_metrics_key, evaluation_prefix
from components.storage import ObjectStore
from pipeline.ablation import AblationConfig, PlannedRun, Published, plan_hash

TEXT = "text"  # the measure of a run's own headline (text prompts, as the stage was evaluated)
METRICS = (("cgF1", ".1f"), ("IL_MCC", ".2f"), ("pmF1", ".1f"))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Row(_Model):
    ablation: str
    variant: str
    measure: str  # "text", or a probe's name
    run_id: str
    shares: str | None = None
    status: Literal["done", "missing"]
    cgF1: float | None = None
    IL_MCC: float | None = None
    pmF1: float | None = None
    recognition_AUC: float | None = None
    published: Published | None = None


class AblationTable(_Model):
    name: str
    plan: str
    stage: str
    created_at: str
    rows: list[Row]


class TablePointer(_Model):
    plan: str
    key: str
    written_at: str


def collect(ablation: AblationConfig, planned: list[PlannedRun], store: ObjectStore) -> AblationTable:
    """Read every row's numbers from the store (what the runs' evaluate steps wrote)."""
    stage = ablation.stage
    rows: list[Row] = []
    for run in planned:
        key = evaluation_metrics_key(run.run_id, stage)
        common = {
            "ablation": run.spec.ablation,
            "variant": run.variant,
            "run_id": run.run_id,
            "shares": run.shares,
        }
        if store.exists(key):
            doc = store.get_json(key)
            rows.append(
                _row(common, TEXT, doc.get("result", {}), doc.get("diagnostics", {}), run.spec.published)
            )
        else:
            rows.append(Row(**common, measure=TEXT, status="missing", published=run.spec.published))
        for probe in run.config.evaluation.probes():
            published = run.spec.probes_published.get(probe.name)
            found = _probe(store, run.run_id, stage, probe)
            if found is None:
                rows.append(Row(**common, measure=probe.name, status="missing", published=published))
            else:
                rows.append(
                    _row(common, probe.name, found.get("result", {}), found.get("diagnostics", {}), published)
                )
    return AblationTable(
        name=ablation.name,
        plan=plan_hash(ablation, planned),
        stage=stage,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        rows=rows,
    )


def _probe(store: ObjectStore, run_id: str, stage: str, probe: Probe) -> dict[str, Any] | None:
    key = probe_key(evaluation_prefix(run_id, stage), probe)
    return store.get_json(key) if store.exists(key) else None


def _row(
    common: dict[str, Any],
    measure: str,
    result: dict[str, Any],
    found: dict[str, Any],
    published: Published | None,
) -> Row:
    def get(doc: dict[str, Any], name: str) -> float | None:
        return None if doc.get(name) is None else float(doc[name])

    return Row(
        **common,
        measure=measure,
        status="done",
        cgF1=get(result, "cgF1"),
        IL_MCC=get(result, "IL_MCC"),
        pmF1=get(result, "pmF1"),
        recognition_AUC=get(found, "recognition_auc"),
        published=published,
    )


# -- rendering ---------------------------------------------------------------------
COLUMNS = (
    "ablation",
    "row",
    "cgF1",
    "IL_MCC",
    "pmF1",
    "recognition AUC",
    "paper cgF1",
    "paper IL_MCC",
    "paper pmF1",
)


def cells(row: Row) -> list[str]:
    """A row as text cells, in COLUMNS order ("-": not known)."""

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    name = row.variant if row.measure == TEXT else f"{row.variant} / {row.measure}"
    if row.status == "missing":
        ours = ["missing"] + ["-"] * 3
    else:
        ours = [fmt(getattr(row, m), f) for m, f in METRICS] + [fmt(row.recognition_AUC, ".3f")]
    paper = row.published or Published()
    return [row.ablation, name, *ours, *(fmt(getattr(paper, m), f) for m, f in METRICS)]


def markdown(table: AblationTable) -> str:
    lines = [
        f"# Ablation {table.name} ({table.stage} stage, plan {table.plan})",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in table.rows]
    shared = [
        f"{r.variant} reuses {r.shares}'s run {r.run_id}"
        for r in table.rows
        if r.shares and r.measure == TEXT
    ]
    if shared:
        lines += ["", "Shared training: " + "; ".join(shared) + "."]
    return "\n".join(lines) + "\n"


def to_html(table: AblationTable) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells(row)) + "</tr>" for row in table.rows
    )
    title = html.escape(f"Ablation {table.name} ({table.stage} stage, plan {table.plan})")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style></head>"
        f"<body><h1>{title}</h1><table><tr>{head}</tr>{body}</table></body></html>\n"
    )


def table_prefix(table: AblationTable) -> str:
    return f"ablations/{table.name}/{table.plan}"


def write_table(table: AblationTable, store: ObjectStore) -> str:
    """The table's JSON, Markdown and HTML into the store, then the pointer; returns the JSON's key."""
    prefix = table_prefix(table)
    store.put_bytes(f"{prefix}/table.md", markdown(table).encode(), "text/markdown")
    store.put_bytes(f"{prefix}/table.html", to_html(table).encode(), "text/html")
    store.put_json(f"{prefix}/table.json", table.model_dump(mode="json"))
    pointer = TablePointer(plan=table.plan, key=f"{prefix}/table.json", written_at=table.created_at)
    store.put_json(f"ablations/{table.name}/latest.json", pointer.model_dump(mode="json"))  # last
    return f"{prefix}/table.json"
