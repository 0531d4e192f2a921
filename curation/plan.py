"""The stage plan: which stages run, in which order, with which config and resources."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from curation.config import PipelineConfig
from curation.watchdog import ItemWatchdog
from stages.base import ChunkedStage, ChunkMapper, Stage
from stages.encode.stage import EncodeStage
from stages.probe import ProbeStage
from stages.records import Record, fail, is_live
from stages.resources import Resources
from stages.shot_caption.captioner import preflight as caption_preflight
from stages.shot_caption.stage import ShotCaptionStage
from stages.shot_crop.stage import ShotCropStage
from stages.shot_filter import ShotFilterStage
from stages.shot_merge import ShotMergeStage
from stages.shot_score.aesthetic import preflight as aesthetic_preflight
from stages.shot_score.stage import ShotScoreStage
from stages.shot_split.stage import ShotSplitStage
from stages.video_filter import VideoFilterStage
from stages.video_score import VideoScoreStage


@dataclass(frozen=True)
class PlannedStage:
    """A stage object, the resources the runner reserves for it, and whether it runs in a pool
    of long-lived actors (stages that load a model) rather than in tasks."""

    stage: Stage
    resources: Resources
    actors: bool = False


def build_plan(config: PipelineConfig, out_dir: Path) -> list[PlannedStage]:
    """The stages in paper order (section 3.3): probe, video score and filter, shot split, shot
    score and filter, OCR crop, merge, caption (when a model is configured), encode.

    Merge plans the samples before captioning so every captioned shot is one that lands in a
    sample and each sample gets its global caption from the same loaded model.
    """
    cfg = config.stages
    plan = [
        PlannedStage(ProbeStage(cfg.probe), cfg.probe.resources),
        PlannedStage(VideoFilterStage(cfg.video_filter, "metadata"), cfg.video_filter.resources),
        PlannedStage(VideoScoreStage(cfg.video_score), cfg.video_score.resources),
        PlannedStage(VideoFilterStage(cfg.video_filter, "scores"), cfg.video_filter.resources),
        PlannedStage(ShotSplitStage(cfg.shot_split), cfg.shot_split.resources),
        PlannedStage(ShotScoreStage(cfg.shot_score), cfg.shot_score.resources,
                     actors=cfg.shot_score.aesthetic.clip_model is not None),
        PlannedStage(ShotFilterStage(cfg.shot_filter), cfg.shot_filter.resources),
        PlannedStage(ShotCropStage(cfg.shot_crop), cfg.shot_crop.resources),
        PlannedStage(ShotMergeStage(cfg.shot_merge), cfg.shot_merge.resources),
    ]
    if cfg.shot_caption.model is not None:
        plan.append(PlannedStage(ShotCaptionStage(cfg.shot_caption), cfg.shot_caption.resources,
                                 actors=True))
    plan.append(PlannedStage(EncodeStage(cfg.encode, out_dir / ".staging"), cfg.encode.resources))
    if config.stop_after is not None:
        order = list(type(cfg).model_fields)
        last = order.index(config.stop_after)
        plan = [planned for planned in plan if order.index(planned.stage.name) <= last]
    return plan


class PreflightError(RuntimeError):
    """A configured model cannot be loaded; raised before any work starts."""


def preflight(config: PipelineConfig) -> None:
    """Fail before any work if a configured model cannot be loaded."""
    try:
        if config.stages.shot_caption.model is not None:
            caption_preflight(config.stages.shot_caption)
        if config.stages.shot_score.aesthetic.clip_model is not None:
            aesthetic_preflight(config.stages.shot_score.aesthetic)
    except ValueError as err:
        raise PreflightError(str(err)) from None


class StageCall:
    """Applies one stage to one record: skips finished records, times the stage, turns an
    unexpected exception into a ``failed`` record naming the stage and the error, and, with a
    watchdog, stops a call that overruns its limit (rule ``timeout``) and gives up on a file
    that keeps killing its worker (rule ``worker_lost``). A :class:`~stages.base.ChunkedStage` has
    its pieces mapped by ``mapper`` (the runner's parallel tasks) when one is given."""

    def __init__(self, stage: Stage, watchdog: ItemWatchdog | None = None,
                 mapper: ChunkMapper | None = None) -> None:
        self.stage = stage
        self.watchdog = watchdog
        self.mapper = mapper
        self._ready = False

    def __call__(self, record: Record) -> Record:
        record = dict(record)
        if not is_live(record):
            return record
        if self.watchdog is not None and (loss := self.watchdog.loss(record)):
            return fail(record, loss.stage, loss.rule, loss.detail)
        if not self._ready:
            self.stage.setup()
            self._ready = True
        started = time.perf_counter()
        guard = self.watchdog.guard(record) if self.watchdog is not None else nullcontext()
        try:
            with guard:
                if self.mapper is not None and isinstance(self.stage, ChunkedStage):
                    record = self.stage.run_chunks(record, self.mapper)
                else:
                    record = self.stage.process(record)
        except Exception as err:  # a stage bug must not take the other videos down
            record = fail(record, self.stage.name, "error", f"{type(err).__name__}: {err}")
        record[f"seconds_{self.stage.name}"] = round(time.perf_counter() - started, 4)
        return record


def stage_call_class(stage_name: str) -> type[StageCall]:
    """A :class:`StageCall` subclass named after the stage, so Ray Data's operators, progress
    bars and logs say ``Map(shot_split)`` rather than ``Map(StageCall)``."""
    return type(stage_name, (StageCall,), {"__doc__": f"StageCall of {stage_name}."})
