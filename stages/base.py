"""The stage contract: what the runner needs from a stage, and the bases stages build on.

Stages are plain classes over video records with ``name``, ``setup()`` and ``process(record)``;
they know nothing of Ray. The runner in :mod:`curation.runner` maps them. A pipeline stage also
declares what it writes and why it may say no: ``columns`` (keys of the video record),
``shot_columns`` (keys of each shot) and ``rules`` (a ``StrEnum``); :mod:`stages.registry` lists
the pipeline's stages and derives the config sections, the plan and the output tables from them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel

from stages.records import Column, Record, fail

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class Stage(Protocol):
    """What the runner needs from a stage."""

    name: ClassVar[str]

    def setup(self) -> None:
        """Load whatever the stage needs, once per worker process."""

    def process(self, record: Record) -> Record:
        """Add this stage's columns to ``record``, or reject/fail it."""


class NoRules(StrEnum):
    """The rules of a stage that never rejects, fails or drops by a rule of its own."""


class ConfiguredStage(Generic[ConfigT]):
    """Base for stages that hold their validated config and need no per-worker setup."""

    name: ClassVar[str]
    columns: ClassVar[tuple[Column, ...]] = ()
    shot_columns: ClassVar[tuple[Column, ...]] = ()
    rules: ClassVar[type[StrEnum]] = NoRules

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    def setup(self) -> None:
        """Nothing to load by default; stages with models override this."""


@dataclass(frozen=True)
class ChunkFailure:
    """What :meth:`ChunkedStage.process_chunk` returns when its piece cannot be done; the video
    fails with ``rule`` and ``detail``."""

    rule: StrEnum
    detail: str


ChunkMapper = Callable[["ChunkedStage", Record, Sequence[Any]], list[Any]]


def map_in_order(stage: ChunkedStage, record: Record, chunks: Sequence[Any]) -> list[Any]:
    """Run the chunks one after another in this process."""
    return [stage.process_chunk(record, chunk) for chunk in chunks]


class ChunkedStage(ConfiguredStage[ConfigT]):
    """A stage whose work on one video splits into independent pieces (groups of shots or of
    samples, spans of time), so a long film's work spreads over many workers.

    :meth:`chunks` plans the pieces from the record; :meth:`process_chunk` does one piece and
    returns its result without touching the record (it may run in another process);
    :meth:`join` writes the results, in chunk order, into the record. The runner may map the
    pieces of one video in parallel; :meth:`process` maps them in order, with the same result.
    """

    def chunks(self, record: Record) -> list[Any]:
        """The pieces of work of ``record``, small and picklable; [] when there is nothing to do."""
        raise NotImplementedError

    def process_chunk(self, record: Record, chunk: Any) -> Any:
        """Do one piece; return its result or a :class:`ChunkFailure`."""
        raise NotImplementedError

    def join(self, record: Record, results: list[Any]) -> Record:
        """Write the pieces' results (in the order of :meth:`chunks`) into ``record``."""
        raise NotImplementedError

    def process(self, record: Record) -> Record:
        """All pieces in order, in this process."""
        return self.run_chunks(record, map_in_order)

    def run_chunks(self, record: Record, mapper: ChunkMapper) -> Record:
        """Plan the pieces, map them with ``mapper`` (a single piece runs here), join them."""
        chunks = self.chunks(record)
        results = mapper(self, record, chunks) if len(chunks) > 1 else map_in_order(
            self, record, chunks)
        failure = next((r for r in results if isinstance(r, ChunkFailure)), None)
        if failure is not None:
            return fail(record, self.name, failure.rule, failure.detail)
        return self.join(record, results)


def consecutive_groups(spans: Sequence[tuple[int, int]], max_frames: int | None) -> list[list[int]]:
    """Indices of ``spans`` (source ``[start, end)`` frames, in order) cut into consecutive groups
    covering at most ``max_frames`` source frames each (a longer single span is a group of its
    own); one group of everything when ``max_frames`` is None."""
    groups: list[list[int]] = []
    first_start = 0
    for i, (start, end) in enumerate(spans):
        if groups and (max_frames is None or end - first_start <= max_frames):
            groups[-1].append(i)
        else:
            groups.append([i])
            first_start = start
    return groups
