"""Arrow schemas of the output tables (``OUT/videos``, ``OUT/shots``, ``OUT/clips_index``) and
the per-sample metadata of the WebDataset shards; the output contract.

Every part file is written with exactly these schemas, whatever each stage left unset, so the
datasets read back as one table.
"""

from __future__ import annotations

import pyarrow as pa

from curation.output.names import utf8_values
from stages.records import Record

STAGE_NAMES = ("probe", "video_score", "video_filter", "shot_split", "shot_score", "shot_filter",
               "shot_crop", "shot_merge", "shot_caption", "encode")

VQA_SCORES = ("clarity", "mean_luma", "underexposed", "overexposed", "noise", "contrast",
              "colourfulness", "motion", "aesthetic")

VIDEOS = pa.schema([
    ("video_id", pa.string()),
    ("path", pa.string()),
    ("rel_path", pa.string()),
    ("path_bytes", pa.binary()),
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
    # shot-level stages
    ("ocr_engine", pa.string()),
    ("aesthetic_model", pa.string()),
    ("num_samples", pa.int32()),
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
    # shot score (VQA) and filter
    *[(f"vqa_{name}", pa.float64()) for name in VQA_SCORES],
    ("vqa_frozen", pa.bool_()),
    ("kept", pa.bool_()),
    ("reason", pa.string()),
    ("drop_stage", pa.string()),
    ("drop_rule", pa.string()),
    ("drop_value", pa.string()),
    # OCR crop
    ("ocr_boxes", pa.list_(pa.list_(pa.int32()))),
    ("ocr_texts", pa.list_(pa.string())),
    ("ocr_seen", pa.list_(pa.int32())),
    ("ocr_frames", pa.int32()),
    ("crop_x", pa.int32()),
    ("crop_y", pa.int32()),
    ("crop_w", pa.int32()),
    ("crop_h", pa.int32()),
    ("crop_kept_fraction", pa.float64()),
    # merge and caption
    ("sample_index", pa.int32()),
    ("caption", pa.string()),
    ("caption_model", pa.string()),
    ("caption_prompt_version", pa.string()),
])

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
    ("shots", pa.list_(CLIP_SHOT)),
    ("shard", pa.string()),
    ("key", pa.string()),
    ("mp4_bytes", pa.int64()),
])


def to_table(rows: list[Record], schema: pa.Schema) -> pa.Table:
    """Rows as a table of ``schema``; missing columns are null, extra keys are ignored, and
    text is made valid UTF-8 (:func:`utf8_text`)."""
    columns = {name: [utf8_values(row.get(name)) for row in rows] for name in schema.names}
    return pa.table(columns, schema=schema)


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
        "shots": rows,
    })
