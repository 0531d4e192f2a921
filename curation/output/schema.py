"""Arrow schemas of the output tables (``OUT/videos``, ``OUT/shots``, ``OUT/clips_index``) and
the per-sample metadata of the WebDataset shards; the output contract.

``videos`` and ``shots`` are assembled from declarations: discovery's columns here, the status
columns of :mod:`stages.records`, and each registered stage's ``columns`` and ``shot_columns`` in
pipeline order (:data:`stages.registry.REGISTRY`), then one ``seconds_<stage>`` per stage. Every
part file is written with exactly these schemas, whatever each stage left unset, so the datasets
read back as one table; a key no declaration names makes :func:`to_table` raise, so a mistyped
column cannot vanish.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from curation.output.names import utf8_values
from stages.records import STATUS_COLUMNS, Column, Record
from stages.registry import REGISTRY, STAGE_NAMES
from stages.shot_score.stage import VQA_SCORES

# Written at discovery (curation.discover): which file a row is about.
DISCOVERY_COLUMNS = (
    Column("video_id", pa.string(), "16 hex digits from the size and three samples of the bytes"),
    Column("path", pa.string(), "absolute path as UTF-8 text (other bytes as \\xNN escapes)"),
    Column("rel_path", pa.string(), "path under the input folder, escaped the same way"),
    Column("path_bytes", pa.binary(), "the path's exact bytes"),
    Column("size_bytes", pa.int64(), "file size at discovery"),
    Column("mtime_ns", None, "modification time at discovery, checked again at the end"),
)
DUPLICATE_COLUMNS = (
    Column("duplicate_of", pa.string(), "video_id of the byte-identical file kept instead"),
)
TIMING_COLUMNS = tuple(Column(f"seconds_{name}", pa.float64(), f"seconds {name} took")
                       for name in STAGE_NAMES)


class UndeclaredColumnError(ValueError):
    """A row holds a key that no stage declared."""


class Table:
    """One output table: its Arrow schema and the keys its rows may carry without a column."""

    def __init__(self, columns: Iterable[Column]) -> None:
        columns = list(columns)
        names = [column.name for column in columns]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"columns declared twice: {repeated}")
        self.schema = pa.schema([(c.name, c.arrow) for c in columns if c.arrow is not None])
        self.carried = frozenset(c.name for c in columns if c.arrow is None)
        self.meanings = {column.name: column.meaning for column in columns}


VIDEOS_TABLE = Table([
    *DISCOVERY_COLUMNS, *STATUS_COLUMNS, *DUPLICATE_COLUMNS,
    *(column for entry in REGISTRY for column in entry.stage.columns),
    *TIMING_COLUMNS,
])
SHOTS_TABLE = Table([
    Column("video_id", pa.string(), "the video the shot is in"),
    *(column for entry in REGISTRY for column in entry.stage.shot_columns),
])
VIDEOS = VIDEOS_TABLE.schema
SHOTS = SHOTS_TABLE.schema

CLIP_SHOT = pa.struct([
    ("index", pa.int32()),
    ("source_shot_index", pa.int32()),
    ("start_frame", pa.int64()),
    ("end_frame", pa.int64()),
    ("source_start_frame", pa.int64()),
    ("source_end_frame", pa.int64()),
    ("boundary_in", pa.string()),
    ("caption", pa.string()),
    ("scores", pa.struct([(f"vqa_{name}", pa.float64()) for name in VQA_SCORES])),
])

CLIPS_INDEX = pa.schema([
    ("sample_id", pa.string()),
    ("video_id", pa.string()),
    ("source_path", pa.string()),
    ("source_rel_path", pa.string()),
    ("source_start_frame", pa.int64()),
    ("source_end_frame", pa.int64()),
    ("start_time", pa.float64()),
    ("end_time", pa.float64()),
    ("crop", pa.list_(pa.int32())),
    ("crop_kept_fraction", pa.float64()),
    ("fps", pa.float64()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("num_frames", pa.int64()),
    ("caption", pa.string()),
    ("caption_model", pa.string()),
    ("caption_prompt_version", pa.string()),
    ("split_shot", pa.bool_()),
    ("rotation", pa.int32()),
    ("tone_mapped_from", pa.string()),
    ("encoder", pa.string()),
    ("shots", pa.list_(CLIP_SHOT)),
    ("shard", pa.string()),
    ("key", pa.string()),
    ("mp4_bytes", pa.int64()),
])


CLIPS_INDEX_TABLE = Table(Column(field.name, field.type, "") for field in CLIPS_INDEX)


def to_table(rows: list[Record], table: Table) -> pa.Table:
    """Rows as a table of ``table``'s schema: missing columns are null, carried keys are left
    out and text is made valid UTF-8 (:func:`utf8_values`); any other key raises
    :class:`UndeclaredColumnError`."""
    allowed = set(table.schema.names) | table.carried
    for row in rows:
        undeclared = row.keys() - allowed
        if undeclared:
            raise UndeclaredColumnError(
                f"keys {sorted(undeclared)} are declared by no stage (columns or shot_columns)")
    columns = {name: [utf8_values(row.get(name)) for row in rows] for name in table.schema.names}
    return pa.table(columns, schema=table.schema)


def shot_rows(record: Record) -> list[Record]:
    """The ``shots`` of a finished video record as rows of :data:`SHOTS`."""
    return [dict(shot, video_id=record["video_id"]) for shot in record.get("shots") or []]


def clip_metadata(record: Record, sample: dict) -> dict:
    """The ``KEY.json`` of one sample (also its ``clips_index`` row, less shard and key)."""
    shots = {shot["shot_index"]: shot for shot in record.get("shots") or []}
    rows = []
    for position, (index, (src_start, src_end), (start, end)) in enumerate(zip(
            sample["shot_indices"], sample["shot_spans"], sample["shot_frames"], strict=True)):
        shot = shots[index]
        rows.append({
            "index": position, "source_shot_index": index,
            "start_frame": start, "end_frame": end,
            "source_start_frame": src_start, "source_end_frame": src_end,
            "boundary_in": "sample_start" if position == 0 else shot.get("boundary_in"),
            "caption": (sample.get("shot_captions") or [None] * (position + 1))[position],
            "scores": {f"vqa_{name}": shot.get(f"vqa_{name}") for name in VQA_SCORES},
        })
    return utf8_values({
        "sample_id": sample["sample_id"],
        "video_id": record["video_id"],
        "source_path": record["path"],
        "source_rel_path": record.get("rel_path"),
        "source_start_frame": sample["start_frame"],
        "source_end_frame": sample["end_frame"],
        "start_time": sample["start_time"],
        "end_time": sample["end_time"],
        "crop": [sample["crop_x"], sample["crop_y"], sample["crop_w"], sample["crop_h"]],
        "crop_kept_fraction": sample["crop_kept_fraction"],
        "fps": sample["fps"],
        "width": sample["width"],
        "height": sample["height"],
        "num_frames": sample["num_frames"],
        "caption": sample.get("caption"),
        "caption_model": sample.get("caption_model"),
        "caption_prompt_version": sample.get("caption_prompt_version"),
        "split_shot": sample["split_shot"],
        "rotation": sample.get("rotation", 0),
        "tone_mapped_from": sample.get("tone_mapped_from"),
        "encoder": sample.get("encoder"),
        "shots": rows,
    })
