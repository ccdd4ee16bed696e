"""Ablations as configuration: planning (run ids shared where the recipe is), validation naming the file,
variant and field, the table in the store, and the same ablation compiled for a cluster (offline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.errors import ConfigError
from components.schemas import evaluation_metrics_key, evaluation_prefix
from components.storage import ObjectStore
from pipeline.ablation import AblationConfig, load, merge, plan
from pipeline.ablation_table import collect, markdown, write_table
from pipeline.config import CONFIGS, DEFAULT_CONFIG, PipelineConfig

SHIPPED = CONFIGS / "ablations.yaml"


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "base": str(DEFAULT_CONFIG), **doc}))
    return path


def test_merge_is_deep_and_replaces_leaves() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": {"e": 1}}
    assert merge(base, {"a": {"c": [3]}, "d": None}) == {"a": {"b": 1, "c": [3]}, "d": None}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": {"e": 1}}  # not changed


def test_a_variant_equal_to_its_base_reuses_the_base_s_run(variants_file: Path) -> None:
    """Run ids hash what is trained: a variant that changes nothing, only a gate, or only adds evaluation
    probes trains nothing again; one that changes the data or a recipe is a run of its own."""
    _, planned = load(variants_file)
    rows = {p.variant: p for p in planned}
    base = rows["base"].run_id
    for same in ("same", "gate-only", "probes"):
        assert rows[same].run_id == base and rows[same].shares == "base"
    for other in ("negatives-5", "presence-off"):
        assert rows[other].run_id != base and rows[other].shares is None
    assert rows["presence-off"].config.detector.train["presence_head"] is False
    assert all(p.config.registry.model == "sam3-tiny-ablations" for p in planned)  # never production
    assert all(p.config.registry.alias == "candidate" for p in planned)
    assert all(not p.config.presence.gate.detection_rules() for p in planned)  # gates open: every row reaches
    # its table stage; the base's own run id is what `sam3-pipeline run` gives the same recipe
    local = PipelineConfig.load(DEFAULT_CONFIG)
    assert base == local.effective_run_id()


@pytest.fixture
def variants_file(tmp_path: Path) -> Path:
    """The embedded default with a variant equal to it, one changing a gate, one adding probes, and two that
    train something else."""
    return _write(
        tmp_path,
        {
            "variants": {
                "same": {},
                "gate-only": {"override": {"presence": {"gate": {"cgF1": 50}}}},
                "probes": {
                    "override": {"evaluation": {"exemplars": [1]}},
                    "probes_published": {"exemplars-1": {"cgF1": 57.6}},
                },
                "negatives-5": {"override": {"data": {"negatives_per_image": 5}}},
                "presence-off": {
                    "override": {
                        "detector": {"train": {"presence_head": False}},
                        "presence": {"train": {"presence_head": False}},
                    }
                },
            }
        },
    )


def test_running_the_plan_trains_a_recipe_once(variants_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same config twice runs once (the later row's numbers are the earlier's); the runner is a stand-in,
    what it is given is what `sam3-pipeline run` would run."""
    from pipeline.commands import ablate

    ran: list[str] = []

    class Done:
        verdict, state = "promoted", "SUCCEEDED"

    def run_local(cfg: PipelineConfig, store: object, workdir: Path) -> Done:
        ran.append(cfg.content_hash())
        return Done()

    monkeypatch.setattr("pipeline.local.run_local", run_local)
    monkeypatch.setattr("components.embedded_store.sam3_home", lambda: Path("/nonexistent"))
    _, planned = load(variants_file)
    ablate._run_here(planned, store=None)  # type: ignore[arg-type]
    # "same" is the base's config, and so is "gate-only" once the ablation opens every gate: not run again;
    # "probes" runs (to score its probes) with the base's run id: its train steps find the checkpoints done
    rows = {p.variant: p.config.content_hash() for p in planned}
    assert ran == [rows[v] for v in ("base", "negatives-5", "presence-off", "probes")]


@pytest.mark.parametrize(
    ("doc", "said"),
    [
        (
            {"variants": {"v": {"override": {"data": {"negatives": 5}}}}},
            "variants.v.override: data.negatives: Extra",
        ),
        (
            {"variants": {"v": {"override": {"detector": {"steps": 0}}}}},
            "variants.v.override: detector.steps",
        ),
        ({"variants": {"v": {"overide": {}}}}, "variants.v.overide: Extra inputs"),
        ({"variants": {}}, "variants: "),
        ({"variants": {"base": {}}}, "variants.base: the name is the base row's"),
        ({"variants": {"v": {"override": {"run_id": "fixed"}}}}, "variants.v.override: sets run_id"),
        ({"stage": "tracker", "variants": {"v": {}}}, "stage: 'tracker' is not an image stage"),
        (
            {"variants": {"v": {"probes_published": {"exemplars-2": {"cgF1": 1}}}}},
            "variants.v.probes_published: ['exemplars-2'] are not probes it asks for",
        ),
        (
            {"variants": {"v": {"override": {"evaluation": {"exemplars": [5]}}}}},
            "variants.v.override: evaluation.exemplars",
        ),
        (
            {"common": {"detector": {"train": {"steps": 3}}}, "variants": {"v": {}}},
            "common: detector.train: Value error, ['steps']",
        ),
    ],
)
def test_a_bad_ablation_names_the_file_variant_and_field(
    tmp_path: Path, doc: dict[str, Any], said: str
) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(str(path)) and said in str(err.value), str(err.value)


