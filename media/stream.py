"""Sequential PyAV passes over a whole video: frames numbered in presentation order, timed from
their timestamps, scaled to the analysis size, optionally decoded ahead in a background thread."""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from typing import Any, TypeVar

import numpy as np

from media.blockiness import bands_ratio, grid_bands, luma_plane

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    path: str, size: tuple[int, int], skip_loop_filter: bool = True, prefetch: int = 0,
    band_stride: int = 1,
) -> Iterator[tuple[float, np.ndarray]]:
    """(presentation time in s, BGR frame at ``size``) for every frame, in one PyAV pass.

    The fast path for full-video analysis. The decoder skips the deblocking filter (invisible
    at analysis size) and the three YUV 4:2:0 planes are downscaled before colour conversion,
    so the pass costs about one plain decode (benchmarks/RESULTS.md). With ``prefetch`` > 0 the
    decoding runs in a background thread that many frames ahead of the caller. Only every
    ``band_stride``-th frame carries its blockiness rows (copying them costs about a tenth of a
    decode per frame; the signals measure every ``stride``-th frame only).
    """
    frames = _analysis_frames(path, size, skip_loop_filter, band_stride)
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
    path: str, size: tuple[int, int], skip_loop_filter: bool, band_stride: int
) -> Iterator[tuple[float, np.ndarray]]:
    for index, seconds, frame in iter_timed_frames(path, skip_loop_filter):
        yield seconds, analysis_bgr(frame, size, bands=index % band_stride == 0)


class AnalysisFrame(np.ndarray):
    """A BGR analysis frame that also carries rows of the full-resolution luma it was scaled
    from (:func:`~media.blockiness.grid_bands`; None where the format has no luma plane), for
    :func:`frame_blockiness`: at analysis size the codec's block grid is gone. To every other
    reader it is the plain BGR array."""

    grid_bands: np.ndarray | None = None


def analysis_bgr(frame: object, size: tuple[int, int], bands: bool = True) -> AnalysisFrame:
    """A decoded PyAV frame as BGR ``uint8`` at ``size`` (the analysis frames' conversion),
    carrying the rows its blockiness is measured on when ``bands`` is set.

    For 4:2:0 the three planes are read in place (no copy of the full-size frame), downscaled
    one by one (luma bilinear, chroma area) and converted at the small size.
    """
    import cv2

    width, height = size
    full_luma = luma_plane(frame) if bands else None
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        luma, *chroma = (_plane(plane) for plane in frame.planes)
        small = np.concatenate([
            cv2.resize(luma, (width, height), interpolation=cv2.INTER_LINEAR),
            *(cv2.resize(c, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
              .reshape(height // 4, width) for c in chroma),
        ])
        bgr = cv2.cvtColor(small, cv2.COLOR_YUV2BGR_I420)
    else:
        bgr = frame.reformat(width, height, format="bgr24").to_ndarray()
    analysed = bgr.view(AnalysisFrame)
    if full_luma is not None:
        analysed.grid_bands = grid_bands(*full_luma)
    return analysed


def frame_blockiness(bgr: np.ndarray) -> float:
    """The block-edge ratio (:mod:`media.blockiness`) of the full-resolution picture an
    :func:`analysis_bgr` frame was scaled from; NaN for any other array, and where the picture
    had no luma plane or was under 9x9."""
    bands = bgr.grid_bands if isinstance(bgr, AnalysisFrame) else None
    return math.nan if bands is None else bands_ratio(bands)


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

