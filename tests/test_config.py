"""pipeline.yaml validation: bad configs fail before any work, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from curation.config import ConfigError, PipelineConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_pipeline_yaml_is_valid_and_matches_the_defaults() -> None:
    assert load_config(ROOT / "pipeline.yaml") == PipelineConfig()


def test_unknown_key_names_the_key_and_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"stages": {"video_filter": {"min_duration": 3}}})
    message = str(err.value)
    assert "stages.video_filter.min_duration: unknown key" in message
    assert "min_duration_s" in message and "max_border_fraction" in message


def test_wrong_type_and_range_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"stages\.shot_split\.cut_threshold: .* \(got 'high'\)"):
        parse_config({"stages": {"shot_split": {"cut_threshold": "high"}}})
    with pytest.raises(ConfigError, match=r"stages\.video_score\.border_luma"):
        parse_config({"stages": {"video_score": {"border_luma": 300}}})
    with pytest.raises(ConfigError, match="min_fps .* is above max_fps"):
        parse_config({"stages": {"video_filter": {"min_fps": 60, "max_fps": 30}}})


def test_unreadable_or_non_mapping_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(bad)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config(["a"])


def test_fingerprint_ignores_output_batching_and_speed_only_settings() -> None:
    base = PipelineConfig()
    assert base.fingerprint() == parse_config({"output": {"videos_per_part": 1}}).fingerprint()
    speed = {"shot_split": {"chunk_s": 60, "prefetch_frames": 0, "resources": {"num_cpus": 2}},
             "encode": {"chunk_s": None, "resources": {"max_workers": 3}},
             "shot_crop": {"chunk_s": 30}}
    assert base.fingerprint() == parse_config({"stages": speed}).fingerprint()
    for results in ({"shot_split": {"cut_threshold": 30}},
                    {"shot_split": {"resources": {"timeout_s": 5}}},
                    {"shot_caption": {"resources": {"gpu_when_available": False}}}):
        assert base.fingerprint() != parse_config({"stages": results}).fingerprint(), results


PIPELINE_PRESETS = sorted(p for p in (ROOT / "configs").glob("*.yaml")
                          if not p.name.startswith("train-"))


@pytest.mark.parametrize("preset", PIPELINE_PRESETS, ids=lambda p: p.name)
def test_presets_are_valid(preset: Path) -> None:
    assert load_config(preset) != PipelineConfig()


def test_stop_after_cuts_the_plan_and_names_the_stages(tmp_path: Path) -> None:
    from curation.plan import build_plan

    plan = build_plan(parse_config({"stop_after": "shot_caption"}), tmp_path)
    assert [p.stage.name for p in plan] == [
        "probe", "video_filter", "video_score", "video_filter", "shot_split", "shot_score",
        "shot_filter", "shot_crop", "shot_merge"]
    with pytest.raises(ConfigError, match="stop_after: .*allowed: probe, video_score"):
        parse_config({"stop_after": "shot_magic"})


def test_set_overrides_keys_of_the_file_or_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("stages:\n  shot_split:\n    cut_threshold: 20\n")
    config = load_config(path, ["stages.shot_split.cut_threshold=31.5", "stop_after=shot_split"])
    assert (config.stages.shot_split.cut_threshold, config.stop_after) == (31.5, "shot_split")
    assert load_config(None, ["stages.encode.crf=23"]).stages.encode.crf == 23
    with pytest.raises(ConfigError, match="stages.encode.crff: unknown key"):
        load_config(None, ["stages.encode.crff=23"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(path, ["stages.encode.crf"])
