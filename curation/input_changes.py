"""Inputs that change under a running pipeline: a file rewritten, replaced or deleted after
discovery stamped it (size and mtime, taken before its fingerprint was read) would give output
that matches neither version, so it is failed with rule ``changed_during_run`` and its shots and
samples are not committed. The next run sees the new
content under a new ``video_id``."""

from __future__ import annotations

import os

from curation.rules import RunnerRule
from stages.records import Record, fail

Stamp = tuple[int, int] | None


def stamp(path: str) -> Stamp:
    """(size, mtime in ns) of ``path``, None when it is gone."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def unless_changed(record: Record, before: Stamp) -> Record:
    """``record``, or a ``failed`` one when its file is no longer what it was at the start."""
    now = stamp(record["path"])
    if now == before:
        return record
    what = "deleted" if now is None else "changed (size or modification time)"
    record.update(shots=[], samples=[], num_shots=None)
    return fail(record, "runner", RunnerRule.CHANGED_DURING_RUN,
                f"the file was {what} while it was processed; rerun to process it")
