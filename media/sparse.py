"""Sparse decoding of one-pass videos: reference frames and the frames a caller selects, then
only the windows where something may lie, numbered exactly as a full pass numbers them."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from media.stream import analysis_bgr, open_video, prefetched, seconds_from


class SparseDecodeError(RuntimeError):
    """The stream breaks an assumption of the sparse pass (one frame per packet, numbered by
    presentation time); the caller decodes every frame instead."""


class FrameNumbering:
    """Display-order frame numbers from packet presentation times, filled by
    :func:`iter_sparse_frames`: frame ``i`` is the packet with the ``i``-th smallest pts, which is
    what :func:`iter_timed_frames` counts when every packet decodes to one frame."""

    def __init__(self) -> None:
        self.pts: list[int] = []  # pts of frame i
        self.index_of: dict[int, int] = {}
        self.keys: list[int] = []  # frame numbers of key frames, ascending
        self.time_base = None

    def seconds(self) -> list[float]:
        """Each frame's time from the first frame, computed as :func:`iter_timed_frames` does."""
        return seconds_from(self.pts, self.pts[0], self.time_base)

    def key_before(self, index: int) -> int:
        """The last key frame at or before frame ``index`` (the first key frame if none is)."""
        import bisect

        return self.keys[max(0, bisect.bisect_right(self.keys, index) - 1)]


class FrameSelector(Protocol):
    """Steers :func:`iter_sparse_frames`. With prefetch, :meth:`wanted` runs in the decoding
    thread and :meth:`decoded` in the conversion thread, each in frame order."""

    def wanted(self, index: int) -> bool:
        """Decode frame ``index`` even if it is not a reference frame?"""

    def decoded(self, index: int, frame: np.ndarray) -> object:
        """Look at decoded frame ``index`` (BGR); the result travels with the frame."""


def iter_sparse_frames(
    path: str, size: tuple[int, int], selector: FrameSelector, numbering: FrameNumbering,
    skip_loop_filter: bool = True, prefetch: int = 0,
) -> Iterator[tuple[int, np.ndarray, object]]:
    """(frame number, BGR frame at ``size``, ``selector.decoded(...)``) for the reference frames
    and the frames ``selector.wanted``, in display order.

    The decoder skips every non-reference frame (in H.264 and HEVC most B-frames, about half of
    the frames) unless the selector wants it; the packets are numbered in display order by
    presentation time before they reach the decoder, so each can be decided on, also from the
    frames decoded so far. ``numbering`` holds every frame's pts and the key frames once the
    iterator is exhausted. Raises :class:`SparseDecodeError` where numbering by pts would not
    match a full decode. With ``prefetch`` > 0, decoding and the conversion to BGR run in two
    background threads (on the 2-core dev machine about 10% faster than one thread for both,
    benchmarks/RESULTS.md), ``prefetch`` frames ahead of the caller.
    """
    frames = _sparse_frames(path, selector, numbering, skip_loop_filter)
    if prefetch <= 0:
        return _converted(frames, size, selector)
    return prefetched(_converted(prefetched(frames, _RAW_AHEAD), size, selector), prefetch)


_RAW_AHEAD = 8  # decoded full-size frames waiting for their conversion


def _converted(
    frames: Iterator[tuple[int, object]], size: tuple[int, int], selector: FrameSelector
) -> Iterator[tuple[int, np.ndarray, object]]:
    """The sparse pass's frames at analysis size, each shown to the selector."""
    for index, frame in frames:
        bgr = analysis_bgr(frame, size)
        yield index, bgr, selector.decoded(index, bgr)


