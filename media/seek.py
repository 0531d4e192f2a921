"""Seeking decode for work split below the video level: the frames from a keyframe on, numbered
exactly as :func:`media.stream.iter_timed_frames` numbers them counting from the start.

After a seek a frame's index comes from its timestamp: frame ``i`` is the packet with the
``i``-th smallest presentation timestamp. That equals the sequential count when every packet
decodes to one frame, timestamps are unique and the first packet in display order is decoded
first; the timestamps need not be evenly spaced (variable frame rate, Matroska's millisecond
times, joined files). :func:`frame_grid` reads the timestamps from the packets (no decoding past
the first frame) and returns None when those conditions visibly fail, so the caller decodes
from the start instead; :func:`iter_frames_from` checks every frame it decodes against the grid
and raises :class:`GridMismatch` if one is not where the grid put it.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

from media.stream import decoded_frames, iter_timed_frames, open_video, seconds_from


class GridMismatch(ValueError):
    """A decoded frame is not where the stream's timestamp grid put it."""


@dataclass(frozen=True)
class FrameGrid:
    """The display timestamps of a stream's frames (stream time base), ascending: frame ``i``
    has ``pts[i]``; ``first_time`` is frame 0's time in seconds as the decoder reports it."""

    pts: array  # array("q"): 8 bytes a frame, so a piece's copy stays small
    first_time: float
    keyframes: tuple[int, ...]  # display indices of the keyframes, ascending; the first is 0
    time_base: Fraction

    @property
    def num_frames(self) -> int:
        """Frames in the stream."""
        return len(self.pts)

    def index_of(self, pts: int | None) -> int:
        """The display index of the frame with timestamp ``pts``."""
        index = bisect.bisect_left(self.pts, pts) if pts is not None else len(self.pts)
        if index == len(self.pts) or self.pts[index] != pts:
            raise GridMismatch(f"no frame of the stream has timestamp {pts}")
        return index

    def seconds(self, start: int, end: int) -> list[float]:
        """Times of frames ``[start, end)`` from frame 0, as the sequential decode reports them."""
        return seconds_from(self.pts[start:end], self.pts[0], self.time_base)

    def keys_before(self, index: int) -> list[int]:
        """Keyframes at or before frame ``index``, nearest first."""
        return self.keyframes[:bisect.bisect_right(self.keyframes, index)][::-1]


def frame_grid(path: str) -> FrameGrid | None:
    """The timestamp grid of ``path``'s first video stream, or None when frame indices cannot be
    derived from timestamps (missing or repeated timestamps, a first frame in display order that
    is not a keyframe or that the decoder does not give first)."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base
        packets = sorted((p.pts, p.is_keyframe) for p in container.demux(stream)
                         if p.size > 0 and not p.is_discard and p.pts is not None)
    pts = array("q", (t for t, _ in packets))
    if len(packets) < 2 or not packets[0][1] or len(set(pts)) < len(pts):
        return None
    first = next(iter_timed_frames(path), None)
    if first is None or first[2].pts != pts[0]:
        return None  # the decoder drops or reorders the first frame: count from the start
    keys = tuple(i for i, (_, key) in enumerate(packets) if key)
    return FrameGrid(pts, float(first[2].time), keys, time_base)


def grid_for_pieces(record: dict) -> FrameGrid | None:
    """The grid the pieces of ``record``'s video seek by; None keeps the video in one piece
    decoded from the start (probed as variable-frame-rate, or frames not numbered by timestamp).
    Demuxes the whole file."""
    return None if record.get("fps_variable") else frame_grid(record["path"])


def iter_frames_from(path: str, grid: FrameGrid, start: int, skip_loop_filter: bool = False,
                     threads: int | None = None) -> Iterator[tuple[int, float, object]]:
    """(index, seconds from frame 0, PyAV frame) in display order from the keyframe at or before
    frame ``start`` to the end of the stream; the same triples as :func:`iter_timed_frames` gives
    for those frames. A seek that lands past ``start`` is retried from an earlier keyframe.
    ``skip_loop_filter`` and ``threads`` go to :func:`~media.stream.open_video`."""
    with open_video(path, skip_loop_filter, threads) as (container, stream):
        for attempt, key in enumerate(grid.keys_before(start)):
            if key or attempt:
                container.seek(grid.pts[key], stream=stream)
            frames = _checked(decoded_frames(container, stream), grid)
            first = next(frames, None)
            if first is not None and first[0] <= start:
                yield first
                yield from frames
                return
    raise GridMismatch(f"no seek reached frame {start}")


def _checked(frames: Iterator, grid: FrameGrid) -> Iterator[tuple[int, float, object]]:
    """Number decoded frames by timestamp; consecutive frames must have consecutive indices,
    and the last must be the grid's last (a damaged packet at the end leaves it out)."""
    expected: int | None = None
    for frame in frames:
        index = grid.index_of(frame.pts)
        if expected is not None and index != expected:
            raise GridMismatch(f"frame {index} decoded where frame {expected} was due")
        expected = index + 1
        yield index, float(frame.time) - grid.first_time, frame
    if expected is not None and expected != grid.num_frames:
        raise GridMismatch(f"the stream ended after frame {expected - 1} of {grid.num_frames}")


def iter_frames_at(path: str, indices: list[int], grid: FrameGrid | None
                   ) -> Iterator[tuple[int, object]]:
    """(index, PyAV frame) for each of the sorted ``indices``, from one sequential decode that
    starts at the keyframe before the first (from frame 0 without a ``grid``) and stops after
    the last. Only one decoded frame is held at a time, so memory does not depend on the span
    or the video's length. Raises ValueError if the stream ends before an index."""
    if not indices:
        return
    frames = (iter_frames_from(path, grid, indices[0]) if grid is not None
              else iter_timed_frames(path))
    wanted = iter(indices)
    target = next(wanted)
    for index, _, frame in frames:
        if index < target:
            continue
        if index > target:
            raise GridMismatch(f"frame {target} was skipped by the decoder")
        yield index, frame
        target = next(wanted, None)
        if target is None:
            return
    raise ValueError(f"the video ended before frame {target}")
