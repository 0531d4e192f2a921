"""A full output disk stops the run cleanly instead of committing damage.

When a commit hits ENOSPC (or a quota, EDQUOT), the half-written temp file and every file of the
uncommitted part are removed (the same clean-up a resumed run does), and the run ends with an
error naming the file and the cause. A video whose encode failed because the staging folder's
disk was full is not committed as ``failed`` either: the run stops, and a rerun on a disk with
room encodes it again. Nothing partial stays visible, so the resumed run's output equals an
uninterrupted run's.
"""

from __future__ import annotations

import errno
from pathlib import Path

from curation.output.writer import PartWriter
from stages.records import Record, Status

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")


class DiskFullError(RuntimeError):
    """The output disk filled up; nothing partial was left behind and a rerun resumes."""


def commit(writer: PartWriter, records: list[Record]) -> None:
    """``writer.write(records)``, turning a full disk into :class:`DiskFullError`."""
    out_dir = writer.videos_dir.parent
    try:
        writer.write(records)
    except OSError as err:
        if err.errno not in _NO_SPACE:
            raise
        target = err.filename or out_dir  # common.atomic.atomic_file names its target
        PartWriter(out_dir)  # a new writer removes temp files and every uncommitted part
        raise DiskFullError(
            f"{errno.errorcode[err.errno]} ({err.strerror}) while writing {target}; the "
            "uncommitted part was removed; free space and rerun to resume") from None


def check_record(record: Record, out_dir: Path) -> None:
    """Stop before committing a video that failed only because the output disk is full."""
    reason = record.get("reason") or ""
    if record["status"] == Status.FAILED.value and any(t in reason for t in _NO_SPACE_TEXT):
        PartWriter(out_dir)
        raise DiskFullError(
            f"ENOSPC (No space left on device) in {out_dir / '.staging'} while processing "
            f"{record['rel_path']} ({reason}); free space and rerun to resume")

