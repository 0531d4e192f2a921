"""Rules the runner itself applies, beside the stages' own (each stage's ``rules`` enum, listed by
:data:`stages.registry.REGISTRY`, and :class:`stages.records.StageRule` for any stage call).

A row's ``reject_stage`` is then ``discover``, ``runner`` or ``commit``.
"""

from __future__ import annotations

from enum import StrEnum


class DiscoverRule(StrEnum):
    """Why discovery fails or sets aside a file before any stage sees it."""

    UNREADABLE = "unreadable"  # it cannot be opened or is not a regular file
    DUPLICATE = "duplicate"  # byte-identical to another discovered file
    UNLISTABLE_FOLDER = "unlistable_folder"


class RunnerRule(StrEnum):
    """Why the runner fails a file outside any one stage call."""

    CHANGED_DURING_RUN = "changed_during_run"
    WORKER_LOST = "worker_lost"  # missing at the end of the run, with no watchdog record


class CommitRule(StrEnum):
    """Why the writer fails a finished video."""

    UNWRITABLE_ROW = "unwritable_row"  # a value the output tables cannot hold
