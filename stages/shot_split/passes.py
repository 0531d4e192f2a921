"""The shot split's decode passes: each turns frames into per-frame cut scores, frame times,
gradual-transition spans and frame signals (a :class:`PassResult`); the stage decides the cuts
and the shots from those (:mod:`stages.shot_split.stage`).

- :func:`full_pass`: every frame of the video, in one sequential decode.
- :func:`sparse_pass`: the same results from fewer decoded frames (reference frames, the frames
  the signals need, busy stretches, then only the gaps that may hide a cut).
- :func:`piece_pass`: every frame of a :class:`ShotPiece` (frames ``[start, end)`` of a longer
  video), decoded from a keyframe before it, so the pieces of one film run on many workers.
  Cut scores need only the previous frame, and the gradual detector and the signals remember a
  few seconds at most, so a piece that first decodes ``warm_start .. start`` measures its frames
  as the full pass does (checked on the Big Buck Bunny film, ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from media.seek import FrameGrid, iter_frames_from
from media.sparse import FrameNumbering, SparseDecodeError, iter_sparse_frames, iter_window_frames
from media.stream import analysis_bgr, iter_analysis_frames, prefetched
from stages.frame_signals import FrameSignalRecorder
from stages.shot_split.flashes import FlashFinder
from stages.shot_split.learned import LearnedFeed
from stages.shot_split.motion import correlation, same_picture
from stages.shot_split.spikes import FLOOR as SPIKE_FLOOR
from stages.shot_split.transitions import (
    ContentScore,
    GradualTransitionDetector,
    Span,
    SparseGradualDetector,
    hsv_distance,
    replay_gradual,
)

if TYPE_CHECKING:
    from stages.shot_split.config import ShotSplitConfig

log = logging.getLogger(__name__)

# A gap between two decoded frames is decoded in full when their cut score reaches this share of
# the cut threshold: on the 596 s Big Buck Bunny film no frame above the threshold lies in a gap
# below it, down to a screen of the threshold itself (benchmarks/RESULTS.md).
CUT_SCREEN = 2 / 3
# Frames decoded before a transition's run and after it when it is measured again.
REPLAY_MARGIN = 4
# How long the sparse pass decodes every frame after it saw a busy picture (see _CutScreen).
BUSY_FRAMES = 6


@dataclass
class PassResult:
    """What a pass measured on frames ``[first, first + len(times))``."""

    first: int
    scores: np.ndarray  # float64 ContentDetector score of each frame against the one before
    times: list[float]  # seconds from frame 0
    spans: list[Span]  # gradual transitions starting in these frames
    signals: bytes  # packed FrameSignalRecorder rows of these frames
    # the learned model's (cut, span) probabilities of these frames, NaN where not predicted;
    # None for the content detector
    learned: tuple[np.ndarray, np.ndarray] | None = None
    model_frames: int = 0  # frames the learned model ran over, context included
    flashes: list[Span] = dataclasses.field(default_factory=list)  # jumps that came back
    moved: list[int] = dataclasses.field(default_factory=list)  # cut scores that were motion
    still: list[int] = dataclasses.field(default_factory=list)  # the same picture re-encoded


@dataclass(frozen=True)
class ShotPiece:
    """Frames ``[start, end)`` of a video numbered by the timestamps of ``grid``. It decodes
    from ``warm_start`` (so the detectors' memory is filled when frame ``start`` comes) to
    ``decode_end`` (so a transition that begins before ``end`` is seen to its end)."""

    start: int
    end: int
    warm_start: int
    decode_end: int
    grid: FrameGrid


def whole_pass(path: str, size: tuple[int, int], fps: float,
               config: ShotSplitConfig) -> PassResult:
    """Every frame of the video in one pass: the sparse pass when ``sparse_decode`` is on and
    the stream allows it, else every frame decoded."""
    if config.sparse_decode and config.signals.stride > 1 and config.detector == "content":
        try:
            return sparse_pass(path, size, fps, config)
        except SparseDecodeError as err:
            log.info("shot split decodes every frame of %s: %s", path, err)
    return full_pass(path, size, fps, config)


def full_pass(path: str, size: tuple[int, int], fps: float, config: ShotSplitConfig) -> PassResult:
    """Every frame of the video at ``path``, decoded once from the start."""
    frames = ((index, seconds, bgr) for index, (seconds, bgr) in enumerate(
        iter_analysis_frames(path, size, config.fast_decode, config.prefetch_frames,
                             config.signals.stride)))
    return _analyse(frames, 0, None, fps, config)


def piece_pass(path: str, size: tuple[int, int], fps: float, piece: ShotPiece,
               config: ShotSplitConfig, threads: int | None = None) -> PassResult:
    """Every frame of ``piece``, decoded from the keyframe at or before its ``warm_start`` with
    ``threads`` decoder threads (None: FFmpeg's choice)."""
    decoded = iter_frames_from(path, piece.grid, piece.warm_start, config.fast_decode, threads)
    stride = config.signals.stride  # the frames whose blockiness the signals measure
    frames = ((index, seconds, analysis_bgr(frame, size, bands=index % stride == 0))
              for index, seconds, frame in
              itertools.takewhile(lambda item: item[0] < piece.decode_end, decoded))
    if config.prefetch_frames > 0 and threads != 1:  # on one CPU a second thread only costs
        frames = prefetched(frames, config.prefetch_frames)
    result = _analyse(frames, piece.start, piece.end, fps, config)
    if len(result.times) != piece.end - piece.start:
        raise ValueError(f"frames {piece.start}-{piece.end}: the stream gave "
                         f"{len(result.times)} of them")
    result.times = piece.grid.seconds(piece.start, piece.end)  # the same floats in every piece
    return result


def _analyse(frames: Iterable[tuple[int, float, np.ndarray]], start: int, end: int | None,
             fps: float, config: ShotSplitConfig) -> PassResult:
    """Feed consecutive frames (index, seconds, BGR) to every detector; keep what they measured
    on frames ``[start, end)`` (``end`` None: to the last frame). Frames outside only warm the
    detectors up or let a transition finish."""
    import cv2

    content = ContentScore()
    gradual = GradualTransitionDetector(config.gradual, fps)
    signals = FrameSignalRecorder(**config.signals.model_dump())
    learned = LearnedFeed.for_config(config, fps, start, end)
    flashes = FlashFinder(SPIKE_FLOOR * config.cut_threshold, config.cut_threshold / 2,
                          max(1, round(config.min_shot_s * fps)))
    scores: list[float] = []
    times: list[float] = []
    moved: list[int] = []
    still: list[int] = []
    last, previous_luma = -1, None
    for index, seconds, bgr in frames:
        score = content.push(bgr)
        if index >= start and (end is None or index < end):
            scores.append(score)
            times.append(seconds)
        luma = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        if score >= SPIKE_FLOOR * config.cut_threshold and previous_luma is not None:
            shift, response = correlation(previous_luma, luma)
            if same_picture(shift, response):
                still.append(index)
            elif response >= config.moved_correlation:
                moved.append(index)
        previous_luma = luma
        signals.push(index, bgr, luma)
        if config.gradual.enabled:
            gradual.push(index, small_luma(luma, config))
        flashes.push(index, content.hsv, score)
        if learned is not None:
            learned.push(index, bgr, score, gradual.runs)
        last = index
    if not times:
        raise ValueError("no frame could be decoded")
    owned_end = start + len(times)
    spans = [s for s in gradual.finish(last + 1) if start <= s.start < owned_end]
    result = PassResult(start, np.asarray(scores), times, spans, signals.pack(start, owned_end))
    result.flashes = [f for f in flashes.flashes if start <= f.start < owned_end]
    result.moved = [i for i in moved if start <= i < owned_end]
    result.still = [i for i in still if start <= i < owned_end]
    if learned is not None:
        result.learned = learned.finish(gradual.runs)
        result.model_frames = learned.scorer.frames_run
    return result


def sparse_pass(path: str, size: tuple[int, int], fps: float,
                config: ShotSplitConfig) -> PassResult:
    """What :func:`full_pass` measures, from fewer decoded frames.

    The first pass decodes the reference frames, every ``signals.stride``-th frame (the signals
    need those) and every frame while the picture is busy (:class:`_CutScreen`); the decoder
    skips the other non-reference frames. A cut can hide in a gap between two decoded frames:
    where their score reaches :data:`CUT_SCREEN` of the threshold, the gap is decoded afterwards
    (:func:`media.sparse.iter_window_frames`) and scored frame by frame, so every frame at or
    above the threshold has its exact score; the frames not measured score 0. The gradual
    detector runs over the gaps filled in by interpolation, and each transition it finds is
    measured again on the real frames around it
    (:func:`~stages.shot_split.transitions.replay_gradual`).
    Raises :class:`SparseDecodeError` where frames cannot be numbered by presentation time.
    """
    import cv2

    numbering = FrameNumbering()
    screen = _CutScreen(config.signals.stride, CUT_SCREEN * config.cut_threshold)
    signals = FrameSignalRecorder(**config.signals.model_dump())
    gradual = SparseGradualDetector(config.gradual, fps, REPLAY_MARGIN)
    scores: dict[int, float] = {}  # exact cut scores, for frames whose predecessor was decoded
    gaps: list[tuple[int, int]] = []  # (decoded, next decoded) that may hide a cut
    prints: dict[int, int] = {}  # what each decoded frame looked like, to check the second pass
    previous = -1
    for index, frame, score in iter_sparse_frames(
            path, size, screen, numbering, config.fast_decode, config.prefetch_frames):
        if index == previous + 1:
            scores[index] = score
        elif score >= screen.threshold:
            gaps.append((previous, index))
        previous = index
        prints[index] = hash(cv2.sumElems(frame))
        luma = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        signals.push(index, frame, luma)
        if config.gradual.enabled:
            gradual.push(index, small_luma(luma, config))
    count = len(numbering.pts)
    transitions = gradual.finish(count) if config.gradual.enabled else []
    replays = [(origin[0] if origin else 0, min(count - 1, span.end + 1 + REPLAY_MARGIN))
               for span, origin in transitions]
    smalls = _measure_windows(path, size, gaps + replays, numbering, config, scores, prints,
                              {i for start, end in replays for i in range(start, end + 1)})
    spans: list[Span] = []
    for (span, origin), (_, end) in zip(transitions, replays, strict=True):
        replayed = replay_gradual(config.gradual, fps, origin, smalls, end)
        for measured in [span] if replayed is None else replayed:  # None: still open at end
            if measured not in spans:
                spans.append(measured)
    dense = np.asarray([scores.get(index, 0.0) for index in range(count)])
    return PassResult(0, dense, numbering.seconds(), spans, signals.pack())


def _measure_windows(
    path: str, size: tuple[int, int], windows: list[tuple[int, int]], numbering: FrameNumbering,
    config: ShotSplitConfig, scores: dict[int, float], prints: dict[int, int],
    small_frames: set[int],
) -> dict[int, np.ndarray]:
    """Decode every frame of ``windows``: add their exact cut scores to ``scores``; return the
    gradual detector's input for ``small_frames``. Frames the first pass decoded too must come
    out the same after the seek, or the sparse pass is abandoned."""
    import cv2

    smalls: dict[int, np.ndarray] = {}
    last: tuple[int, np.ndarray] | None = None
    for index, frame in iter_window_frames(path, size, windows, numbering, config.fast_decode):
        if index in prints and hash(cv2.sumElems(frame)) != prints[index]:
            raise SparseDecodeError(f"frame {index} decoded differently after a seek")
        hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
        if last is not None and index == last[0] + 1:
            scores[index] = hsv_distance(last[1], hsv)
        last = (index, hsv)
        if index in small_frames:
            smalls[index] = small_luma(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), config)
    return smalls


class _CutScreen:
    """Chooses the frames of the sparse pass and scores each against the previous decoded one,
    in the background threads (a :class:`~media.sparse.FrameSelector`).

    Wants every ``stride``-th frame (the signals need them) and, while the picture is busy,
    every frame: busy shots come in runs, and a gap there would likely have to be decoded again
    after a seek. Busy means a gap scoring ``threshold`` or two adjacent frames scoring half
    of it; it lasts :data:`BUSY_FRAMES` frames past the last packet sent to the decoder.
    """

    def __init__(self, stride: int, threshold: float) -> None:
        self.stride, self.threshold = stride, threshold
        self._previous: tuple[int, np.ndarray] | None = None
        self._asked = -1
        self._busy_until = -1

    def wanted(self, index: int) -> bool:
        """Every ``stride``-th frame, and every frame while busy."""
        self._asked = max(self._asked, index)
        return index % self.stride == 0 or index <= self._busy_until

    def decoded(self, index: int, frame: np.ndarray) -> float:
        """The cut score of ``frame`` against the previous decoded frame."""
        import cv2

        hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
        score = 0.0
        if self._previous is not None:
            before, before_hsv = self._previous
            score = hsv_distance(before_hsv, hsv)
            if score >= (self.threshold if index - before > 1 else self.threshold / 2):
                self._busy_until = self._asked + BUSY_FRAMES
        self._previous = (index, hsv)
        return score


def small_luma(luma: np.ndarray, config: ShotSplitConfig) -> np.ndarray:
    """The gradual detector's input: the grey frame at ``gradual.signal_size``, float32."""
    import cv2

    small = cv2.resize(luma, config.gradual.signal_size, interpolation=cv2.INTER_AREA)
    return small.astype(np.float32)
