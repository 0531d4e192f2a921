"""Shot split stage: one decode pass at analysis size feeds two detectors.

Frames come from PyAV at ``analysis_width``. Each goes to
:class:`~stages.transitions.ContentCutDetector` (hard cuts: PySceneDetect's ContentDetector
scores computed more cheaply, PySceneDetect's flash filter deciding the cuts) and to
:class:`~stages.transitions.GradualTransitionDetector` (fades and dissolves). Boundaries are
labelled ``clean`` or ``transition`` with their frame span, and the shots tile the decoded
frames exactly. The same frames feed :class:`~stages.frame_signals.FrameSignalRecorder`, whose
per-frame quality signals the shot score stage aggregates without decoding again. Writes
``shots`` (a list of shot rows), ``num_shots``, ``frames_decoded`` and ``frame_signals``.

By default (``sparse_decode``) the pass leaves out most non-reference frames and decodes
afterwards only the few gaps where a cut or transition may lie (:func:`_sparse_pass`); the
shots, times and signals are those of the pass over every frame (:func:`_full_pass`), which
runs instead when frames cannot be numbered from packet timestamps (e.g. Matroska, which keeps
no decode times).
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curation.decode import (
    FrameNumbering,
    SparseDecodeError,
    analysis_size,
    iter_analysis_frames,
    iter_sparse_frames,
    iter_window_frames,
)
from curation.records import Record, fail
from curation.resources import Resources
from stages import ConfiguredStage
from stages.frame_signals import FrameSignalRecorder
from stages.transitions import (
    ContentCutDetector,
    GradualConfig,
    GradualTransitionDetector,
    Span,
    SparseGradualDetector,
    hsv_distance,
    label_boundaries,
    replay_gradual,
    tile_shots,
)

log = logging.getLogger(__name__)

# A gap between two decoded frames is decoded in full when their cut score reaches this share of
# the cut threshold: on the 596 s Big Buck Bunny film no frame above the threshold lies in a gap
# below it, down to a screen of the threshold itself (benchmarks/RESULTS.md).
CUT_SCREEN = 2 / 3
# Frames decoded before a transition's run and after it when it is measured again.
REPLAY_MARGIN = 4
# How long the sparse pass decodes every frame after it saw a busy picture (see _CutScreen).
BUSY_FRAMES = 6


class SignalConfig(BaseModel):
    """Per-frame quality signals measured in the same pass, for shot scoring."""

    model_config = ConfigDict(extra="forbid")

    stride: int = Field(3, ge=1, description="Measure every n-th analysis frame.")
    dark_luma: int = Field(16, ge=0, le=255, description="Pixels below count as underexposed.")
    bright_luma: int = Field(240, ge=0, le=255, description="Pixels above count as overexposed.")


class ShotSplitConfig(BaseModel):
    """Settings of the shot split stage."""

    model_config = ConfigDict(extra="forbid")

    analysis_width: int = Field(256, ge=32, description="Width frames are decoded at.")
    cut_threshold: float = Field(27.0, gt=0, description="ContentDetector threshold.")
    min_shot_s: float = Field(0.5, ge=0, description="Shortest shot, in seconds.")
    fast_decode: bool = Field(
        True, description="Skip H.264/HEVC deblocking in the analysis pass (about 15% faster)."
    )
    prefetch_frames: int = Field(
        32, ge=0, description="Decode this many frames ahead in a background thread (0: off).")
    sparse_decode: bool = Field(
        True, description="Decode reference frames and the frames the signals need, then only "
        "the gaps where a cut or transition may lie (same shots; falls back to every frame "
        "where frames cannot be numbered by presentation time).")
    gradual: GradualConfig = GradualConfig()
    signals: SignalConfig = SignalConfig()
    resources: Resources = Resources(num_cpus=1.0)


class ShotSplitStage(ConfiguredStage[ShotSplitConfig]):
    """Detects shots of one accepted video."""

    name: ClassVar[str] = "shot_split"

    def process(self, record: Record) -> Record:
        """Add ``shots`` to ``record``: boundaries found in one pass over the frames."""
        try:
            shots, frames, signals = detect_shots(
                record["path"], record["width"], record["height"], record["fps"], self.config
            )
        except Exception as err:  # decoder errors come in many types
            return fail(record, self.name, "decode_error", f"{type(err).__name__}: {err}")
        record["shots"] = shots
        record["num_shots"] = len(shots)
        record["frames_decoded"] = frames
        record["frame_signals"] = signals
        return record


def detect_shots(
    path: str, width: int, height: int, fps: float, config: ShotSplitConfig
) -> tuple[list[dict], int, bytes]:
    """Shots of the video at ``path``, the number of frames decoded and the packed frame signals."""
    min_shot_frames = max(1, int(round(config.min_shot_s * fps)))
    size = analysis_size(width, height, config.analysis_width)
    found = None
    if config.sparse_decode and config.signals.stride > 1:
        try:
            found = _sparse_pass(path, size, fps, min_shot_frames, config)
        except SparseDecodeError as err:
            log.info("shot split decodes every frame of %s: %s", path, err)
    cuts, spans, times, signals = found or _full_pass(path, size, fps, min_shot_frames, config)
    count = len(times)
    boundaries = label_boundaries(sorted(set(cuts)), spans, count, min_shot_frames)
    shots = tile_shots(boundaries, count)
    times.append(times[-1] + 1.0 / fps)  # end of the last frame
    for shot in shots:
        shot["start_time"] = times[shot["start_frame"]]
        shot["end_time"] = times[shot["end_frame"]]
    return shots, count, signals


def _full_pass(
    path: str, size: tuple[int, int], fps: float, min_shot_frames: int, config: ShotSplitConfig
) -> tuple[list[int], list[Span], list[float], bytes]:
    """Cuts, transition spans, frame times and packed signals from every frame."""
    import cv2

    content = ContentCutDetector(config.cut_threshold, min_shot_frames, fps)
    gradual = GradualTransitionDetector(config.gradual, fps)
    signals = FrameSignalRecorder(**config.signals.model_dump())
    cuts: list[int] = []
    times: list[float] = []
    for index, (seconds, frame) in enumerate(iter_analysis_frames(
            path, size, config.fast_decode, config.prefetch_frames)):
        times.append(seconds)
        cuts += content.push(index, frame)
        luma = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        signals.push(index, frame, luma)
        if config.gradual.enabled:
            gradual.push(index, _small(luma, config))
    if not times:
        raise ValueError("no frame could be decoded")
    return cuts, gradual.finish(len(times)), times, signals.pack()


def _sparse_pass(
    path: str, size: tuple[int, int], fps: float, min_shot_frames: int, config: ShotSplitConfig
) -> tuple[list[int], list[Span], list[float], bytes]:
    """What :func:`_full_pass` finds, from fewer decoded frames.

    The first pass decodes the reference frames, every ``signals.stride``-th frame (the signals
    need those) and every frame while the picture is busy (:class:`_CutScreen`); the decoder
    skips the other non-reference frames. A cut can hide in a gap between two decoded frames:
    where their score reaches :data:`CUT_SCREEN` of the threshold, the gap is decoded afterwards
    (:func:`curation.decode.iter_window_frames`) and scored frame by frame, so cut frames are
    those of the full pass. The gradual detector runs over the gaps filled in by interpolation,
    and each transition it finds is measured again on the real frames around it
    (:func:`~stages.transitions.replay_gradual`).
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
            gradual.push(index, _small(luma, config))
    count = len(numbering.pts)
    transitions = gradual.finish(count) if config.gradual.enabled else []
    replays = [(origin[0] if origin else 0, min(count - 1, span.end + 1 + REPLAY_MARGIN))
               for span, origin in transitions]
    smalls = _measure_windows(path, size, gaps + replays, numbering, config, scores, prints,
                              {i for start, end in replays for i in range(start, end + 1)})
    content = ContentCutDetector(config.cut_threshold, min_shot_frames, fps)
    cuts = [cut for index in range(count)
            for cut in content.push_score(index, scores.get(index, 0.0))]
    spans: list[Span] = []
    for (span, origin), (_, end) in zip(transitions, replays, strict=True):
        replayed = replay_gradual(config.gradual, fps, origin, smalls, end)
        for measured in [span] if replayed is None else replayed:  # None: still open at end
            if measured not in spans:
                spans.append(measured)
    return cuts, spans, numbering.seconds(), signals.pack()


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
            smalls[index] = _small(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), config)
    return smalls


class _CutScreen:
    """Chooses the frames of the sparse pass and scores each against the previous decoded one,
    in the background threads (a :class:`~curation.decode.FrameSelector`).

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


def _small(luma: np.ndarray, config: ShotSplitConfig) -> np.ndarray:
    """The gradual detector's input: the grey frame at ``gradual.signal_size``, float32."""
    import cv2

    small = cv2.resize(luma, config.gradual.signal_size, interpolation=cv2.INTER_AREA)
    return small.astype(np.float32)
