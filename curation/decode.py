"""Frame access for the analysis stages.

Random access (sampled frames): decord first, PyAV when decord cannot open the file or fails on a
read; both readers give RGB ``uint8`` frames at a requested size and key-frame indices, numbered
alike. Whole-video passes: :func:`iter_analysis_frames`, a PyAV pass that costs about one plain
decode.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from typing import Any, Protocol, TypeVar

import numpy as np

log = logging.getLogger(__name__)
T = TypeVar("T")


class FrameReader(Protocol):
    """What the stages need from a decoder."""

    backend: str
    num_frames: int

    def key_indices(self) -> list[int]:
        """Display-order indices of the key frames."""

    def frames_at(self, indices: list[int]) -> np.ndarray:
        """Frames at ``indices`` as (n, H, W, 3) RGB."""


def analysis_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    """(w, h) with width ``target_width`` (never upscaled) and the source aspect, both
    multiples of 4 (so 4:2:0 chroma planes downscale to whole rows)."""
    w = max(4, min(target_width, width) // 4 * 4)
    h = max(4, int(round(height * w / width / 4)) * 4)
    return w, h


def open_reader(path: str, size: tuple[int, int] | None = None) -> FrameReader:
    """Open ``path`` with decord; fall back to PyAV if decord refuses it (and, through
    :class:`DecordReader`, if decord fails on a read later)."""
    try:
        return DecordReader(path, size)
    except Exception as err:  # decord raises its own DECORDError or RuntimeError
        log.info("decord could not open %s (%s); using PyAV", path, err)
        return PyAVReader(path, size)


class DecordReader:
    """Random-access reader over decord's VideoReader that switches to PyAV when decord fails.

    decord fails on some valid streams only while reading: with three or more frame threads (its
    default on two or more cores) it can stop with EAGAIN from ``avcodec_send_packet`` on VP9
    with alt-ref superframes (two-pass libvpx-vp9). A read that raises is redone by a
    :class:`PyAVReader` (same frame numbering, size and format), which serves every later read;
    ``backend`` then says ``pyav``.
    """

    def __init__(self, path: str, size: tuple[int, int] | None) -> None:
        import decord

        self.backend = "decord"
        self._path, self._size = path, size
        self._pyav: PyAVReader | None = None
        kwargs = {"width": size[0], "height": size[1]} if size else {}
        self._vr = decord.VideoReader(path, num_threads=0, **kwargs)
        self.num_frames = len(self._vr)
        if self.num_frames == 0:
            raise ValueError("decord found no frames")

    def key_indices(self) -> list[int]:
        if self._pyav is None:
            try:
                return [int(i) for i in self._vr.get_key_indices()]
            except Exception as err:  # decord raises its own DECORDError types
                self._switch(err)
        return self._pyav.key_indices()

    def frames_at(self, indices: list[int]) -> np.ndarray:
        if self._pyav is None:
            try:
                return self._vr.get_batch(list(indices)).asnumpy()
            except Exception as err:  # decord raises its own DECORDError types
                self._switch(err)
        return self._pyav.frames_at(indices)

    def _switch(self, err: Exception) -> None:
        """Serve this and every later read with PyAV."""
        log.warning("decord failed reading %s (%s: %s); using PyAV for this file", self._path,
                    type(err).__name__, err)
        self._pyav = PyAVReader(self._path, self._size)
        self._vr = None
        self.backend = self._pyav.backend


class PyAVReader:
    """Reader over PyAV for containers and codecs decord cannot handle (seeks by decoding).

    Frame ``i`` is the ``i``-th decoded frame, as in decord and :func:`iter_timed_frames`. Frames
    are scaled and converted to RGB in one bilinear step, as decord's scaler does.
    """

    backend = "pyav"

    def __init__(self, path: str, size: tuple[int, int] | None) -> None:
        import av

        self._path = path
        self._size = size
        with av.open(path) as container:
            stream = container.streams.video[0]
            packets = [
                (p.pts, p.is_keyframe)
                for p in container.demux(stream)
                if p.pts is not None and p.size > 0
            ]
        packets.sort()  # decode order to display order
        self._keys = [i for i, (_, key) in enumerate(packets) if key]
        self._key_of = {packets[i][0]: i for i in self._keys}  # pts -> index of each key frame
        self.num_frames = len(packets)
        if self.num_frames == 0:
            raise ValueError(f"PyAV found no video frames in {path}")

    def key_indices(self) -> list[int]:
        return list(self._keys)

    def frames_at(self, indices: list[int]) -> np.ndarray:
        """Frames at ``indices``; a frame that does not decode (a damaged packet) is replaced by
        the nearest one that did, with a warning naming it."""
        wanted = set(indices)
        keys_only = wanted <= set(self._keys)
        picked: dict[int, np.ndarray] = {}
        last: tuple[int, Any] | None = None  # the last decoded frame with an index
        with open_video(self._path) as (container, stream):
            if keys_only:  # a hint: some decoders (VP9) still give every frame
                stream.codec_context.skip_frame = "NONKEY"
            for number, frame in enumerate(decoded_frames(container, stream)):
                index = self._key_of.get(frame.pts) if keys_only else number
                if index is None:
                    continue
                last = (index, frame)
                if index in wanted:
                    picked[index] = self._rgb(frame)
                    if len(picked) == len(wanted):
                        break
        missing = sorted(wanted - set(picked))
        if missing:
            if last is None:
                raise ValueError(f"no frame of {self._path} decoded")
            log.warning("%s: frames %s of %d did not decode; using the nearest decoded frames",
                        self._path, missing, self.num_frames)
            picked.setdefault(last[0], self._rgb(last[1]))
            for index in missing:
                picked[index] = picked[min(picked, key=lambda i: abs(i - index))]
        return np.stack([picked[i] for i in indices])

    def _rgb(self, frame: Any) -> np.ndarray:
        """A decoded frame as RGB at the reader's size."""
        width, height = self._size or (None, None)
        return frame.reformat(width, height, format="rgb24", interpolation="BILINEAR").to_ndarray()


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """Iterate ``items`` in a background thread, up to ``depth`` ahead of the consumer.

    Decoding (PyAV) and the detectors (OpenCV, NumPy) release the GIL, so a producer thread lets
    the decoder run while the caller analyses the previous frames. Exceptions are re-raised in
    the consumer; stopping early stops the producer.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
            buffer.put(done)
        except BaseException as err:  # handed to the consumer
            buffer.put(err)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(0.01)


def iter_analysis_frames(
    path: str, size: tuple[int, int], skip_loop_filter: bool = True, prefetch: int = 0
) -> Iterator[tuple[float, np.ndarray]]:
    """(presentation time in s, BGR frame at ``size``) for every frame, in one PyAV pass.

    The fast path for full-video analysis. The decoder skips the deblocking filter (invisible
    at analysis size) and the three YUV 4:2:0 planes are downscaled before colour conversion,
    so the pass costs about one plain decode (benchmarks/RESULTS.md). With ``prefetch`` > 0 the
    decoding runs in a background thread that many frames ahead of the caller.
    """
    frames = _analysis_frames(path, size, skip_loop_filter)
    return prefetched(frames, prefetch) if prefetch > 0 else frames


@contextmanager
def open_video(path: str, skip_loop_filter: bool = False,
               threads: int | None = None) -> Iterator[tuple[Any, Any]]:
    """(container, first video stream) opened for a decode with frame threading over
    ``threads`` threads (None: FFmpeg's choice, about one per core); with ``skip_loop_filter``
    the H.264/HEVC deblocking filter is skipped (analysis passes)."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads is not None:
            stream.thread_count = threads
        if skip_loop_filter:
            stream.codec_context.options = {"skip_loop_filter": "all"}
        yield container, stream


def decoded_frames(container: Any, stream: Any) -> Iterator[Any]:
    """The frames of ``stream`` in display order, as ``container.decode(stream)`` gives them,
    except that a packet the decoder rejects (damaged data) is skipped instead of ending the
    decode: its frame, and frames predicted from it, are missing (how many can depend on the
    decoder's threads). Warns once per stream; raises the decoder's error if no frame decoded."""
    import av

    error: av.FFmpegError | None = None
    decoded = False
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError as err:
            if error is None:
                log.warning("%s: skipping what the decoder rejects (at packet pts %s): %s",
                            container.name, packet.pts, err)
            error = err
            continue
        decoded = decoded or bool(frames)
        yield from frames
    if error is not None and not decoded:
        raise error


def iter_timed_frames(
    path: str, skip_loop_filter: bool = False
) -> Iterator[tuple[int, float, object]]:
    """(index, seconds from the first frame, PyAV frame) for every frame in display order.

    The one place that numbers frames and times them: the shot split and the encode both count
    through here, so a sample's source frame indices mean the same frames in both. Frames that
    do not decode (:func:`decoded_frames`) are not counted.
    """
    with open_video(path, skip_loop_filter) as (container, stream):
        first: float | None = None
        for index, frame in enumerate(decoded_frames(container, stream)):
            seconds = float(frame.time) if frame.time is not None else 0.0
            first = seconds if first is None else first
            yield index, seconds - first, frame


def _analysis_frames(
    path: str, size: tuple[int, int], skip_loop_filter: bool
) -> Iterator[tuple[float, np.ndarray]]:
    for _, seconds, frame in iter_timed_frames(path, skip_loop_filter):
        yield seconds, analysis_bgr(frame, size)


def analysis_bgr(frame: object, size: tuple[int, int]) -> np.ndarray:
    """A decoded PyAV frame as BGR ``uint8`` at ``size`` (the analysis frames' conversion).

    For 4:2:0 the three planes are read in place (no copy of the full-size frame), downscaled
    one by one (luma bilinear, chroma area) and converted at the small size.
    """
    import cv2

    width, height = size
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        luma, *chroma = (_plane(plane) for plane in frame.planes)
        small = np.concatenate([
            cv2.resize(luma, (width, height), interpolation=cv2.INTER_LINEAR),
            *(cv2.resize(c, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
              .reshape(height // 4, width) for c in chroma),
        ])
        return cv2.cvtColor(small, cv2.COLOR_YUV2BGR_I420)
    return frame.reformat(width, height, format="bgr24").to_ndarray()


def _plane(plane: object) -> np.ndarray:
    """One 8-bit plane of a decoded frame as a (height, width) view of the decoder's buffer."""
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, :plane.width]


def seconds_from(pts: Sequence[int], first_pts: int, time_base: Fraction) -> list[float]:
    """Seconds of each timestamp in ``pts`` after ``first_pts``, with the float operations PyAV
    uses for ``frame.time``, so they equal the times :func:`iter_timed_frames` reports."""
    num, den = time_base.numerator, time_base.denominator
    first = float(first_pts) * num / den
    return [float(t) * num / den - first for t in pts]


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


def _sparse_frames(
    path: str, selector: FrameSelector, numbering: FrameNumbering, skip_loop_filter: bool
) -> Iterator[tuple[int, object]]:
    import heapq
    from collections import deque

    import av

    with open_video(path, skip_loop_filter) as (container, stream):
        context = stream.codec_context
        numbering.time_base = stream.time_base
        index_of, keys = numbering.index_of, []
        waiting: deque = deque()  # packets in decode order until their number is known
        unnumbered: list[int] = []  # heap of pts
        seen: set[int] = set()
        last_dts = None
        expected = 0  # the decoder must give frames in display order, none missing at the start

        def number(below: int | None) -> None:
            # a pts below the latest dts is final: later packets have pts >= dts >= that dts
            while unnumbered and (below is None or unnumbered[0] < below):
                pts = heapq.heappop(unnumbered)
                index_of[pts] = len(numbering.pts)
                numbering.pts.append(pts)

        def decode_ready(flush: bool) -> Iterator[tuple[int, object]]:
            nonlocal expected
            batches = []
            try:
                while waiting and waiting[0].pts in index_of:
                    packet = waiting.popleft()
                    wanted = selector.wanted(index_of[packet.pts])
                    context.skip_frame = "DEFAULT" if wanted else "NONREF"
                    batches.append(context.decode(packet))
                if flush:
                    batches.append(context.decode(None))
            except av.FFmpegError as err:  # a damaged packet: the full pass skips it
                raise SparseDecodeError(f"the decoder rejects a packet: {err}") from err
            for batch in batches:
                for frame in batch:
                    index = index_of.get(frame.pts, -1)
                    if index < expected or (expected == 0 and index != 0):
                        raise SparseDecodeError(f"frame pts {frame.pts} out of order")
                    expected = index + 1
                    yield index, frame

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
            heapq.heappush(unnumbered, pts)
            waiting.append(packet)
            last_dts = dts
            number(dts)
            yield from decode_ready(flush=False)
        number(None)
        yield from decode_ready(flush=True)
        numbering.keys = sorted(index_of[pts] for pts in keys)
        if numbering.keys[:1] != [0]:
            raise SparseDecodeError("the first frame is not a key frame")
