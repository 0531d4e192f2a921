"""A learned shot-boundary model run over the frames of the shot split's one decode pass.

:class:`WindowedScorer` takes the analysis frames as they are decoded (shrunk to the models'
48x27 RGB), keeps a bounded ring of recent frames, and runs the model over windows as soon as
their right-hand context has been decoded: memory stays flat in video length, and nothing is
decoded twice. Each window predicts a stretch of frames with :data:`CONTEXT` frames on each side
(100-frame windows predicting their middle 50, as both networks were trained and published);
frames before the first or after the last frame of the video are the first or last frame
repeated, as the reference implementations pad.

Which frames are predicted is up to the caller: every frame (the ``transnetv2`` and
``autoshot`` detectors) or only ranges around candidates the cheap detectors raise (the
``fused`` detector, :meth:`WindowedScorer.request`). Frames not predicted stay NaN.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from stages.shot_split.models import (
    FRAME_SIZE,
    THRESHOLDS,
    BoundaryModel,
    load_model,
    resolve_device,
)
from stages.shot_split.transitions import Span

if TYPE_CHECKING:
    from stages.shot_split.config import ShotSplitConfig

CONTEXT = 25  # frames of context each side of the predicted frames
PREDICTED = 50  # most frames one window predicts
# Fused: frames predicted before and after a frame whose colour change stands out (the model
# marks the frame before a cut), and around a run of changing frames.
LOOK_BEFORE, LOOK_AFTER = 3, 1
RUN_MARGIN = 3
# Fused (CandidateGate): a colour change below this share of the cut threshold is never in
# doubt; a cut this many thresholds high in calm footage is clear; calm is a median change
# below this share of the threshold.
SPIKE_FLOOR = 0.5
CLEAR = 2.0
BUSY = 1 / 3


def model_name(config: ShotSplitConfig) -> str:
    """The network behind ``config.detector`` (the fused detector's is ``learned.model``)."""
    return config.detector if config.detector != "fused" else config.learned.model


def threshold(config: ShotSplitConfig) -> float:
    """The boundary probability threshold in force."""
    return config.learned.threshold or THRESHOLDS[model_name(config)]


def model_frame(bgr: np.ndarray) -> np.ndarray:
    """An analysis frame (BGR uint8) as the models' input: 48x27 RGB uint8 (area-averaged)."""
    import cv2

    small = cv2.resize(bgr, FRAME_SIZE, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


class LearnedFeed:
    """What a pass hands the learned model: each frame, and (``fused``) the candidates."""

    def __init__(self, scorer: WindowedScorer, gate: CandidateGate | None) -> None:
        self.scorer, self.gate = scorer, gate

    @classmethod
    def for_config(cls, config: ShotSplitConfig, fps: float, start: int,
                   end: int | None) -> LearnedFeed | None:
        """The feed of frames ``[start, end)`` the detector needs (None for ``content``): every
        frame requested, or (``fused``) the ranges its :class:`CandidateGate` raises."""
        if config.detector == "content":
            return None
        learned = config.learned
        model = load_model(model_name(config), resolve_device(learned.device), learned.bf16)
        longest_run = max(config.gradual.min_frames + 1, round(config.gradual.max_seconds * fps))
        retain = 2 * CONTEXT + PREDICTED + longest_run + 2 * RUN_MARGIN + 2
        scorer = WindowedScorer(model, start, end, retain, learned.batch_windows)
        if config.detector != "fused":
            scorer.request_every_frame()
            return cls(scorer, None)
        return cls(scorer, CandidateGate(config, fps))

    def push(self, index: int, bgr: np.ndarray, score: float, runs: list[Span]) -> None:
        """Frame ``index`` (analysis BGR), its content score, the gradual detector's runs."""
        if self.gate is not None:
            for first, stop in self.gate.ranges(index, score, runs):
                self.scorer.request(first, stop)
        self.scorer.push(index, model_frame(bgr))

    def finish(self, runs: list[Span]) -> tuple[np.ndarray, np.ndarray]:
        """(cut, span) probabilities of the frames, after the runs closed by the end."""
        if self.gate is not None:
            for first, stop in self.gate.run_ranges(runs):
                self.scorer.request(first, stop)
        return self.scorer.finish()


class WindowedScorer:
    """Per-frame (cut, span) probabilities of frames ``[start, end)`` from streamed frames.

    ``retain`` frames are kept: enough for a request made up to ``retain - CONTEXT -
    PREDICTED`` frames after its range starts. Windows of equal length are run ``batch`` at a
    time (on a GPU, batches are what pays; on a CPU a batch costs what its windows cost).
    """

    def __init__(self, model: BoundaryModel, start: int, end: int | None, retain: int,
                 batch: int) -> None:
        self.model, self.start, self.end, self.batch = model, start, end, batch
        self._frames: deque[tuple[int, np.ndarray]] = deque(maxlen=retain)
        self._pending: list[list[int]] = []  # sorted, disjoint [start, end) ranges to predict
        self._queued: list[tuple[int, int, np.ndarray]] = []  # (first predicted, count, window)
        self._results: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._full = False
        self.frames_run = 0

    def request(self, start: int, end: int) -> None:
        """Predict frames ``[start, end)`` (clipped to the frames this scorer keeps)."""
        start = max(start, self.start)
        end = end if self.end is None else min(end, self.end)
        if start >= end:
            return
        ranges = sorted([*self._pending, [start, end]])
        merged: list[list[int]] = []
        for first, last in ranges:
            if merged and first <= merged[-1][1] + 2 * CONTEXT:  # one window costs less
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        self._pending = merged

    def request_every_frame(self) -> None:
        """Predict every frame, in the published protocol: 100-frame windows predicting frames
        ``[50k, 50k + 50)``, on the same grid in a piece of a video as in one pass over it."""
        self._full = True
        self._pending = [[self.start - self.start % PREDICTED,
                          self.end if self.end is not None else 2**62]]

    def push(self, index: int, frame: np.ndarray) -> None:
        """Add decoded frame ``index`` (consecutive indices) as a 48x27 RGB uint8 array."""
        self._frames.append((index, frame))
        self._queue_ready(index)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Run what is left (the video has ended) and return (cut, span) probabilities of
        frames ``[start, end)``, NaN where not predicted (``end`` None: to the last frame)."""
        last = self._frames[-1][0] if self._frames else self.start - 1
        self._queue_ready(last, ended=True)
        self._run_queued(everything=True)
        end = last + 1 if self.end is None else self.end
        cut = np.full(max(0, end - self.start), np.nan, np.float32)
        span = cut.copy()
        for first, cuts, spans in self._results:
            lo, hi = max(first, self.start), min(first + len(cuts), end)
            if lo < hi:
                cut[lo - self.start:hi - self.start] = cuts[lo - first:hi - first]
                span[lo - self.start:hi - self.start] = spans[lo - first:hi - first]
        return cut, span

    def _queue_ready(self, last: int, ended: bool = False) -> None:
        """Cut windows for every pending stretch whose right context has arrived."""
        while self._pending:
            first, end = self._pending[0]
            if ended:
                end = min(end, last + 1)
                if first >= end:
                    self._pending.pop(0)
                    continue
            count = min(end - first, PREDICTED)
            length = PREDICTED if self._full else count  # full windows: padded past the end
            if not ended and first + length + CONTEXT - 1 > last:
                break
            self._queued.append((first, count, self._window(first, length)))
            if first + count >= end:
                self._pending.pop(0)
            else:
                self._pending[0][0] = first + count
        self._run_queued()

    def _window(self, first: int, count: int) -> np.ndarray:
        """Frames ``[first - CONTEXT, first + count + CONTEXT)``, ends padded by repetition."""
        oldest, newest = self._frames[0][0], self._frames[-1][0]
        if first - CONTEXT < oldest and oldest > 0:
            raise ValueError(f"frame {first - CONTEXT} is no longer kept (oldest {oldest})")
        indices = np.clip(np.arange(first - CONTEXT, first + count + CONTEXT), oldest, newest)
        return np.stack([self._frames[int(i) - oldest][1] for i in indices])

    def _run_queued(self, everything: bool = False) -> None:
        """Run queued windows in batches of equal length (all of them when ``everything``)."""
        while self._queued:
            length = len(self._queued[0][2])
            same = [item for item in self._queued if len(item[2]) == length][:self.batch]
            if len(same) < self.batch and not everything and len(self._queued) < self.batch:
                return
            for item in same:
                self._queued.remove(item)
            cut, span = self.model.predict(np.stack([window for _, _, window in same]))
            for row, (first, count, _) in enumerate(same):
                predicted = slice(CONTEXT, CONTEXT + count)
                self._results.append((first, cut[row, predicted], span[row, predicted]))
            self.frames_run += len(same) * length


class CandidateGate:
    """Where the fused detector asks the model to look: wherever the cheap detectors' call is
    in doubt, and nowhere else (on a CPU the model costs far more per frame than the decode).

    - A content cut is in doubt unless it is *clear*: a colour change of at least
      :data:`CLEAR` times the threshold, after a second of calm (median change below
      :data:`BUSY` of the threshold) and with no other large change within a second before it.
      A flash (a jump out and back), or a cut inside fast motion, is never clear; a second large
      change within the second also puts the one before it in doubt.
    - A change below the threshold is in doubt when it stands ``spike_ratio`` times above the
      median of the second before it and reaches :data:`SPIKE_FLOOR` of the threshold (a cut
      between similar shots).
    - Every run of changing frames the gradual detector tested is in doubt (a wipe fails its
      blend test; the model judges it).
    """

    def __init__(self, config: ShotSplitConfig, fps: float) -> None:
        self.threshold = config.cut_threshold
        self.ratio = config.learned.spike_ratio
        self.second = max(3, round(fps))
        self._recent: deque[float] = deque(maxlen=self.second)
        self._last_large = -self.second - 1  # the last frame changing by half the threshold
        self._runs_seen = 0

    def ranges(self, index: int, score: float, runs: list[Span]) -> list[tuple[int, int]]:
        """Frame ranges to predict, given frame ``index``'s content score and the runs so far."""
        baseline = float(np.median(self._recent)) if self._recent else 0.0
        self._recent.append(score)
        doubtful: list[int] = []
        recent_large = index - self._last_large <= self.second
        if score >= self.threshold:
            clear = (score >= CLEAR * self.threshold and baseline < BUSY * self.threshold
                     and not recent_large)
            doubtful += [] if clear else [index]
            doubtful += [self._last_large] if recent_large else []
        elif score >= self.ratio * baseline and score >= SPIKE_FLOOR * self.threshold:
            doubtful.append(index)
        if score >= self.threshold / 2:
            self._last_large = index
        found = [(frame - LOOK_BEFORE, frame + LOOK_AFTER) for frame in doubtful]
        return found + self.run_ranges(runs)

    def run_ranges(self, runs: list[Span]) -> list[tuple[int, int]]:
        """Frame ranges around the runs not seen before."""
        found = [(run.start - RUN_MARGIN, run.end + RUN_MARGIN) for run in runs[self._runs_seen:]]
        self._runs_seen = len(runs)
        return found
