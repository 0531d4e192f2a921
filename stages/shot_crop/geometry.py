"""Rectangle maths of the OCR crop: group text boxes by place, and find the largest crop of a
fixed aspect ratio that avoids them.

Rectangles are ``(x0, y0, x1, y1)`` with exclusive ends, so two rectangles that only touch do
not overlap. The crop search is exact: some largest crop can always be slid left and then up
until its left edge lies on the container's left edge or on an obstacle's right edge, and its
top edge on the container's top or an obstacle's bottom edge (sliding up leaves x alone). So
only those corners are tried, each in O(obstacles): O(n^3) for n obstacles, instant for the
handful of text regions a frame holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Rect = tuple[int, int, int, int]


def area(rect: Rect) -> int:
    """Pixels inside ``rect`` (0 when empty)."""
    return max(0, rect[2] - rect[0]) * max(0, rect[3] - rect[1])


def intersection(a: Rect, b: Rect) -> Rect:
    """The common part of ``a`` and ``b``; empty (zero area) when they do not overlap."""
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def overlap_of_smaller(a: Rect, b: Rect) -> float:
    """Share of the smaller rectangle covered by the other (1.0 when one holds the other)."""
    smaller = min(area(a), area(b))
    return area(intersection(a, b)) / smaller if smaller else 0.0


def union(rects: Sequence[Rect]) -> Rect:
    """The bounding rectangle of ``rects``."""
    return (min(r[0] for r in rects), min(r[1] for r in rects),
            max(r[2] for r in rects), max(r[3] for r in rects))


def expand(rect: Rect, margin: int, bounds: Rect) -> Rect:
    """``rect`` grown by ``margin`` on every side, clipped to ``bounds``."""
    return (max(bounds[0], rect[0] - margin), max(bounds[1], rect[1] - margin),
            min(bounds[2], rect[2] + margin), min(bounds[3], rect[3] + margin))


def group_by_place(boxes: Sequence[tuple[int, Rect]], min_overlap: float) -> list[list[int]]:
    """Indices of ``(frame, box)`` items grouped into places, first-seen order.

    Two boxes share a place when one covers at least ``min_overlap`` of the smaller, on the same
    frame or on different ones; places are the connected groups of that relation. A subtitle
    band whose text changes length stays one place, as does a watermark seen on every frame.
    """
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (_, a) in enumerate(boxes):
        for j in range(i):
            if overlap_of_smaller(a, boxes[j][1]) >= min_overlap:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def largest_crop(
    bounds: Rect, obstacles: Sequence[Rect], aspect: tuple[int, int]
) -> Rect | None:
    """The largest rectangle of ``aspect`` (width, height) inside ``bounds`` that overlaps no
    obstacle, with even width and height (a 4:2:0 video crops to it exactly), moved as close to
    the centre of ``bounds`` as the obstacles allow; None when nothing of 2x2 pixels fits.

    Integer maths throughout: the height is the (even) width times ``aspect``, rounded down to
    even, so the crop's aspect is off by less than two pixels of height."""
    xs = sorted({bounds[0], *(o[2] for o in obstacles if bounds[0] < o[2] < bounds[2])})
    ys = sorted({bounds[1], *(o[3] for o in obstacles if bounds[1] < o[3] < bounds[3])})
    best: Rect | None = None
    for y in ys:
        for x in xs:
            width = _max_width(x, y, bounds, obstacles, aspect) // 2 * 2
            height = width * aspect[1] // aspect[0] // 2 * 2
            if height >= 2 and width >= 2 and (best is None or width * height > area(best)):
                best = (x, y, x + width, y + height)
    return None if best is None else _centre(best, bounds, obstacles)


def even_crop(
    bounds: Rect, obstacles: Sequence[Rect], aspect: tuple[int, int]
) -> Rect | None:
    """:func:`largest_crop` on the even grid: ``bounds`` shrunk and ``obstacles`` grown to even
    coordinates, so the crop's corners are even as well and a 4:2:0 frame's chroma crops to it
    exactly. With every edge even, a crop at an odd x (or y) moved one pixel back stays clear."""
    inner = (bounds[0] + bounds[0] % 2, bounds[1] + bounds[1] % 2,
             bounds[2] - bounds[2] % 2, bounds[3] - bounds[3] % 2)
    grown = [(o[0] - o[0] % 2, o[1] - o[1] % 2, o[2] + o[2] % 2, o[3] + o[3] % 2)
             for o in obstacles]
    crop = largest_crop(inner, grown, aspect)
    if crop is None:
        return None
    dx, dy = crop[0] % 2, crop[1] % 2
    return crop[0] - dx, crop[1] - dy, crop[2] - dx, crop[3] - dy


def active_picture(record: Mapping[str, Any]) -> Rect:
    """The picture inside the black borders in source pixels; the whole frame when
    ``border_w`` is 0 (no border box was found)."""
    if not record.get("border_w"):
        return 0, 0, record["width"], record["height"]
    x, y = record["border_x"], record["border_y"]
    return x, y, x + record["border_w"], y + record["border_h"]


def _max_width(
    x: int, y: int, bounds: Rect, obstacles: Sequence[Rect], aspect: tuple[int, int]
) -> int:
    """Largest width w whose rectangle (height ``w * ah // aw``) with top-left corner (x, y)
    fits: an obstacle reaching right of x and below y is avoided when the rectangle ends left
    of it or above it."""
    aw, ah = aspect

    def widest(rows: int) -> int:  # largest w with w * ah // aw <= rows
        return (aw * (rows + 1) - 1) // ah

    width = min(bounds[2] - x, widest(bounds[3] - y))
    for x0, y0, x1, y1 in obstacles:
        if x1 > x and y1 > y:
            width = min(width, max(x0 - x, widest(y0 - y)))
    return max(0, width)


def _centre(rect: Rect, bounds: Rect, obstacles: Sequence[Rect]) -> Rect:
    """``rect`` slid horizontally, then vertically, towards the centre of ``bounds`` within the
    free span around it; each slide keeps it clear of every obstacle."""
    x0, y0, x1, y1 = rect
    left, right = _free_span(x0, x1, y0, y1, bounds[0], bounds[2], obstacles, axis=0)
    x0 = _clamp((bounds[0] + bounds[2] - (x1 - x0)) // 2, left, right - (x1 - x0))
    x1 = x0 + rect[2] - rect[0]
    top, bottom = _free_span(y0, y1, x0, x1, bounds[1], bounds[3], obstacles, axis=1)
    y0 = _clamp((bounds[1] + bounds[3] - (y1 - y0)) // 2, top, bottom - (y1 - y0))
    return x0, y0, x1, y0 + rect[3] - rect[1]


def _free_span(
    lo: int, hi: int, across_lo: int, across_hi: int, start: int, end: int,
    obstacles: Sequence[Rect], axis: int,
) -> tuple[int, int]:
    """How far [lo, hi) on ``axis`` (0 = x, 1 = y) can extend to either side inside
    [start, end) before hitting an obstacle that overlaps [across_lo, across_hi) on the other
    axis."""
    for o in obstacles:
        o_lo, o_hi = o[axis], o[axis + 2]
        a_lo, a_hi = o[1 - axis], o[3 - axis]
        if a_lo < across_hi and a_hi > across_lo:
            if o_hi <= lo:
                start = max(start, o_hi)
            elif o_lo >= hi:
                end = min(end, o_lo)
    return start, end


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))
