"""The curation stages, one module each, and the order they run in (MoGA paper, section 3.3).

Stages are plain classes over video records with ``name``, ``setup()`` and ``process(record)``;
they know nothing of Ray. The runner in :mod:`curation.runner` maps them.
"""

from __future__ import annotations

from typing import ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel

from curation.records import Record

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class Stage(Protocol):
    """What the runner needs from a stage."""

    name: ClassVar[str]

    def setup(self) -> None:
        """Load whatever the stage needs, once per worker process."""

    def process(self, record: Record) -> Record:
        """Add this stage's columns to ``record``, or reject/fail it."""


class ConfiguredStage(Generic[ConfigT]):
    """Base for stages that hold their validated config and need no per-worker setup."""

    name: ClassVar[str]

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    def setup(self) -> None:
        """Nothing to load by default; stages with models override this."""
