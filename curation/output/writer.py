"""Crash-safe output: atomic shard and part files, a commit order, and resume.

A batch of finished videos is committed in this order: their samples' shards
(``clips/clips-N.tar``), then ``clips_index/part-N.parquet``, ``shots/part-N.parquet`` and last
``videos/part-N.parquet``, the commit record. Every file is written to a temp name, fsynced and
renamed, so readers never see half a file. On resume, index and shots parts without their videos
part are deleted, shards no committed index part refers to are deleted, the staging folder of
encoded-but-uncommitted samples is cleared, and the video ids already in ``videos`` are skipped.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from common.atomic import atomic_write_bytes
from curation.output.names import utf8_text
from curation.output.schema import (
    CLIPS_INDEX_TABLE,
    SHOTS_TABLE,
    VIDEOS_TABLE,
    clip_metadata,
    shot_rows,
    to_table,
)
from curation.output.shards import ShardWriter
from curation.rules import CommitRule
from stages.records import Record, fail

log = logging.getLogger(__name__)
_PART = re.compile(r"part-(\d+)\.parquet$")
_SHARD = re.compile(r"clips-(\d+)\.tar$")


_ROW_ERRORS = (pa.ArrowException, TypeError, ValueError, KeyError)


@dataclass
class _Part:
    """One part's rows, built once: each sample's metadata and mp4, and the three tables (the
    index's ``shard`` and ``key`` are filled in once the shards are written)."""

    samples: list[tuple[dict, Path]]
    index: pa.Table
    shots: pa.Table
    videos: pa.Table


def _part(records: list[Record]) -> _Part:
    """The rows of ``records`` as a part; raises on a row the tables cannot hold."""
    samples = [(record, sample) for record in records if record["status"] == "accepted"
               for sample in record.get("samples") or []]
    metadata = [clip_metadata(record, sample) for record, sample in samples]
    index = [dict(meta, shard="", key="", mp4_bytes=sample["mp4_bytes"])
             for meta, (_, sample) in zip(metadata, samples, strict=True)]
    return _Part([(meta, Path(sample["mp4_path"]))
                  for meta, (_, sample) in zip(metadata, samples, strict=True)],
                 to_table(index, CLIPS_INDEX_TABLE),
                 to_table([row for record in records for row in shot_rows(record)], SHOTS_TABLE),
                 to_table(records, VIDEOS_TABLE))


def _writable_part(records: list[Record]) -> tuple[list[Record], _Part]:
    """``records`` and their part, with each record whose rows the tables cannot hold replaced
    by a ``failed`` row saying why, so that one odd record never stops the commit of the
    others."""
    try:
        return records, _part(records)
    except _ROW_ERRORS as err:
        log.warning("a batch of %d videos has an unwritable row (%s); checking each",
                    len(records), err)
    checked = []
    for record in records:
        try:
            _part([record])
            checked.append(record)
        except _ROW_ERRORS as err:
            checked.append(_unwritable(record, err))
    return checked, _part(checked)


def _unwritable(record: Record, err: Exception) -> Record:
    """The ``failed`` row of a record whose columns the tables cannot hold."""
    keep = ("video_id", "path", "rel_path", "path_bytes", "size_bytes")
    failed = {key: record.get(key) for key in keep}
    fail(failed, "commit", CommitRule.UNWRITABLE_ROW, f"{type(err).__name__}: {err}")
    log.error("%s: %s", utf8_text(str(record.get("path"))), failed["reason"])
    return failed


class PartWriter:
    """Writes batches of finished video records into the output folder."""

    def __init__(self, out_dir: Path, samples_per_shard: int = 1000,
                 max_shard_bytes: int = 1 << 30) -> None:
        self.videos_dir = out_dir / "videos"
        self.shots_dir = out_dir / "shots"
        self.index_dir = out_dir / "clips_index"
        self.staging_dir = out_dir / ".staging"
        for directory in (self.videos_dir, self.shots_dir, self.index_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._clean_uncommitted()
        numbers = [int(m.group(1)) for p in self.videos_dir.iterdir() if (m := _PART.match(p.name))]
        self._next = max(numbers, default=-1) + 1
        shards = [int(m.group(1)) for name in self._referenced_shards()
                  if (m := _SHARD.match(name))]
        self.shards = ShardWriter(out_dir / "clips", max(shards, default=-1) + 1,
                                  samples_per_shard, max_shard_bytes)

    def done_ids(self) -> set[str]:
        """``video_id`` of every video already committed."""
        ids: set[str] = set()
        for part in sorted(self.videos_dir.glob("part-*.parquet")):
            ids.update(pq.read_table(part, columns=["video_id"]).column("video_id").to_pylist())
        return ids

    def write(self, records: list[Record]) -> None:
        """Commit ``records`` (finished videos, their shots and encoded samples) as one part."""
        if not records:
            return
        records, part = _writable_part(records)
        name = f"part-{self._next:06d}.parquet"
        placed = self.shards.write(part.samples)
        index = part.index
        for position, column in enumerate(("shard", "key")):
            at = index.schema.get_field_index(column)
            index = index.set_column(at, index.schema.field(at),
                                     pa.array([place[position] for place in placed], pa.string()))
        self._write_table(self.index_dir / name, index)
        self._write_table(self.shots_dir / name, part.shots)
        self._write_table(self.videos_dir / name, part.videos)
        self._next += 1
        for record in records:
            shutil.rmtree(self.staging_dir / record["video_id"], ignore_errors=True)

    def finish(self) -> None:
        """Remove the staging folder once every encoded sample is committed."""
        shutil.rmtree(self.staging_dir, ignore_errors=True)

    def _write_table(self, path: Path, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(path, sink.getvalue().to_pybytes())

    def _referenced_shards(self) -> set[str]:
        names: set[str] = set()
        for part in self.index_dir.glob("part-*.parquet"):
            names.update(pq.read_table(part, columns=["shard"]).column("shard").to_pylist())
        return names

    def _clean_uncommitted(self) -> None:
        clips_dir = self.index_dir.parent / "clips"
        for directory in (self.videos_dir, self.shots_dir, self.index_dir, clips_dir):
            for tmp in directory.glob(".*.tmp"):
                tmp.unlink()
        committed = {p.name for p in self.videos_dir.glob("part-*.parquet")}
        for directory in (self.shots_dir, self.index_dir):
            for part in directory.glob("part-*.parquet"):
                if part.name not in committed:
                    part.unlink()
        referenced = self._referenced_shards()
        for shard in clips_dir.glob("clips-*.tar"):
            if shard.name not in referenced:
                shard.unlink()
        shutil.rmtree(self.staging_dir, ignore_errors=True)
