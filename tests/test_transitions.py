"""Boundary fusion and shot tiling, without video."""

from __future__ import annotations

from stages.transitions import Boundary, Span, label_boundaries, tile_shots


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
