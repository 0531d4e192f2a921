"""The stage plan: which stages run, in which order, with which config and resources."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from curation.config import PipelineConfig
from curation.watchdog import ItemWatchdog
from stages.base import ChunkedStage, ChunkMapper, Stage
from stages.records import Record, StageRule, fail, is_live
from stages.registry import REGISTRY, STAGE_NAMES
from stages.resources import Resources


@dataclass(frozen=True)
class PlannedStage:
    """A stage object, the resources the runner reserves for it, and whether it runs in a pool
    of long-lived actors (stages that load a model) rather than in tasks."""

    stage: Stage
    resources: Resources
    actors: bool = False


def build_plan(config: PipelineConfig, out_dir: Path) -> list[PlannedStage]:
    """The stages of :data:`stages.registry.REGISTRY` in order, each built from its config
    section (a stage its config switches off is left out), up to ``stop_after``."""
    plan: list[PlannedStage] = []
    for entry in REGISTRY:
        section = getattr(config.stages, entry.name)
        for early in REGISTRY:
            if early.early_before == entry.name:
                early_config = getattr(config.stages, early.name)
                plan.append(PlannedStage(early.early(early_config, out_dir),
                                         early_config.resources, early.actors(early_config)))
        stage = entry.build(section, out_dir)
        if stage is not None:
            plan.append(PlannedStage(stage, section.resources, entry.actors(section)))
    if config.stop_after is not None:
        last = STAGE_NAMES.index(config.stop_after)
        plan = [planned for planned in plan if STAGE_NAMES.index(planned.stage.name) <= last]
    return plan


class PreflightError(RuntimeError):
    """A configured model cannot be loaded; raised before any work starts."""


def preflight(config: PipelineConfig) -> None:
    """Fail before any work if a configured model cannot be loaded."""
    try:
        for entry in REGISTRY:
            if entry.preflight is not None:
                entry.preflight(getattr(config.stages, entry.name))
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
            record = fail(record, self.stage.name, StageRule.ERROR, f"{type(err).__name__}: {err}")
        if self.stage.name in STAGE_NAMES:  # a stage outside the registry has no timing column
            record[f"seconds_{self.stage.name}"] = round(time.perf_counter() - started, 4)
        return record


def stage_call_class(stage_name: str) -> type[StageCall]:
    """A :class:`StageCall` subclass named after the stage, so Ray Data's operators, progress
    bars and logs say ``Map(shot_split)`` rather than ``Map(StageCall)``."""
    return type(stage_name, (StageCall,), {"__doc__": f"StageCall of {stage_name}."})
