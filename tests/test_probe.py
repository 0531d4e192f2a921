"""Probe stage on real and broken files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curation.config import InputConfig
from curation.discover import discover
from curation.plan import StageCall
from stages.probe import ProbeConfig, ProbeStage, apply_probe, run_ffprobe
from stages.video_filter import VideoFilterConfig, VideoFilterStage
from tests.conftest import NonRoot


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
    assert "libav" not in record["reason"]  # no version banner


def test_ffprobe_is_stopped_at_its_timeout(tmp_path: Path) -> None:
    # a playlist that points at a FIFO: ffprobe blocks on it for ever
    os.mkfifo(tmp_path / "pipe.txt")
    playlist = tmp_path / "playlist.dat"
    playlist.write_text("ffconcat version 1.0\nfile pipe.txt\n")
    with pytest.raises(subprocess.TimeoutExpired):
        run_ffprobe(str(playlist), timeout_s=1)


def test_a_zero_frame_duration_and_a_degenerate_rotation_are_no_errors(
        generated: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(generated["cuts"].read_bytes())
    at = data.find(b"stts")
    data[at + 16:at + 20] = bytes(4)  # the sample delta: ffprobe says r_frame_rate 1/0
    broken = tmp_path / "zero delta.bin"
    broken.write_bytes(bytes(data))
    shutil.copy(broken, tmp_path / "zero delta.mp4")
    record = _probe(tmp_path / "zero delta.mp4")
    assert record.get("reject_rule") != "error", record["reason"]
    found = discover(tmp_path, InputConfig())  # the .bin is probed too; that raised before
    assert [r["rel_path"] for r in found] == ["zero delta.bin", "zero delta.mp4"]
    stream = {"codec_type": "video", "r_frame_rate": "1/0", "avg_frame_rate": "0/0",
              "side_data_list": [{"rotation": -9223372036854775808}]}
    facts = apply_probe({"status": "pending"}, {"streams": [stream]}, "probe")
    assert (facts["fps"], facts["rotation"]) == (None, 0)


def test_playlists_named_as_videos_are_not_followed(generated: dict[str, Path],
                                                    tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")  # following it would block for ever
    (tmp_path / "concat.mp4").write_text("ffconcat version 1.0\nfile pipe.txt\n")
    (tmp_path / "concat.dat").write_text("ffconcat version 1.0\nfile pipe.txt\n")
    (tmp_path / "hls.mov").write_text(f"#EXTM3U\n#EXTINF:4,\n{generated['cuts']}\n")
    for name, kind in (("concat.mp4", "ffconcat"), ("hls.mov", "HLS")):
        record = _probe(tmp_path / name)
        assert (record["status"], record["reject_rule"], record["reject_value"]) == (
            "rejected", "playlist", kind)
    found = {r["rel_path"]: r["status"] for r in discover(tmp_path, InputConfig())}
    assert found == {"concat.mp4": "pending", "hls.mov": "pending"}  # .dat is no video


def test_a_file_locked_after_discovery_is_an_unreadable_row(
        generated: dict[str, Path], non_root: NonRoot) -> None:
    locked = non_root.folder / "locked.mp4"
    shutil.copy(generated["cuts"], locked)
    locked.chmod(0)
    probe = ("from curation.plan import StageCall; from stages.probe import *; "
             f"r = StageCall(ProbeStage(ProbeConfig()))({{'path': {str(locked)!r}, "
             "'status': 'pending'}); print(r['reject_stage'], r['reject_rule'], r['reason'])")
    done = subprocess.run([*non_root.prefix, sys.executable, "-c", probe], capture_output=True,
                          text=True, check=True, cwd=Path(__file__).parents[1])
    assert done.stdout.strip() == "probe unreadable probe.unreadable: cannot read file: " \
                                  "Permission denied"
