"""The stage registry: one table that the config, the plan, the names and the tables follow."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from curation.config import StagesConfig, parse_config
from curation.output.schema import (
    SHOTS_TABLE,
    VIDEOS_TABLE,
    UndeclaredColumnError,
    to_table,
)
from curation.output.writer import PartWriter
from curation.plan import build_plan
from stages.records import StageRule, drop_shot, fail, reject
from stages.registry import REGISTRY, STAGE_NAMES


def test_config_sections_plan_and_names_all_follow_the_registry(tmp_path: Path) -> None:
    assert tuple(StagesConfig.model_fields) == STAGE_NAMES
    config = parse_config({"stages": {"shot_caption": {"model": "some/model"}}})
    planned = [planned.stage.name for planned in build_plan(config, tmp_path)]
    # every stage in registry order; the video filter's metadata rules run early as well
    assert list(dict.fromkeys(name for name in planned if planned.count(name) == 1)) == [
        name for name in STAGE_NAMES if name != "video_filter"]
    assert planned.index("video_filter") < planned.index("video_score")
    assert planned[planned.index("video_score") + 1] == "video_filter"


def test_every_written_key_is_declared_once_with_its_meaning() -> None:
    for table in (VIDEOS_TABLE, SHOTS_TABLE):
        assert all(table.meanings.values()), "a column without a meaning"
    for name in STAGE_NAMES:
        assert f"seconds_{name}" in VIDEOS_TABLE.schema.names
    declared = [c.name for entry in REGISTRY for c in entry.stage.columns]
    assert len(declared) == len(set(declared))


def test_a_row_with_an_undeclared_key_raises_naming_it() -> None:
    row = {"video_id": "a", "status": "accepted", "num_shot": 3}  # num_shots, mistyped
    with pytest.raises(UndeclaredColumnError, match="num_shot"):
        to_table([row], VIDEOS_TABLE)
    carried = {"video_id": "a", "status": "accepted", "shots": [], "mtime_ns": 1}
    assert to_table([carried], VIDEOS_TABLE).num_rows == 1


def test_a_stage_writing_an_undeclared_key_costs_only_its_video(tmp_path: Path) -> None:
    good = {"video_id": "good", "path": "/in/good.mp4", "status": "rejected", "reject_rule": "x"}
    bad = {"video_id": "bad", "path": "/in/bad.mp4", "status": "rejected", "vs_clarty": 1.0}
    PartWriter(tmp_path).write([good, bad])
    rows = {r["video_id"]: r for r in ds.dataset(tmp_path / "videos").to_table().to_pylist()}
    assert rows["good"]["status"] == "rejected"
    assert rows["bad"]["reject_rule"] == "unwritable_row"
    assert "vs_clarty" in rows["bad"]["reason"]


def test_rules_are_declared_enums_never_free_strings() -> None:
    record = {"status": "pending"}
    with pytest.raises(TypeError, match="not a declared rule"):
        reject(record, "probe", "too_short", 1, "free strings are refused")
    with pytest.raises(TypeError, match="not a declared rule"):
        drop_shot({}, "shot_filter", "min_clarity", 1, "refused too")
    assert fail(record, "probe", StageRule.TIMEOUT, "d")["reason"] == "probe.timeout: d"
    for entry in REGISTRY:
        assert issubclass(entry.stage.rules, StrEnum)


@pytest.mark.parametrize("name", ["video_filter", "shot_filter"])
def test_each_filter_rule_is_the_config_key_that_sets_its_limit(name: str) -> None:
    entry = next(entry for entry in REGISTRY if entry.name == name)
    assert {rule.value for rule in entry.stage.rules} <= set(entry.config.model_fields)
