"""Crash-safe Parquet output: atomic part files, a commit order, and resume.

A batch of finished videos is written as ``shots/part-N.parquet`` first and then
``videos/part-N.parquet``; the videos part is the commit record. Every file is written to a temp
name beside its target, fsynced and renamed, so readers never see half a file. On resume, shots
parts without their videos part (a crash between the two renames) are deleted, and the video ids
already in ``videos`` are skipped.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation.records import Record
from curation.schema import SHOTS, VIDEOS, shot_rows, to_table

_PART = re.compile(r"part-(\d+)\.parquet$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temp file and a rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class PartWriter:
    """Writes batches of finished video records into ``OUT/videos`` and ``OUT/shots``."""

    def __init__(self, out_dir: Path) -> None:
        self.videos_dir = out_dir / "videos"
        self.shots_dir = out_dir / "shots"
        self.videos_dir.mkdir(parents=True, exist_ok=True)
        self.shots_dir.mkdir(parents=True, exist_ok=True)
        self._clean_uncommitted()
        numbers = [int(m.group(1)) for p in self.videos_dir.iterdir() if (m := _PART.match(p.name))]
        self._next = max(numbers, default=-1) + 1

    def done_ids(self) -> set[str]:
        """``video_id`` of every video already committed."""
        ids: set[str] = set()
        for part in sorted(self.videos_dir.glob("part-*.parquet")):
            ids.update(pq.read_table(part, columns=["video_id"]).column("video_id").to_pylist())
        return ids

    def write(self, records: list[Record]) -> None:
        """Commit ``records`` (finished videos, with their ``shots``) as one part."""
        if not records:
            return
        name = f"part-{self._next:06d}.parquet"
        shots = [row for record in records for row in shot_rows(record)]
        self._write_table(self.shots_dir / name, to_table(shots, SHOTS))
        self._write_table(self.videos_dir / name, to_table(records, VIDEOS))
        self._next += 1

    def _write_table(self, path: Path, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(path, sink.getvalue().to_pybytes())

    def _clean_uncommitted(self) -> None:
        for directory in (self.videos_dir, self.shots_dir):
            for tmp in directory.glob(".*.tmp"):
                tmp.unlink()
        committed = {p.name for p in self.videos_dir.glob("part-*.parquet")}
        for part in self.shots_dir.glob("part-*.parquet"):
            if part.name not in committed:
                part.unlink()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
