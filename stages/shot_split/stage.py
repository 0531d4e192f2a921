"""Shot split stage: one decode pass at analysis size feeds two detectors.

Frames come from PyAV at ``analysis_width``. Each is scored as PySceneDetect's ContentDetector
scores it (:class:`~stages.shot_split.transitions.ContentScore`; PySceneDetect's flash filter then
decides the hard cuts, :func:`~stages.shot_split.transitions.content_cuts`) and goes to
:class:`~stages.shot_split.transitions.GradualTransitionDetector` (fades and dissolves). Boundaries
are labelled ``clean`` or ``transition`` with their frame span, and the shots tile the decoded
frames exactly. The same frames feed :class:`~stages.frame_signals.FrameSignalRecorder`, whose
per-frame quality signals the shot score stage aggregates without decoding again. Writes ``shots``
(a list of shot rows), ``num_shots``, ``frames_decoded`` and ``frame_signals``.

A video longer than ``chunk_s`` whose frames can be numbered by timestamp (not probed as
variable-frame-rate) splits into pieces of about ``chunk_s`` seconds that the runner decodes in
parallel (:func:`~stages.shot_split.passes.piece_pass`); the cuts are decided over all pieces'
scores at once, so they are those of one pass. Another video is one pass over every frame
(:func:`~stages.shot_split.passes.full_pass`). ``sparse_decode`` (off by default) makes that one
pass leave out most non-reference frames and decode afterwards only the gaps where a cut may lie
(:func:`~stages.shot_split.passes.sparse_pass`): the same cuts, but its gradual detector sees
interpolated frames and can miss a dissolve that barely stands above the motion of its shot
(``tests/test_shot_split.py`` has one).
"""

from __future__ import annotations

import logging
import math
from enum import StrEnum
from typing import ClassVar

import numpy as np
import pyarrow as pa

from media.readers import analysis_size
from media.seek import GridMismatch, grid_for_pieces
from stages.base import ChunkedStage, ChunkFailure
from stages.records import Column, Record, fail, reject
from stages.shot_split.config import ShotSplitConfig
from stages.shot_split.fusion import fused_boundaries, in_flash, learned_boundaries
from stages.shot_split.learned import model_name, threshold
from stages.shot_split.passes import PassResult, ShotPiece, piece_pass, whole_pass
from stages.shot_split.spikes import spike_cuts, standout
from stages.shot_split.transitions import Span, content_cuts, label_boundaries, tile_shots

log = logging.getLogger(__name__)

# Largest factor between the frames' mean rate by their timestamps and the probed rate: far
# beyond what variable frame rates and container rounding give, far below a misread time scale.
MAX_RATE_RATIO = 2.0


class ShotSplitRule(StrEnum):
    """Why the shot split rejects or fails a video."""

    DECODE_ERROR = "decode_error"
    TIMESTAMPS_NOT_INCREASING = "timestamps_not_increasing"
    FPS_MISMATCH = "fps_mismatch"