def iter_window_frames(
    path: str, size: tuple[int, int], windows: list[tuple[int, int]], numbering: FrameNumbering,
    skip_loop_filter: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, BGR frame) for every frame in the inclusive ``windows``, in order.

    After a sparse pass: seeks to the key frame before each window (or decodes on from the
    previous window when no key frame lies between them), skips non-reference frames up to the
    window, and decodes the window's frames one by one.
    """
    import av

    spans = sorted(windows)
    if not spans:
        return
    with open_video(path, skip_loop_filter) as (container, stream):
        groups: list[list[tuple[int, int]]] = []
        for start, end in spans:
            if groups and numbering.key_before(start) <= groups[-1][-1][1]:
                groups[-1].append((start, end))  # decoding on is no dearer than seeking
            else:
                groups.append([(start, end)])
        for group in groups:
            wanted = {i for start, end in group for i in range(start, end + 1)}
            try:
                container.seek(numbering.pts[numbering.key_before(group[0][0])], stream=stream,
                               backward=True)
                for index, frame in _decode_selected(container, stream, numbering, wanted):
                    yield index, analysis_bgr(frame, size)
            except av.FFmpegError as err:  # the first pass read this file: blame the seek
                raise SparseDecodeError(f"decoding after a seek failed: {err}") from err


def _decode_selected(
    container: object, stream: object, numbering: FrameNumbering, wanted: set[int]
) -> Iterator[tuple[int, object]]:
    """Decode on from the container's position until every ``wanted`` frame came out."""
    context = stream.codec_context
    left = set(wanted)
    for packet in container.demux(stream):
        if packet.size == 0:
            frames = context.decode(None)
        else:
            index = numbering.index_of.get(packet.pts)
            if index is None:
                raise SparseDecodeError(f"packet pts {packet.pts} was not seen in the first pass")
            context.skip_frame = "DEFAULT" if index in left else "NONREF"
            frames = context.decode(packet)
        for frame in frames:
            index = numbering.index_of.get(frame.pts)
            if index in left:
                left.discard(index)
                yield index, frame
        if not left:
            return
    if left:
        raise SparseDecodeError(f"{len(left)} frames did not decode after a seek")


class _SparsePass:
    """One sparse pass's packets: each waits, in decode order, until its presentation number is
    final, then decodes (whole when the selector wants the frame, reference frames only else)."""

    def __init__(self, context: Any, selector: FrameSelector, numbering: FrameNumbering) -> None:
        self.context = context
        self.selector = selector
        self.numbering = numbering
        self.waiting: deque = deque()  # packets in decode order until their number is known
        self.unnumbered: list[int] = []  # heap of pts
        self.expected = 0  # frames must come in display order, none missing at the start

    def add(self, packet: Any) -> None:
        """Queue ``packet``; its number is known once a later dts passes its pts."""
        heapq.heappush(self.unnumbered, packet.pts)
        self.waiting.append(packet)

    def number(self, below: int | None) -> None:
        """Number the queued pts below ``below`` (all of them when None)."""
        # a pts below the latest dts is final: later packets have pts >= dts >= that dts
        while self.unnumbered and (below is None or self.unnumbered[0] < below):
            pts = heapq.heappop(self.unnumbered)
            self.numbering.index_of[pts] = len(self.numbering.pts)
            self.numbering.pts.append(pts)

    def decode_ready(self, flush: bool) -> Iterator[tuple[int, object]]:
        """Decode the numbered packets at the head of the queue (and the decoder's last frames
        when ``flush``); yield (frame number, frame)."""
        import av

        index_of = self.numbering.index_of
        batches = []
        try:
            while self.waiting and self.waiting[0].pts in index_of:
                packet = self.waiting.popleft()
                wanted = self.selector.wanted(index_of[packet.pts])
                self.context.skip_frame = "DEFAULT" if wanted else "NONREF"
                batches.append(self.context.decode(packet))
            if flush:
                batches.append(self.context.decode(None))
        except av.FFmpegError as err:  # a damaged packet: the full pass skips it
            raise SparseDecodeError(f"the decoder rejects a packet: {err}") from err
        for batch in batches:
            for frame in batch:
                index = index_of.get(frame.pts, -1)
                if index < self.expected or (self.expected == 0 and index != 0):
                    raise SparseDecodeError(f"frame pts {frame.pts} out of order")
                self.expected = index + 1
                yield index, frame


def _sparse_frames(
    path: str, selector: FrameSelector, numbering: FrameNumbering, skip_loop_filter: bool
) -> Iterator[tuple[int, object]]:
    with open_video(path, skip_loop_filter) as (container, stream):
        numbering.time_base = stream.time_base
        sparse = _SparsePass(stream.codec_context, selector, numbering)
        keys: list[int] = []
        seen: set[int] = set()
        last_dts = None
        for packet in container.demux(stream):
            if packet.size == 0 and packet.pts is None:
                continue  # the demuxer's end-of-stream packet
            pts, dts = packet.pts, packet.dts
            if (pts is None or dts is None or packet.size == 0 or packet.is_discard
                    or pts < dts or (last_dts is not None and dts < last_dts) or pts in seen):
                raise SparseDecodeError(
                    f"packet pts {pts} dts {dts} size {packet.size} cannot be numbered")
            seen.add(pts)
            if packet.is_keyframe:
                keys.append(pts)
            sparse.add(packet)
            last_dts = dts
            sparse.number(dts)
            yield from sparse.decode_ready(flush=False)
        sparse.number(None)
        yield from sparse.decode_ready(flush=True)
        numbering.keys = sorted(numbering.index_of[pts] for pts in keys)
        if numbering.keys[:1] != [0]:
            raise SparseDecodeError("the first frame is not a key frame")
