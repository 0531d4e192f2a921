"""Boundary fusion and shot tiling without video; the cut detector against PySceneDetect."""

from __future__ import annotations

from pathlib import Path

from media.stream import iter_analysis_frames
from stages.shot_split.transitions import (
    Boundary,
    ContentScore,
    Span,
    content_cuts,
    label_boundaries,
    tile_shots,
)


def test_cut_near_a_span_joins_and_widens_it() -> None:
    boundaries = label_boundaries([96], [Span(73, 89)], 200, 12)
    assert boundaries == [Boundary(84, "transition", Span(73, 96))]


def test_close_spans_merge_into_one_transition() -> None:
    (boundary,) = label_boundaries([], [Span(60, 70), Span(74, 84)], 200, 12)
    assert boundary.span == Span(60, 84) and boundary.frame == 72


def test_cuts_outside_the_window_stay_clean() -> None:
    kept = label_boundaries([50, 120], [Span(140, 150)], 300, 12)
    assert [(b.frame, b.kind) for b in kept] == [(50, "clean"), (120, "clean"), (145, "transition")]


def test_boundaries_at_the_video_edges_are_dropped() -> None:
    assert label_boundaries([0, 100], [], 100, 5) == []


def test_tiles_cover_the_video() -> None:
    shots = tile_shots([Boundary(10, "clean"), Boundary(20, "transition", Span(15, 25))], 40)
    assert [(s["start_frame"], s["end_frame"]) for s in shots] == [(0, 10), (10, 20), (20, 40)]
    assert shots[1]["transition_out_start"] == 15 and shots[2]["transition_in_end"] == 25
    assert shots[0]["boundary_in"] == "video_start" and shots[2]["boundary_out"] == "video_end"


def test_cut_detector_matches_scenedetect_on_real_footage(bikes: Path) -> None:
    from scenedetect import ContentDetector, FrameTimecode

    reference = ContentDetector(threshold=27.0, min_scene_len=12)
    scorer = ContentScore()
    expected: list[int] = []
    scores: list[float] = []
    for index, (_, frame) in enumerate(iter_analysis_frames(str(bikes), (256, 108))):
        expected += [tc.frame_num for tc in reference.process_frame(FrameTimecode(index, 25.0),
                                                                     frame)]
        scores.append(scorer.push(frame))
        assert scores[-1] == reference._frame_score  # bit for bit
    assert content_cuts(scores, 27.0, 12, 25.0) == expected and len(expected) == 5


def test_cut_filter_merges_cuts_closer_than_min_scene_len_like_scenedetect() -> None:
    from scenedetect import FrameTimecode
    from scenedetect.detector import FlashFilter

    scores = [0, 40, 0, 0, 0, 0, 0, 0, 40, 0, 40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 40, 0, 0, 0, 0,
              0, 0, 0, 0, 0, 0]
    reference = FlashFilter(FlashFilter.Mode.MERGE, 5)
    expected = [tc.frame_num for index, score in enumerate(scores)
                for tc in reference.filter(FrameTimecode(index, 24.0), score >= 27.0)]
    assert content_cuts(scores, 27.0, 5, 24.0) == expected and expected


def test_wipe_and_slide_around_a_short_moving_shot_are_two_transitions(
        bikes: Path, tmp_path: Path) -> None:
    """A slide up, 12 frames of a moving street shot, then a wipe down, all on moving footage:
    one run of change, which the seam test (stages/shot_split/sweeps.py) splits into the two
    transitions; the pixel tests of a wipe need still shots and saw neither."""
    import av

    from stages.shot_split.config import ShotSplitConfig
    from stages.shot_split.stage import detect_shots
    from tests.media import make_moving_sweeps

    path = tmp_path / "sweeps.mp4"
    truth = make_moving_sweeps(path, bikes, [(80, 130), (140, 180), (190, 240)],
                               [("slideup", 16), ("wipedown", 12)])
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        width, height, fps = stream.width, stream.height, float(stream.average_rate)
    shots, _, _ = detect_shots(str(path), width, height, fps, ShotSplitConfig())
    found = [(shot["transition_in_start"], shot["transition_in_end"]) for shot in shots[1:]]
    assert [shot["boundary_in"] for shot in shots[1:]] == ["transition", "transition"], shots
    for (start, end), (true_start, true_end) in zip(found, truth, strict=True):
        assert start < true_end and true_start < end, (found, truth)  # the spans overlap
