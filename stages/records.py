"""The video record that flows through the stages, and how a stage rejects or fails it.

A record is a plain ``dict`` so Ray Data can carry it as an Arrow row. Its columns are listed in
:mod:`curation.output.schema`; this module holds the status vocabulary and the helpers that set it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

Record = dict[str, Any]


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


def reject(record: Record, stage: str, rule: str, value: Any, detail: str) -> Record:
    """Mark ``record`` rejected by ``stage``'s ``rule``; ``value`` is what broke the rule."""
    return _finish(record, Status.REJECTED, stage, rule, value, detail)


def fail(record: Record, stage: str, rule: str, detail: str) -> Record:
    """Mark ``record`` failed in ``stage``; ``rule`` is a short error code."""
    return _finish(record, Status.FAILED, stage, rule, None, detail)


def _finish(
    record: Record, status: Status, stage: str, rule: str, value: Any, detail: str
) -> Record:
    record["status"] = status.value
    record["reject_stage"] = stage
    record["reject_rule"] = rule
    record["reject_value"] = None if value is None else str(value)
    record["reason"] = f"{stage}.{rule}: {detail}"
    return record


def live_shots(record: Record) -> list[dict[str, Any]]:
    """The shots of ``record`` that no shot-level stage has dropped yet."""
    return [shot for shot in record.get("shots") or [] if shot.get("kept", True)]


def drop_shot(shot: dict[str, Any], stage: str, rule: str, value: Any, detail: str) -> None:
    """Mark ``shot`` dropped by ``stage``'s ``rule``; it keeps its row with the reason."""
    shot["kept"] = False
    shot["drop_stage"] = stage
    shot["drop_rule"] = rule
    shot["drop_value"] = None if value is None else str(value)
    shot["reason"] = f"{stage}.{rule}: {detail}"
