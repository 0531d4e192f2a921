"""Shot split on generated videos with exact boundaries and on real footage."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
from pathlib import Path

import pytest

from media.readers import analysis_size
from media.seek import GridMismatch
from stages.probe import ProbeConfig, ProbeStage
from stages.shot_split.config import ShotSplitConfig
from stages.shot_split.passes import full_pass, sparse_pass
from stages.shot_split.stage import ShotSplitStage, detect_shots
from stages.shot_split.transitions import Span, content_cuts
from tests import media


def _split(path: Path, **settings: object) -> dict:
    record = ProbeStage(ProbeConfig()).process({"path": str(path), "status": "pending"})
    return ShotSplitStage(ShotSplitConfig(**settings)).process(record)


def _assert_tiles(record: dict) -> None:
    shots = record["shots"]
    assert shots[0]["start_frame"] == 0 and shots[-1]["end_frame"] == record["frames_decoded"]
    for before, after in zip(shots, shots[1:], strict=False):
        assert before["end_frame"] == after["start_frame"]
        assert before["boundary_out"] == after["boundary_in"]
        assert before["end_time"] == pytest.approx(after["start_time"], abs=1e-6)
    assert [s["shot_index"] for s in shots] == list(range(len(shots)))
    assert shots[0]["boundary_in"] == "video_start" and shots[-1]["boundary_out"] == "video_end"


def test_generated_hard_cuts_are_exact(generated: dict[str, Path]) -> None:
    record = _split(generated["cuts"])  # shots of 30, 50, 40, 60 frames
    assert [s["start_frame"] for s in record["shots"]] == [0, 30, 80, 120]
    assert {s["boundary_out"] for s in record["shots"][:-1]} == {"clean"}
    assert record["shots"][1]["start_time"] == pytest.approx(30 / 24)
    _assert_tiles(record)


def test_bikes_cuts_match_ground_truth(bikes: Path) -> None:
    record = _split(bikes)
    found = [s["start_frame"] for s in record["shots"][1:]]
    assert len(found) == 5
    for got, truth in zip(found, [30, 76, 137, 187, 242], strict=True):
        assert abs(got - truth) <= 1
    _assert_tiles(record)


def test_dissolve_is_one_transition_with_its_span(generated: dict[str, Path]) -> None:
    record = _split(generated["dissolve"])  # blend over frames [48, 72)
    first, second = record["shots"]
    assert first["boundary_out"] == second["boundary_in"] == "transition"
    span = (first["transition_out_start"], first["transition_out_end"])
    # Measured (49, 69): the tail of a dissolve out of a moving shot fades into that motion.
    assert abs(span[0] - 48) <= 2 and abs(span[1] - 72) <= 3, span
    assert span[0] < first["end_frame"] < span[1]
    assert (second["transition_in_start"], second["transition_in_end"]) == span
    _assert_tiles(record)


def test_fade_through_black_is_one_transition(generated: dict[str, Path]) -> None:
    record = _split(generated["fade"])  # fade out over [60, 72), fade in over [72, 84)
    assert len(record["shots"]) == 2
    first = record["shots"][0]
    assert first["boundary_out"] == "transition"
    assert abs(first["transition_out_start"] - 60) <= 2
    assert abs(first["transition_out_end"] - 84) <= 2
    _assert_tiles(record)


def test_gradual_detector_off_turns_a_dissolve_into_at_most_a_cut(
    generated: dict[str, Path],
) -> None:
    record = _split(generated["dissolve"], gradual={"enabled": False})
    assert all(s["boundary_out"] in ("clean", "video_end") for s in record["shots"])


def test_single_shot_video_is_one_shot(generated: dict[str, Path]) -> None:
    record = _split(generated["letterbox"])
    assert record["num_shots"] == 1 and record["frames_decoded"] == 48
    _assert_tiles(record)


@pytest.mark.parametrize("name", ["bikes", "cuts", "dissolve", "fade", "letterbox"])
@pytest.mark.parametrize("gradual", [True, False])
def test_sparse_pass_finds_what_the_full_pass_finds(
    name: str, gradual: bool, bikes: Path, generated: dict[str, Path],
) -> None:
    """Same cuts, transition spans, frame times and signal bytes from a third fewer frames."""
    path = str(bikes if name == "bikes" else generated[name])
    record = ProbeStage(ProbeConfig()).process({"path": path, "status": "pending"})
    config = ShotSplitConfig(gradual={"enabled": gradual})
    size = analysis_size(record["width"], record["height"], config.analysis_width)
    min_shot = max(1, round(config.min_shot_s * record["fps"]))
    full = full_pass(path, size, record["fps"], config)
    sparse = sparse_pass(path, size, record["fps"], config)  # no fallback here
    assert content_cuts(sparse.scores, 27.0, min_shot, record["fps"]) == content_cuts(
        full.scores, 27.0, min_shot, record["fps"])
    assert (sparse.times, sparse.spans, sparse.signals) == (full.times, full.spans, full.signals)


def test_container_without_decode_times_falls_back_to_every_frame(
    generated: dict[str, Path], tmp_path: Path,
) -> None:
    remuxed = tmp_path / "dissolve.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(generated["dissolve"]), "-c", "copy",
                    str(remuxed)], check=True)
    expected = detect_shots(str(generated["dissolve"]), 320, 180, 24.0, ShotSplitConfig())
    found = detect_shots(str(remuxed), 320, 180, 24.0, ShotSplitConfig())
    assert found[1:] == expected[1:]  # frames and signals; Matroska times are whole milliseconds
    for shot, want in zip(found[0], expected[0], strict=True):
        assert shot == {**want, "start_time": shot["start_time"], "end_time": shot["end_time"]}
        assert shot["start_time"] == pytest.approx(want["start_time"], abs=1e-3)


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_pieces_find_what_one_pass_finds(container: str, tmp_path: Path) -> None:
    """30 s in four pieces of 180 frames: a dissolve across the first join, a cut on the second
    and one just after the third; the later pieces warm up from a keyframe before them. In
    Matroska the frame times are whole milliseconds, unevenly spaced at 24 fps."""
    path = tmp_path / "film.mp4"
    span, cuts = media.make_dissolve_then_cuts(path, [200, 184, 190, 170], 24)
    if container == "mkv":
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-c", "copy",
                        str(path.with_suffix(".mkv"))], check=True)
        path = path.with_suffix(".mkv")
    assert span == (176, 200) and cuts == [360, 550]
    record = ProbeStage(ProbeConfig()).process({"path": str(path), "status": "pending"})
    pieces = ShotSplitStage(ShotSplitConfig(chunk_s=7.5))
    chunks = pieces.chunks(record)
    assert [(c.start, c.end) for c in chunks] == [(0, 180), (180, 360), (360, 540), (540, 720)]
    assert chunks[2].warm_start > 0 and chunks[3].warm_start > 0  # real warm-ups
    whole = ShotSplitStage(ShotSplitConfig(chunk_s=None, sparse_decode=False)).process(
        dict(record))
    split = pieces.process(dict(record))
    assert [s["boundary_in"] for s in whole["shots"]] == [
        "video_start", "transition", "clean", "clean"]
    assert [s["start_frame"] for s in whole["shots"]][2:] == cuts
    found = (whole["shots"][1]["transition_in_start"], whole["shots"][1]["transition_in_end"])
    assert span[0] <= found[0] < 180 < found[1] <= span[1], found  # across the first join
    assert split["shots"] == whole["shots"]
    assert split["frame_signals"] == whole["frame_signals"]
    assert split["frames_decoded"] == whole["frames_decoded"] == 720


def test_sparse_pass_can_miss_a_faint_dissolve_so_it_is_off_by_default(tmp_path: Path) -> None:
    """Why ``sparse_decode`` is opt-in: a dissolve out of a moving shot stands barely above the
    shot's motion; on interpolated frames the gradual detector misses it."""
    path = tmp_path / "film.mp4"
    media.make_dissolve_then_cuts(path, [200, 184, 190, 170], 24)
    config = ShotSplitConfig()
    size = analysis_size(320, 180, config.analysis_width)
    assert full_pass(str(path), size, 24.0, config).spans == [Span(177, 186)]
    assert sparse_pass(str(path), size, 24.0, config).spans == []
    assert not config.sparse_decode


def test_a_piece_misled_by_the_timestamps_makes_the_join_measure_one_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "film.mp4"
    media.make_dissolve_then_cuts(path, [200, 184, 190, 170], 24)
    record = ProbeStage(ProbeConfig()).process({"path": str(path), "status": "pending"})
    stage = ShotSplitStage(ShotSplitConfig(chunk_s=7.5))
    pieces = [dataclasses.replace(c, grid=media.misleading_grid(c.grid))
              for c in stage.chunks(record)]
    results = [stage.process_chunk(record, piece) for piece in pieces]
    assert any(isinstance(r, GridMismatch) for r in results)
    with caplog.at_level(logging.INFO, logger="stages.shot_split.stage"):
        joined = stage.join(dict(record), results)
    assert "in one pass" in caplog.text
    whole = ShotSplitStage(ShotSplitConfig(chunk_s=None)).process(dict(record))
    assert joined["shots"] == whole["shots"] and joined["frame_signals"] == whole["frame_signals"]

