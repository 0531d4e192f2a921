"""Video filter rules: each rejection names the rule and the value that broke it."""

from __future__ import annotations

import pytest

from stages.video_filter import VideoFilterConfig, VideoFilterStage

GOOD = {"status": "pending", "codec": "h264", "duration_s": 60.0, "num_frames": 1440,
        "width": 1280, "height": 720, "fps": 24.0, "border_fraction": 0.1, "vs_clarity": 300.0,
        "vs_underexposed": 0.05, "vs_overexposed": 0.01}


@pytest.mark.parametrize(("change", "settings", "rule", "value"), [
    ({"duration_s": 1.0}, {}, "min_duration_s", "1.0"),
    ({"duration_s": 7200.0}, {"max_duration_s": 3600}, "max_duration_s", "7200.0"),
    ({"height": 100}, {}, "min_short_side", "100"),
    ({"width": 20000, "height": 20000}, {}, "max_pixels", "400000000"),
    ({"fps": 5.0}, {}, "min_fps", "5.0"),
    ({"fps": 240.0}, {}, "max_fps", "240.0"),
    ({"codec": "mpeg2video"}, {"allowed_codecs": ["h264", "hevc"]}, "allowed_codecs", "mpeg2video"),
    ({"border_fraction": 0.6}, {}, "max_border_fraction", "0.6"),
    ({"vs_clarity": 10.0}, {"min_clarity": 50}, "min_clarity", "10.0"),
    ({"vs_underexposed": 0.95}, {}, "max_underexposed", "0.95"),
    ({"vs_overexposed": 0.95}, {}, "max_overexposed", "0.95"),
])
def test_each_rule_rejects_with_its_value(
    change: dict, settings: dict, rule: str, value: str,
) -> None:
    record = VideoFilterStage(VideoFilterConfig(**settings)).process(dict(GOOD, **change))
    got = (record["status"], record["reject_rule"], record["reject_value"])
    assert got == ("rejected", rule, value)
    assert record["reason"].startswith(f"video_filter.{rule}: ")


def test_good_video_passes_and_null_switches_a_rule_off() -> None:
    assert VideoFilterStage(VideoFilterConfig()).process(dict(GOOD))["status"] == "pending"
    lax = VideoFilterConfig(min_duration_s=None)
    assert VideoFilterStage(lax).process(dict(GOOD, duration_s=0.5))["status"] == "pending"


def test_unknown_value_is_rejected_not_passed() -> None:
    record = VideoFilterStage(VideoFilterConfig()).process(dict(GOOD, fps=None))
    assert record["reject_rule"] == "min_fps" and "unknown" in record["reason"]


def test_metadata_phase_needs_no_scores_and_scores_phase_skips_metadata() -> None:
    unscored = {k: v for k, v in GOOD.items() if not k.startswith(("vs_", "border"))}
    metadata = VideoFilterStage(VideoFilterConfig(), "metadata")
    assert metadata.process(dict(unscored))["status"] == "pending"
    assert metadata.process(dict(unscored, height=2))["reject_rule"] == "min_short_side"
    scores = VideoFilterStage(VideoFilterConfig(), "scores")
    assert scores.process(dict(GOOD, height=2))["status"] == "pending"
    assert scores.process(dict(GOOD, border_fraction=0.9))["reject_rule"] == "max_border_fraction"
