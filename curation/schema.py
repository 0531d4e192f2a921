"""Arrow schemas of the output tables (``OUT/videos``, ``OUT/shots``); the output contract.

Every part file is written with exactly these schemas, whatever each stage left unset, so the
datasets read back as one table.
"""

from __future__ import annotations

import pyarrow as pa

from curation.records import Record

STAGE_NAMES = ("probe", "video_score", "video_filter", "shot_split")

VIDEOS = pa.schema([
    ("video_id", pa.string()),
    ("path", pa.string()),
    ("rel_path", pa.string()),
    ("size_bytes", pa.int64()),
    ("status", pa.string()),
    ("reason", pa.string()),
    ("reject_stage", pa.string()),
    ("reject_rule", pa.string()),
    ("reject_value", pa.string()),
    ("duplicate_of", pa.string()),
    # probe
    ("container", pa.string()),
    ("codec", pa.string()),
    ("pix_fmt", pa.string()),
    ("duration_s", pa.float64()),
    ("fps", pa.float64()),
    ("fps_variable", pa.bool_()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("rotation", pa.int32()),
    ("num_frames", pa.int64()),
    ("audio_streams", pa.int32()),
    ("bitrate", pa.int64()),
    # video score
    ("decoder", pa.string()),
    ("vs_frames", pa.int32()),
    ("vs_clarity", pa.float64()),
    ("vs_mean_luma", pa.float64()),
    ("vs_underexposed", pa.float64()),
    ("vs_overexposed", pa.float64()),
    ("border_x", pa.int32()),
    ("border_y", pa.int32()),
    ("border_w", pa.int32()),
    ("border_h", pa.int32()),
    ("border_fraction", pa.float64()),
    # shot split
    ("frames_decoded", pa.int64()),
    ("num_shots", pa.int32()),
    *[(f"seconds_{name}", pa.float64()) for name in STAGE_NAMES],
])

SHOTS = pa.schema([
    ("video_id", pa.string()),
    ("shot_index", pa.int32()),
    ("start_frame", pa.int64()),
    ("end_frame", pa.int64()),
    ("start_time", pa.float64()),
    ("end_time", pa.float64()),
    ("boundary_in", pa.string()),
    ("boundary_out", pa.string()),
    ("transition_in_start", pa.int64()),
    ("transition_in_end", pa.int64()),
    ("transition_out_start", pa.int64()),
    ("transition_out_end", pa.int64()),
])


def to_table(rows: list[Record], schema: pa.Schema) -> pa.Table:
    """Rows as a table of ``schema``; missing columns are null, extra keys are ignored."""
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.table(columns, schema=schema)


def shot_rows(record: Record) -> list[Record]:
    """The ``shots`` of a finished video record as rows of :data:`SHOTS`."""
    return [dict(shot, video_id=record["video_id"]) for shot in record.get("shots") or []]