class ShotSplitStage(ChunkedStage[ShotSplitConfig]):
    """Detects shots of one accepted video, in pieces when it is long."""

    name: ClassVar[str] = "shot_split"
    rules: ClassVar[type[StrEnum]] = ShotSplitRule
    columns: ClassVar[tuple[Column, ...]] = (
        Column("frames_decoded", pa.int64(), "frames the analysis pass decoded"),
        Column("num_shots", pa.int32(), "shots found"),
        Column("shots", None, "the shot rows: OUT/shots"),
        Column("frame_signals", None, "packed per-frame quality signals, for the shot score"),
        Column("shot_detector", pa.string(), "what found the boundaries: content, transnetv2, "
               "autoshot, or fused+<model> (stages/shot_split/fusion.py)"),
        Column("model_frames", pa.int64(), "frames the learned model ran over, context "
               "included (0 for the content detector)"),
    )
    shot_columns: ClassVar[tuple[Column, ...]] = (
        Column("shot_index", pa.int32(), "position of the shot in its video"),
        Column("start_frame", pa.int64(), "first frame, in display order from 0"),
        Column("end_frame", pa.int64(), "one past the last frame"),
        Column("start_time", pa.float64(), "seconds of the first frame, from the first frame"),
        Column("end_time", pa.float64(), "seconds where the next shot starts"),
        Column("boundary_in", pa.string(), "clean, transition or video_start"),
        Column("boundary_out", pa.string(), "clean, transition or video_end"),
        Column("transition_in_start", pa.int64(), "first frame of the transition into it"),
        Column("transition_in_end", pa.int64(), "one past its last frame"),
        Column("transition_out_start", pa.int64(), "first frame of the transition out of it"),
        Column("transition_out_end", pa.int64(), "one past its last frame"),
    )

    def chunks(self, record: Record) -> list[ShotPiece | None]:
        """Pieces of about ``chunk_s`` seconds, or ``[None]``: the whole video in one pass."""
        limit, fps = self.config.chunk_s, record["fps"]
        if limit is None or not record.get("duration_s") or record["duration_s"] <= limit:
            return [None]
        try:
            grid = grid_for_pieces(record)
        except Exception as err:  # the whole-video pass will report what is wrong with the file
            log.info("shot split reads %s in one pass: %s", record["path"], err)
            return [None]
        count = math.ceil(grid.num_frames / (limit * fps)) if grid is not None else 1
        if count < 2:
            return [None]
        tail, warm = piece_margins(self.config, fps)
        bounds = [round(k * grid.num_frames / count) for k in range(count + 1)]
        return [ShotPiece(start, end, max(0, start - warm), min(grid.num_frames, end + tail),
                          grid) for start, end in zip(bounds, bounds[1:], strict=False)]

    def process_chunk(self, record: Record, chunk: ShotPiece | None
                      ) -> PassResult | GridMismatch | ChunkFailure:
        """Measure one piece (or the whole video); decoder errors fail the video. A piece whose
        frames are not where the timestamps put them returns the mismatch: :meth:`join` then
        measures the video in one pass."""
        size = analysis_size(record["width"], record["height"], self.config.analysis_width)
        try:
            if chunk is None:
                return whole_pass(record["path"], size, record["fps"], self.config)
            threads = max(1, round(self.config.resources.num_cpus))  # its share of the cores
            return piece_pass(record["path"], size, record["fps"], chunk, self.config, threads)
        except GridMismatch as err:
            return err
        except Exception as err:  # decoder errors come in many types
            return ChunkFailure(ShotSplitRule.DECODE_ERROR, f"{type(err).__name__}: {err}")

    def join(self, record: Record, results: list[PassResult | GridMismatch]) -> Record:
        """Cuts and shots from every piece's measurements, or from one pass over the video when
        a piece could not trust the timestamps."""
        mismatch = next((r for r in results if isinstance(r, GridMismatch)), None)
        if mismatch is not None:
            log.info("shot split of %s in one pass: %s", record["path"], mismatch)
            whole = self.process_chunk(record, None)
            if isinstance(whole, ChunkFailure):
                return fail(record, self.name, whole.rule, whole.detail)
            results = [whole]
        times = [t for result in results for t in result.times]
        problem = timing_problem(times, record["fps"])
        if problem is not None:
            return reject(record, self.name, *problem)
        shots, count, signals = shots_from(results, record["fps"], self.config)
        record["shots"] = shots
        record["num_shots"] = len(shots)
        record["frames_decoded"] = count
        record["frame_signals"] = signals
        record["shot_detector"] = detector_label(self.config)
        record["model_frames"] = sum(result.model_frames for result in results)
        return record


def detector_label(config: ShotSplitConfig) -> str:
    """``config.detector``, with the model the fused detector consulted."""
    return f"fused+{model_name(config)}" if config.detector == "fused" else config.detector


