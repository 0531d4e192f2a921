"""The video record that flows through the stages, the columns a stage declares, and how a stage
rejects or fails a video or drops a shot.

A record is a plain ``dict`` so Ray Data can carry it as an Arrow row. Every key a stage writes is
a declared :class:`Column` (the stage's ``columns`` and ``shot_columns``); the output tables are
assembled from those declarations (:mod:`curation.output.schema`), and writing an undeclared key
raises there. A rule that rejects, fails or drops is a member of a ``StrEnum`` (the stage's
``rules``, or :class:`StageRule` for what the runner decides), never a free string.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyarrow as pa

Record = dict[str, Any]


@dataclass(frozen=True)
class Column:
    """A key a stage writes into the record (or into each shot): its Arrow type and what it
    means. ``arrow`` None: carried to a later stage or into another table, never a column."""

    name: str
    arrow: pa.DataType | None
    meaning: str


class StageRule(StrEnum):
    """How any stage call can end badly; decided by the runner, not by the stage."""

    ERROR = "error"  # the stage raised
    TIMEOUT = "timeout"  # the call ran past the stage's limit
    WORKER_LOST = "worker_lost"  # the worker died, again and again, on this file


# Written by reject() and fail() below, and by discovery; see curation.output.schema.
STATUS_COLUMNS = (
    Column("status", pa.string(), "accepted, rejected, failed or duplicate"),
    Column("reason", pa.string(), "'stage.rule: detail' for a video that was not accepted"),
    Column("reject_stage", pa.string(), "the stage that rejected or failed the video"),
    Column("reject_rule", pa.string(), "the rule that rejected or failed it"),
    Column("reject_value", pa.string(), "the value that broke the rule, as text"),
)

# Written into each shot by drop_shot() below, whichever shot-level stage drops it.
SHOT_STATUS_COLUMNS = (
    Column("kept", pa.bool_(), "false once a shot-level stage dropped the shot"),
    Column("reason", pa.string(), "'stage.rule: detail' of a dropped shot"),
    Column("drop_stage", pa.string(), "the stage that dropped the shot"),
    Column("drop_rule", pa.string(), "the rule that dropped it"),
    Column("drop_value", pa.string(), "the value that broke the rule, as text"),
)


class Status(StrEnum):
    """Final state of one discovered file in ``OUT/videos``."""

    PENDING = "pending"  # still moving through the stages; never written
    ACCEPTED = "accepted"
    REJECTED = "rejected"  # a rule said no (e.g. too short, audio only)
    FAILED = "failed"  # the file could not be read or a stage raised
    DUPLICATE = "duplicate"  # byte-identical to another discovered file


def is_live(record: Record) -> bool:
    """True while no stage has rejected or failed the record."""
    return record["status"] == Status.PENDING.value


def reject(record: Record, stage: str, rule: StrEnum, value: Any, detail: str) -> Record:
    """Mark ``record`` rejected by ``stage``'s ``rule``; ``value`` is what broke the rule."""
    return _finish(record, Status.REJECTED, stage, rule, value, detail)


def fail(record: Record, stage: str, rule: StrEnum, detail: str) -> Record:
    """Mark ``record`` failed in ``stage``; ``rule`` is a short error code."""
    return _finish(record, Status.FAILED, stage, rule, None, detail)


def _finish(
    record: Record, status: Status, stage: str, rule: StrEnum, value: Any, detail: str
) -> Record:
    name = declared_rule(rule)
    record["status"] = status.value
    record["reject_stage"] = stage
    record["reject_rule"] = name
    record["reject_value"] = None if value is None else str(value)
    record["reason"] = f"{stage}.{name}: {detail}"
    return record


def live_shots(record: Record) -> list[dict[str, Any]]:
    """The shots of ``record`` that no shot-level stage has dropped yet."""
    return [shot for shot in record.get("shots") or [] if shot.get("kept", True)]


def drop_shot(shot: dict[str, Any], stage: str, rule: StrEnum, value: Any, detail: str) -> None:
    """Mark ``shot`` dropped by ``stage``'s ``rule``; it keeps its row with the reason."""
    name = declared_rule(rule)
    shot["kept"] = False
    shot["drop_stage"] = stage
    shot["drop_rule"] = name
    shot["drop_value"] = None if value is None else str(value)
    shot["reason"] = f"{stage}.{name}: {detail}"


def declared_rule(rule: StrEnum) -> str:
    """``rule``'s text; raises TypeError for a plain string, so every rule is declared."""
    if not isinstance(rule, StrEnum):
        raise TypeError(f"rule {rule!r} is a {type(rule).__name__}, not a declared rule (StrEnum)")
    return rule.value