def test_a_missing_base_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "base": "nowhere.yaml", "variants": {"v": {}}}))
    with pytest.raises(ConfigError, match=r"a\.yaml: base nowhere\.yaml: cannot read it"):
        load(path)


def test_the_shipped_ablations_plan_four_ablations_on_few_trainings() -> None:
    _, planned = load(SHIPPED)
    assert {p.spec.ablation for p in planned} == {
        "all",
        "data sources",
        "hard negatives",
        "presence head",
        "exemplar prompts",
    }
    assert len({p.run_id for p in planned}) == 7  # base, 3 data, 2 negatives, presence off
    assert {p.variant for p in planned if p.shares == "base"} == {"presence-off-at-scoring", "exemplars"}
    assert all(p.config.stages() == ["pretrain", "detector", "presence"] for p in planned)
    rows = {p.variant: p.config for p in planned}
    assert rows["ext-only"].train_config("detector", "s3://b/d/x/1", run_id="r").sources == {
        "hq": 0,
        "syn": 0,
        "ext": 1,
    }
    assert rows["base"].data == rows["ext-only"].data  # one data version for the source rows


def test_the_table_is_written_data_first_with_the_published_figures(
    variants_file: Path, store: ObjectStore
) -> None:
    ablation, planned = load(variants_file)
    base = planned[0].run_id
    store.put_json(
        evaluation_metrics_key(base, "presence"),
        {"result": {"cgF1": 12.5, "IL_MCC": 0.41, "pmF1": 30.0}, "diagnostics": {"recognition_auc": 0.8}},
    )
    store.put_json(
        f"{evaluation_prefix(base, 'presence')}/probes/exemplars-1.json",
        {"result": {"cgF1": 20.0, "IL_MCC": 0.5, "pmF1": 40.0}, "diagnostics": {"recognition_auc": 0.9}},
    )
    table = collect(ablation, planned, store)
    rows = {(r.variant, r.measure): r for r in table.rows}
    assert rows[("base", "text")].cgF1 == 12.5 and rows[("base", "text")].recognition_AUC == 0.8
    assert rows[("same", "text")].cgF1 == 12.5 and rows[("same", "text")].shares == "base"
    probe = rows[("probes", "exemplars-1")]
    assert probe.cgF1 == 20.0 and probe.published is not None and probe.published.cgF1 == 57.6
    assert rows[("negatives-5", "text")].status == "missing"  # its run has not evaluated yet
    key = write_table(table, store)
    assert store.get_json(key)["rows"] == json.loads(table.model_dump_json())["rows"]
    pointer = store.get_json("ablations/t/latest.json")
    assert pointer["key"] == key and pointer["plan"] == table.plan
    text = store.get_bytes(key.replace("table.json", "table.md")).decode()
    assert text == markdown(table) and "| probes / exemplars-1 | 20.0 | 0.50 | 40.0 | 0.900 | 57.6 |" in text
    assert "<table>" in store.get_bytes(key.replace("table.json", "table.html")).decode()


def test_the_same_ablation_compiles_for_a_cluster(tmp_path: Path) -> None:
    """Each row of the shipped ablation on the cluster scheduler compiles; the rows' overrides reach their
    steps (the data step's negatives, the train steps' presence head and sources, the probes of the presence
    stage's evaluation), and rows that share a run id compile to the same train steps."""
    from pipeline.submit import compile_pipeline

    doc = yaml.safe_load(SHIPPED.read_text())
    doc["base"] = str(DEFAULT_CONFIG)
    doc["common"]["scheduler"] = "kubernetes"
    ablation = AblationConfig.model_validate(doc)
    planned = plan(ablation, yaml.safe_load(DEFAULT_CONFIG.read_text()))
    wanted = {"base", "negatives-0", "presence-off", "exemplars"}
    specs = {}
    for run in planned:
        if run.variant in wanted:
            path = compile_pipeline(run.config, tmp_path / f"{run.variant}.yaml")
            specs[run.variant] = next(yaml.safe_load_all(path.read_text()))

    def inputs(spec: dict[str, Any], display: str) -> dict[str, Any]:
        for component in spec["components"].values():
            for task in component.get("dag", {}).get("tasks", {}).values():
                if task["taskInfo"]["name"] == display:
                    params = task["inputs"]["parameters"]
                    return {
                        k: v["runtimeValue"]["constant"] for k, v in params.items() if "runtimeValue" in v
                    }
        raise AssertionError(display)

    def data(variant: str) -> dict[str, Any]:
        return json.loads(inputs(specs[variant], "mine-hard-negatives")["data"])

    assert data("base")["negatives_per_image"] == 30 and data("negatives-0")["negatives_per_image"] == 0
    assert data("base")["synthetic"]["ext_images"] == 400
    train = {v: json.loads(inputs(specs[v], "train detector")["train_config"]) for v in specs}
    assert train["base"]["presence_head"] and not train["presence-off"]["presence_head"]
    assert train["exemplars"] == train["base"]  # the probes' row trains the base's checkpoints
    probes = json.loads(inputs(specs["exemplars"], "evaluate presence")["probes"])
    assert [p["exemplars"] for p in probes] == [1, 2, 3, 4]
    assert json.loads(inputs(specs["base"], "evaluate presence")["probes"]) == []
    assert json.loads(inputs(specs["exemplars"], "evaluate detector")["probes"]) == []