def timing_problem(times: list[float], fps: float) -> tuple[ShotSplitRule, float, str] | None:
    """(rule, value, detail) when the decoded frames' times (seconds from frame 0) contradict
    themselves or the probed ``fps``, else None. The shots' times and the encode's resampling
    come from these times, while the merge's durations and the filters go by the probed rate,
    so the two must agree: times must not go back (``timestamps_not_increasing``; repeated
    times are allowed), and their mean rate must lie within :data:`MAX_RATE_RATIO` of ``fps``
    (``fps_mismatch``)."""
    back = np.flatnonzero(np.diff(times) < 0)
    if back.size:
        i = int(back[0]) + 1
        return (ShotSplitRule.TIMESTAMPS_NOT_INCREASING, i,
                f"frame {i} is at {times[i]:.3f} s, before frame {i - 1} at {times[i - 1]:.3f} s")
    span = times[-1] - times[0]
    rate = (len(times) - 1) / span if span > 0 else math.inf
    if len(times) > 1 and not 1 / MAX_RATE_RATIO <= rate / fps <= MAX_RATE_RATIO:
        return (ShotSplitRule.FPS_MISMATCH, round(rate, 3),
                f"{len(times)} frames span {span:.3f} s of timestamps ({rate:.3g} fps), the probe "
                f"says {fps:g} fps")
    return None


def piece_margins(config: ShotSplitConfig, fps: float) -> tuple[int, int]:
    """(tail, warm-up) in frames. A piece decodes ``tail`` frames past its end, so a gradual
    transition starting inside it (at most ``gradual.max_seconds`` long) ends in view; and
    ``warm-up`` frames before its start, so the gradual detector's baseline (a second of frame
    differences, or a candidate run) and the signals' previous frame are those of one pass."""
    tail = max(config.gradual.min_frames + 1, round(config.gradual.max_seconds * fps)) + 2
    return tail, tail + 2 * max(3, round(fps)) + config.signals.stride


def shots_from(results: list[PassResult], fps: float,
               config: ShotSplitConfig) -> tuple[list[dict], int, bytes]:
    """(shots, number of frames, packed frame signals) from passes over consecutive frames."""
    count = 0
    for result in results:
        if result.first != count:
            raise ValueError(f"a piece starts at frame {result.first}, not {count}")
        count += len(result.times)
    times = [t for result in results for t in result.times]
    min_shot_frames = max(1, int(round(config.min_shot_s * fps)))
    cuts, spans = boundaries_from(results, fps, min_shot_frames, config)
    boundaries = label_boundaries(sorted(set(cuts)), spans, count, min_shot_frames)
    shots = tile_shots(boundaries, count)
    times.append(times[-1] + 1.0 / fps)  # end of the last frame
    for shot in shots:
        shot["start_time"] = times[shot["start_frame"]]
        shot["end_time"] = times[shot["end_frame"]]
    return shots, count, b"".join(result.signals for result in results)


def boundaries_from(results: list[PassResult], fps: float, min_shot_frames: int,
                    config: ShotSplitConfig) -> tuple[list[int], list[Span]]:
    """(cut frames, transition spans) of consecutive passes, by ``config.detector``."""
    spans = [span for result in results for span in result.spans]
    if config.detector != "content":
        cut, span = (np.concatenate([r.learned[i] for r in results]) for i in (0, 1))
        if config.detector != "fused":
            return learned_boundaries(cut, span, threshold(config), config.gradual.min_frames)
    scores = np.concatenate([r.scores for r in results])
    cuts = content_cuts(scores, config.cut_threshold, min_shot_frames, fps)
    window, ratio = max(1, round(fps / 2)), config.spike_ratio or math.inf
    if config.spike_ratio is not None:
        spikes = spike_cuts(scores, config.cut_threshold, ratio, window)
        cuts = sorted(cuts + [s for s in spikes
                              if all(abs(s - c) >= min_shot_frames for c in cuts)])
    flashes = [flash for result in results for flash in result.flashes]
    moved = {index for result in results for index in result.moved}
    still = {index for result in results for index in result.still}
    cuts = [c for c in cuts if not in_flash(c, flashes) and c not in still
            and (c not in moved or standout(scores, c, window) >= ratio)]
    if config.detector == "content":
        return cuts, spans
    return fused_boundaries(cuts, spans, flashes, cut, span, threshold(config),
                            config.learned.confirm, config.gradual.min_frames)


def detect_shots(
    path: str, width: int, height: int, fps: float, config: ShotSplitConfig
) -> tuple[list[dict], int, bytes]:
    """Shots of the video at ``path`` in one pass, the number of frames and the packed signals."""
    size = analysis_size(width, height, config.analysis_width)
    return shots_from([whole_pass(path, size, fps, config)], fps, config)
