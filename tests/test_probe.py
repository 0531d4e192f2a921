"""Probe stage on real and broken files."""

from __future__ import annotations

from pathlib import Path

from curation.plan import StageCall
from stages.probe import ProbeConfig, ProbeStage
from stages.video_filter import VideoFilterConfig, VideoFilterStage


def _probe(path: Path) -> dict:
    return StageCall(ProbeStage(ProbeConfig()))({"path": str(path), "status": "pending"})


def test_probe_reads_real_footage(bikes: Path) -> None:
    record = _probe(bikes)
    assert record["status"] == "pending"
    assert (record["codec"], record["width"], record["height"]) == ("h264", 640, 272)
    assert record["fps"] == 25.0 and record["num_frames"] == 250
    assert abs(record["duration_s"] - 10.0) < 0.05
    assert record["fps_variable"] is False and record["rotation"] == 0
    assert record["seconds_probe"] > 0


def test_probe_sees_audio_streams_and_container(generated: dict[str, Path]) -> None:
    record = _probe(generated["cuts"])
    assert "mp4" in record["container"] and record["audio_streams"] == 0
    assert record["num_frames"] == 180


def test_bad_inputs_get_a_reason_naming_the_cause(bad_inputs: dict) -> None:
    stages = [StageCall(ProbeStage(ProbeConfig())),
              StageCall(VideoFilterStage(VideoFilterConfig()))]
    for name, (path, status, rule) in bad_inputs.items():
        if name == "dangling.mp4":
            continue  # discovery reports it (see test_discover)
        record = {"path": str(path), "status": "pending"}
        for stage in stages:
            record = stage(record)
        assert (record["status"], record["reject_rule"]) == (status, rule), (name, record["reason"])
        assert record["reason"].startswith(f"{record['reject_stage']}.{rule}: ")


def test_truncated_file_reason_quotes_ffprobe(bad_inputs: dict) -> None:
    record = _probe(bad_inputs["no moov.mp4"][0])
    assert "moov atom not found" in record["reason"]
