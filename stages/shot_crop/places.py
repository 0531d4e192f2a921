"""Text places: a shot's reads grouped by place, the video's persistent text (text at one place
in several shots), and the places a shot's crop must avoid.

OCR misses faint text now and then: a semi-transparent corner watermark over bright footage can
go undetected on every sampled frame of a shot while its neighbours see it. Text seen at the
same place in ``min_static_shots`` shots, and in at least ``min_static_share`` of the shots, is
therefore taken as the video's and excluded from every shot, including those whose frames
missed it. The share keeps a film's title and credits (a few shots of hundreds) from cropping
every other shot. Where the text was recognised (``read_text``), it must also have the same
letters and digits there; unread boxes all share the empty text, so they match by place alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stages.shot_crop.config import ShotCropConfig
from stages.shot_crop.geometry import Rect, group_by_place, overlap_of_smaller, union


@dataclass(frozen=True)
class Place:
    """Text at one place: its bounding box in source pixels, every read there (in order) and the
    sampled frames of the shot it was seen on (none: the video's text, missed in this shot)."""

    box: Rect
    texts: tuple[str, ...]
    frames: frozenset[int] = frozenset()


def shot_places(reads: Sequence[tuple[int, Rect, str]], min_overlap: float) -> list[Place]:
    """The places of one shot's ``(frame index, source box, text)`` reads, first-seen order."""
    groups = group_by_place([(f, b) for f, b, _ in reads], min_overlap)
    return [Place(union([reads[i][1] for i in group]), tuple(reads[i][2] for i in group),
                  frozenset(reads[i][0] for i in group)) for group in groups]


def text_key(text: str) -> str:
    """What two reads of the same text share: its letters and digits, upper case."""
    return "".join(c for c in text.upper() if c.isalnum())


def persistent_places(shots: Sequence[Sequence[Place]], config: ShotCropConfig) -> list[Place]:
    """The video's persistent text: places read with the same :func:`text_key` at one place in
    at least ``min_static_shots`` of ``shots`` (each a shot's places) and in at least
    ``min_static_share`` of them, overlapping ones merged.

    Equal boxes are gathered first (a watermark's box repeats to the pixel on most shots), so a
    film's thousand sightings of one watermark cost a few box comparisons, not a million."""
    if not config.min_static_shots:
        return []
    shots_at: dict[str, dict[Rect, set[int]]] = {}
    first_read: dict[str, str] = {}
    for shot, places in enumerate(shots):
        for place in places:
            for text in place.texts:
                first_read.setdefault(text_key(text), text)
                shots_at.setdefault(text_key(text), {}).setdefault(place.box, set()).add(shot)
    def enough(count: int) -> bool:  # count / n, not share * n: 0.05 * 60 is above 3 in floats
        return (count >= config.min_static_shots
                and count / len(shots) >= config.min_static_share)

    found = []
    for key, boxes in shots_at.items():
        rects = list(boxes)
        for group in group_by_place([(0, b) for b in rects], config.same_place_overlap):
            if enough(len(set().union(*(boxes[rects[i]] for i in group)))):
                found.append(Place(union([rects[i] for i in group]), (first_read[key],)))
    merged = group_by_place([(0, p.box) for p in found], config.same_place_overlap)
    return [Place(union([found[i].box for i in group]),
                  tuple(t for i in group for t in found[i].texts)) for group in merged]


def excluded_places(own: Sequence[Place], persistent: Sequence[Place],
                    config: ShotCropConfig) -> list[Place]:
    """The places a shot's crop avoids: its static places (and transient ones while
    ``exclude_transient`` is on, or where the video's text is), each grown over the persistent
    places it lies on, then the persistent places the shot's frames missed."""
    def on(place: Place, text: Place) -> bool:
        return overlap_of_smaller(place.box, text.box) >= config.same_place_overlap

    kept = [p for p in own if len(p.frames) >= config.min_static_frames
            or config.exclude_transient or any(on(p, v) for v in persistent)]
    grown = [Place(union([p.box, *(v.box for v in persistent if on(p, v))]), p.texts, p.frames)
             for p in kept]
    return grown + [v for v in persistent if not any(on(p, v) for p in kept)]
