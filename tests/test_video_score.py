"""Video score stage: borders, clarity and exposure against videos built to known values."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from stages.probe import ProbeConfig, ProbeStage
from stages.video_score import VideoScoreConfig, VideoScoreStage, active_box, sample_indices


def _score(path: Path) -> dict:
    record = ProbeStage(ProbeConfig()).process({"path": str(path), "status": "pending"})
    return VideoScoreStage(VideoScoreConfig()).process(record)


def test_letterbox_rectangle_in_source_pixels(generated: dict[str, Path]) -> None:
    record = _score(generated["letterbox"])  # 320x240 with 30 px bars top and bottom
    box = (record["border_x"], record["border_y"], record["border_w"], record["border_h"])
    assert box == (0, 30, 320, 180)
    assert record["border_fraction"] == 0.25


def test_full_frame_video_has_no_border(bikes: Path) -> None:
    record = _score(bikes)
    assert record["border_fraction"] == 0.0 and record["border_w"] == 640
    assert record["vs_frames"] >= 2 and record["decoder"] == "decord"


def test_blur_lowers_clarity_and_darkening_raises_underexposure(
    tmp_path: Path, generated: dict[str, Path]
) -> None:
    blurred, dark = tmp_path / "blur.mp4", tmp_path / "dark.mp4"
    for out, vf in ((blurred, "gblur=sigma=4"), (dark, "eq=brightness=-0.6")):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(generated["cuts"]), "-vf", vf,
                        str(out)], check=True)
    sharp = _score(generated["cuts"])
    assert _score(blurred)["vs_clarity"] < 0.2 * sharp["vs_clarity"]
    darkened = _score(dark)
    assert darkened["vs_underexposed"] > 5 * sharp["vs_underexposed"]  # measured 0.34-0.49
    assert darkened["vs_mean_luma"] < sharp["vs_mean_luma"] / 3


def test_dark_scene_is_not_mistaken_for_a_border() -> None:
    frames = np.zeros((3, 90, 160), np.uint8)
    frames[0, 10:80, :] = 200  # one lit frame shows the picture's real extent
    assert active_box(frames, 24) == (0, 10, 160, 70)
    assert active_box(np.zeros((2, 9, 16), np.uint8), 24) is None


def test_sample_indices_prefer_key_frames() -> None:
    assert sample_indices([0, 48, 96, 144, 192], 240, 3) == [0, 96, 192]
    assert sample_indices([0], 100, 4) == [0, 33, 66, 99]
    assert sample_indices([0], 1, 16) == [0]


def test_pyav_fallback_samples_the_same_key_frames_as_decord(bikes: Path) -> None:
    from media.readers import DecordReader, PyAVReader

    decord_reader = DecordReader(str(bikes), (320, 136))
    pyav_reader = PyAVReader(str(bikes), (320, 136))
    assert pyav_reader.num_frames == decord_reader.num_frames == 250
    assert pyav_reader.key_indices() == decord_reader.key_indices()
    keys = decord_reader.key_indices()[:3]
    diff = np.abs(pyav_reader.frames_at(keys).astype(int) - decord_reader.frames_at(keys)).mean()
    assert pyav_reader.frames_at(keys).shape == (len(keys), 136, 320, 3) and diff < 8
