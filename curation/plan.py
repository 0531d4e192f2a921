"""The stage plan: which stages run, in which order, with which config and resources."""

from __future__ import annotations

import time
from dataclasses import dataclass

from curation.config import PipelineConfig
from curation.records import Record, fail, is_live
from curation.resources import Resources
from stages import Stage
from stages.probe import ProbeStage
from stages.shot_split import ShotSplitStage
from stages.video_filter import VideoFilterStage
from stages.video_score import VideoScoreStage


@dataclass(frozen=True)
class PlannedStage:
    """A stage object and the resources the runner reserves for it."""

    stage: Stage
    resources: Resources


def build_plan(config: PipelineConfig) -> list[PlannedStage]:
    """The video-level stages in paper order: probe, score, filter, shot split."""
    cfg = config.stages
    return [
        PlannedStage(ProbeStage(cfg.probe), cfg.probe.resources),
        PlannedStage(VideoScoreStage(cfg.video_score), cfg.video_score.resources),
        PlannedStage(VideoFilterStage(cfg.video_filter), cfg.video_filter.resources),
        PlannedStage(ShotSplitStage(cfg.shot_split), cfg.shot_split.resources),
    ]


class StageCall:
    """Applies one stage to one record: skips finished records, times the stage, and turns an
    unexpected exception into a ``failed`` record naming the stage and the error."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self._ready = False

    def __call__(self, record: Record) -> Record:
        record = dict(record)
        if not is_live(record):
            return record
        if not self._ready:
            self.stage.setup()
            self._ready = True
        started = time.perf_counter()
        try:
            record = self.stage.process(record)
        except Exception as err:  # a stage bug must not take the other videos down
            record = fail(record, self.stage.name, "error", f"{type(err).__name__}: {err}")
        record[f"seconds_{self.stage.name}"] = round(time.perf_counter() - started, 4)
        return record
