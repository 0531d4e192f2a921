"""The pipeline's stages, in order: the one table that the config sections, the plan, the stage
names and the output tables are all derived from.

To add a stage: write it (a :class:`~stages.base.ConfiguredStage` with ``name``, ``columns``,
``shot_columns`` and ``rules``) and its config model, and add one :class:`StageEntry` here. Its
config section ``stages.<name>`` (:mod:`curation.config`), its place in the plan
(:mod:`curation.plan`), its ``seconds_<name>`` timing and its columns in ``OUT/videos`` and
``OUT/shots`` (:mod:`curation.output.schema`) follow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from stages.base import Stage
from stages.encode.config import EncodeConfig
from stages.encode.stage import EncodeStage
from stages.probe import ProbeConfig, ProbeStage
from stages.shot_caption.captioner import preflight as caption_preflight
from stages.shot_caption.config import ShotCaptionConfig
from stages.shot_caption.stage import ShotCaptionStage
from stages.shot_crop.config import ShotCropConfig
from stages.shot_crop.stage import ShotCropStage
from stages.shot_filter import ShotFilterConfig, ShotFilterStage
from stages.shot_merge import ShotMergeConfig, ShotMergeStage
from stages.shot_score.aesthetic import preflight as aesthetic_preflight
from stages.shot_score.config import ShotScoreConfig
from stages.shot_score.stage import ShotScoreStage
from stages.shot_split.config import ShotSplitConfig
from stages.shot_split.learned import model_name
from stages.shot_split.models import check_installed
from stages.shot_split.stage import ShotSplitStage
from stages.video_filter import VideoFilterConfig, VideoFilterStage
from stages.video_score import VideoScoreConfig, VideoScoreStage

# (stage config, output folder) -> the stage object, or None when its config switches it off
Factory = Callable[[Any, Path], Stage | None]


@dataclass(frozen=True)
class StageEntry:
    """One stage of the pipeline.

    ``make`` builds it from its config section (default: ``stage(config)``); ``early`` is a
    second factory whose stage runs just before the entry named ``early_before`` (the video
    filter's metadata rules run before the video score decodes anything); ``actors`` says
    whether the runner keeps it in long-lived actors (it loads a model); ``preflight`` checks,
    before any work, that a configured model can be loaded.
    """

    stage: type
    config: type[BaseModel]
    make: Factory | None = None
    early: Factory | None = None
    early_before: str | None = None
    actors: Callable[[Any], bool] = lambda config: False
    preflight: Callable[[Any], None] | None = None

    @property
    def name(self) -> str:
        """The stage's name: its config section, its timing column, its rows' ``stage``."""
        return self.stage.name

    def build(self, config: BaseModel, out_dir: Path) -> Stage | None:
        """The stage object for ``config``, or None when the config switches it off."""
        return self.make(config, out_dir) if self.make else self.stage(config)


def _check_aesthetic(config: ShotScoreConfig) -> None:
    if config.aesthetic.clip_model is not None:
        aesthetic_preflight(config.aesthetic)


def _check_shot_detector(config: ShotSplitConfig) -> None:
    if config.detector != "content":
        check_installed(model_name(config))


def _check_captioner(config: ShotCaptionConfig) -> None:
    if config.model is not None:
        caption_preflight(config)


# Paper order (MoGA, section 3.3). Merge plans the samples before captioning, so every captioned
# shot lands in a sample and each sample gets its global caption from the same loaded model.
REGISTRY: tuple[StageEntry, ...] = (
    StageEntry(ProbeStage, ProbeConfig),
    StageEntry(VideoScoreStage, VideoScoreConfig),
    StageEntry(VideoFilterStage, VideoFilterConfig,
               make=lambda config, _: VideoFilterStage(config, "scores"),
               early=lambda config, _: VideoFilterStage(config, "metadata"),
               early_before="video_score"),
    StageEntry(ShotSplitStage, ShotSplitConfig, preflight=_check_shot_detector),
    StageEntry(ShotScoreStage, ShotScoreConfig,
               actors=lambda config: config.aesthetic.clip_model is not None,
               preflight=_check_aesthetic),
    StageEntry(ShotFilterStage, ShotFilterConfig),
    StageEntry(ShotCropStage, ShotCropConfig),
    StageEntry(ShotMergeStage, ShotMergeConfig),
    StageEntry(ShotCaptionStage, ShotCaptionConfig,
               make=lambda config, _: ShotCaptionStage(config) if config.model else None,
               actors=lambda config: True, preflight=_check_captioner),
    StageEntry(EncodeStage, EncodeConfig,
               make=lambda config, out_dir: EncodeStage(config, out_dir / ".staging")),
)

STAGE_NAMES: tuple[str, ...] = tuple(entry.name for entry in REGISTRY)
