"""``curate validate OUT``: check an output folder against the output contract (README).

Each check returns violations as readable lines that name the file and the problem: every
discovered input has exactly one ``videos`` row, statuses come from the vocabulary, shots tile
each accepted video and their times rise from 0, every shard reads, shard members match
the index, every sample's mp4 decodes to its stated frame count and size, per-shot spans tile
the sample, and no temp file, uncommitted part or staging folder is left behind.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.config import parse_config
from curation.discover import discover
from curation.output.names import utf8_text
from curation.output.schema import CLIPS_INDEX, SHOTS, VIDEOS
from stages.records import Status

Row = dict[str, Any]
STATUSES = {s.value for s in Status} - {Status.PENDING.value}
_TABLES = {"videos": VIDEOS, "shots": SHOTS, "clips_index": CLIPS_INDEX}
_INDEX_ONLY = ("shard", "key", "mp4_bytes")


def validate(out_dir: Path, raw_dir: Path | None = None) -> list[str]:
    """Every violation of the output contract in ``out_dir``; empty when the folder is sound.

    ``raw_dir`` is the input folder to re-discover; by default the one the rows point at."""
    problems = check_leftovers(out_dir)
    tables: dict[str, list[Row]] = {}
    for name, schema in _TABLES.items():
        rows, found = read_parts(out_dir, name, schema)
        tables[name] = rows
        problems += found
    videos, shots, index = tables["videos"], tables["shots"], tables["clips_index"]
    if not videos:
        return problems + ["videos/: no committed part; is this a curate run output?"]
    problems += check_inputs(out_dir, videos, raw_dir)
    problems += check_statuses(videos)
    problems += check_shots(videos, shots)
    problems += check_index(videos, index)
    problems += check_shards(out_dir, index)
    problems += check_summary(out_dir, videos, shots, index)
    return problems


def read_parts(out_dir: Path, name: str, schema: pa.Schema) -> tuple[list[Row], list[str]]:
    """Rows of every part of one table, each tagged with its ``_part``; schema violations."""
    rows: list[Row] = []
    problems: list[str] = []
    for part in sorted((out_dir / name).glob("part-*.parquet")):
        label = f"{name}/{part.name}"
        try:
            table = pq.read_table(part)
        except (OSError, pa.ArrowException) as err:
            problems.append(f"{label}: unreadable Parquet: {err}")
            continue
        if _fields(table.schema) != _fields(schema):  # by name: column order is no contract
            missing = sorted(set(schema.names) - set(table.schema.names))
            other = sorted(f.name for f in table.schema if f not in schema)
            problems.append(f"{label}: schema differs from the contract (missing {missing}, "
                            f"extra or retyped {other})")
            continue
        rows += [dict(row, _part=label) for row in table.to_pylist()]
    return rows, problems


def _fields(schema: pa.Schema) -> dict[str, pa.Field]:
    return {field.name: field.remove_metadata() for field in schema}


def check_leftovers(out_dir: Path) -> list[str]:
    """Temp files, a staging folder, and shots/index parts without their videos part."""
    problems = []
    if (out_dir / ".staging").exists():
        problems.append(".staging/: staging folder left behind (an interrupted run?)")
    for directory, _, files in os.walk(out_dir):
        for name in sorted(files):
            if name.endswith(".tmp") or ".tmp." in name:
                path = Path(directory, name).relative_to(out_dir)
                problems.append(f"{path}: temp file left behind")
    committed = {p.name for p in (out_dir / "videos").glob("part-*.parquet")}
    for name in ("shots", "clips_index"):
        for part in sorted((out_dir / name).glob("part-*.parquet")):
            if part.name not in committed:
                problems.append(f"{name}/{part.name}: uncommitted part (no videos/{part.name})")
    return problems


def check_inputs(out_dir: Path, videos: list[Row], raw_dir: Path | None) -> list[str]:
    """Every file discovery finds under the input folder has exactly one row, and no more."""
    problems = [f"videos: video_id {vid} has {n} rows"
                for vid, n in Counter(v["video_id"] for v in videos).items() if n > 1]
    roots = {_input_root(v) for v in videos} - {None}
    if raw_dir is None and len(roots) != 1:
        return problems + [f"videos: rows point at {len(roots)} input folders; pass --raw"]
    raw_dir = raw_dir or Path(os.fsdecode(roots.pop()))
    if not raw_dir.is_dir():
        return problems + [f"{raw_dir}: input folder is gone; pass --raw to check the inputs"]
    if not (out_dir / "run.json").is_file():
        return problems + ["run.json: missing, so the discovery settings are unknown"]
    config = parse_config(json.loads((out_dir / "run.json").read_text())["config"], "run.json")
    found = {r["video_id"]: utf8_text(r["rel_path"]) for r in discover(raw_dir, config.input)}
    rows = {v["video_id"]: v for v in videos}
    problems += [f"videos: input {rel} (video_id {vid}) has no row"
                 for vid, rel in found.items() if vid not in rows]
    problems += [f"{row['_part']}: {row['rel_path']} (video_id {vid}) is not an input under "
                 f"{raw_dir} (changed since the run?)"
                 for vid, row in rows.items() if vid not in found]
    return problems


def _input_root(video: Row) -> bytes | None:
    """The input folder a ``videos`` row's file was found under, as bytes (exact for any name)."""
    path = video.get("path_bytes") or os.fsencode(video["path"])
    if video["rel_path"] == ".":  # the input folder itself could not be listed
        return path + b"/"
    parts = path.rsplit(b"/", video["rel_path"].count("/") + 1)  # escaping keeps every "/"
    return parts[0] + b"/" if len(parts) > 1 else None


def check_statuses(videos: list[Row]) -> list[str]:
    """Status vocabulary, and a reason exactly when the video was not accepted."""
    ids = {v["video_id"] for v in videos}
    problems = []
    for v in videos:
        where = f"{v['_part']}: {v['rel_path']}"
        if v["status"] not in STATUSES:
            problems.append(f"{where}: unknown status {v['status']!r}")
        elif v["status"] == "accepted" and v["reason"] is not None:
            problems.append(f"{where}: accepted but has reason {v['reason']!r}")
        elif v["status"] != "accepted" and not (
                v["reason"] or "").startswith(f"{v['reject_stage']}.{v['reject_rule']}:"):
            problems.append(f"{where}: {v['status']} without a 'stage.rule: detail' reason")
        if v["status"] == "duplicate" and v["duplicate_of"] not in ids:
            problems.append(f"{where}: duplicate_of {v['duplicate_of']} has no row")
    return problems


def check_shots(videos: list[Row], shots: list[Row]) -> list[str]:
    """The shots of each accepted video tile [0, frames_decoded); no shots for other videos."""
    by_video: dict[str, list[Row]] = defaultdict(list)
    for shot in shots:
        by_video[shot["video_id"]].append(shot)
    accepted = {v["video_id"]: v for v in videos if v["status"] == "accepted"}
    problems = [f"{rows[0]['_part']}: {len(rows)} shots of video {vid}, which is not accepted"
                for vid, rows in by_video.items() if vid not in accepted]
    for vid, video in accepted.items():
        mine = sorted(by_video.get(vid, []), key=lambda s: s["shot_index"])
        spans = [(s["start_frame"], s["end_frame"]) for s in mine]
        where = f"{mine[0]['_part'] if mine else 'shots'}: video {video['rel_path']} ({vid})"
        if [s["shot_index"] for s in mine] != list(range(len(mine))):
            problems.append(f"{where}: shot_index is not 0..{len(mine) - 1}")
        if len(mine) != video["num_shots"]:
            problems.append(f"{where}: {len(mine)} shot rows, num_shots says {video['num_shots']}")
        problems += [f"{where}: {gap}" for gap in tiling_gaps(spans, 0, video["frames_decoded"])]
        problems += [f"{where}: {p}" for p in shot_time_problems(mine)]
    return problems


def shot_time_problems(shots: list[Row]) -> list[str]:
    """How the times of a video's shots (in order) fail to rise from 0 (the first frame's time).
    The probe's duration is no upper bound: a variable-rate mp4 may state less than its frames
    span."""
    problems = []
    previous = 0.0
    for shot in shots:
        start, end = shot["start_time"], shot["end_time"]
        if start is None or end is None or not previous <= start < end:
            problems.append(f"shot {shot['shot_index']}: times [{start}, {end}) do not rise "
                            f"from {previous}")
            continue
        previous = end
    return problems


def tiling_gaps(spans: list[tuple[int, int]], start: int, end: int) -> list[str]:
    """How ``spans`` (in order) fail to tile ``[start, end)`` without gaps or overlaps."""
    if not spans:
        return [f"no spans to tile [{start}, {end})"]
    problems = [f"span [{a}, {b}) is empty" for a, b in spans if b <= a]
    if spans[0][0] != start:
        problems.append(f"first span starts at {spans[0][0]}, not {start}")
    if spans[-1][1] != end:
        problems.append(f"last span ends at {spans[-1][1]}, not {end}")
    for (_, prev_end), (next_start, _) in zip(spans, spans[1:], strict=False):
        if prev_end != next_start:
            kind = "gap" if prev_end < next_start else "overlap"
            problems.append(f"{kind} between frames {prev_end} and {next_start}")
    return problems


def check_index(videos: list[Row], index: list[Row]) -> list[str]:
    """Index keys are unique sample ids of accepted videos; num_samples agrees."""
    accepted = {v["video_id"]: v for v in videos if v["status"] == "accepted"}
    problems = [f"clips_index: key {key} appears {n} times"
                for key, n in Counter(r["key"] for r in index).items() if n > 1]
    for row in index:
        if row["key"] != row["sample_id"]:
            problems.append(f"{row['_part']}: key {row['key']} is not sample_id {row['sample_id']}")
        if row["video_id"] not in accepted:
            problems.append(f"{row['_part']}: {row['key']}: video {row['video_id']} is not "
                            "accepted")
    counts = Counter(r["video_id"] for r in index)
    problems += [f"videos: {v['rel_path']} has num_samples {v['num_samples']}, the index "
                 f"{counts[vid]}" for vid, v in accepted.items()
                 if (v["num_samples"] or 0) != counts[vid]]
    return problems


def check_shards(out_dir: Path, index: list[Row]) -> list[str]:
    """Every shard reads and holds exactly its index rows' samples, each of them sound."""
    by_shard: dict[str, list[Row]] = defaultdict(list)
    for row in index:
        by_shard[row["shard"]].append(row)
    on_disk = {p.name for p in (out_dir / "clips").glob("clips-*.tar")}
    problems = [f"clips/{name}: shard no index row refers to"
                for name in sorted(on_disk - set(by_shard))]
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        for shard, rows in sorted(by_shard.items()):
            label = f"clips/{shard}"
            if shard not in on_disk:
                problems.append(f"{label}: missing, yet {len(rows)} index rows refer to it")
                continue
            try:
                with tarfile.open(out_dir / "clips" / shard) as tar:
                    members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
            except (tarfile.TarError, OSError) as err:
                problems.append(f"{label}: unreadable shard: {err}")
                continue
            problems += [f"{label}: {p}" for p in check_members(rows, members, pool)]
    return problems


def check_members(rows: list[Row], members: dict[str, bytes], pool: ThreadPoolExecutor,
                  ) -> list[str]:
    """A shard's members are exactly ``KEY.mp4`` and ``KEY.json`` of its index ``rows``, and
    each of those samples passes :func:`check_sample` (mp4s decode in ``pool``)."""
    expected = {f"{r['key']}.{ext}" for r in rows for ext in ("mp4", "json")}
    problems = [f"member {name} has no index row" for name in sorted(set(members) - expected)]
    problems += [f"member {name} is missing" for name in sorted(expected - set(members))]
    whole = [r for r in rows if {f"{r['key']}.mp4", f"{r['key']}.json"} <= set(members)]
    decoded = pool.map(mp4_frames, [members[f"{r['key']}.mp4"] for r in whole])
    for row, frames in zip(whole, decoded, strict=True):
        mp4, meta = members[f"{row['key']}.mp4"], members[f"{row['key']}.json"]
        problems += [f"{row['key']}: {p}" for p in check_sample(row, meta, mp4, frames)]
    return problems


def check_sample(row: Row, raw_json: bytes, mp4: bytes, decoded: tuple[int, int, int] | str,
                 ) -> list[str]:
    """One sample: its JSON equals its index ``row``, its mp4 (``decoded``: frames, width,
    height) matches the JSON, and its shots tile the mp4 and lie inside the sample's span."""
    try:
        meta = json.loads(raw_json)
    except json.JSONDecodeError as err:
        return [f"unreadable JSON: {err}"]
    stated = {k: v for k, v in row.items() if k not in (*_INDEX_ONLY, "_part")}
    problems = [f"JSON {field} is {meta.get(field)!r}, {row['_part']} says {value!r}"
                for field, value in stated.items() if meta.get(field) != value]
    if row["mp4_bytes"] != len(mp4):
        problems.append(f"mp4 has {len(mp4)} bytes, {row['_part']} says {row['mp4_bytes']}")
    if isinstance(decoded, str):
        return problems + [f"mp4 does not decode: {decoded}"]
    said = (meta.get("num_frames"), meta.get("width"), meta.get("height"))
    if decoded != said:
        problems.append("mp4 decodes to {} frames of {}x{}; JSON says {} frames of {}x{}"
                        .format(*decoded, *said))
    shots = meta.get("shots") or []
    spans = [(s["start_frame"], s["end_frame"]) for s in shots]
    problems += [f"shot frames: {gap}" for gap in tiling_gaps(spans, 0, said[0])]
    low, high = meta.get("source_start_frame"), meta.get("source_end_frame")
    problems += [f"shot {s['index']}: source span [{s['source_start_frame']}, "
                 f"{s['source_end_frame']}) is outside the sample's [{low}, {high})"
                 for s in shots
                 if not low <= s["source_start_frame"] < s["source_end_frame"] <= high]
    return problems


def mp4_frames(data: bytes) -> tuple[int, int, int] | str:
    """(frames, width, height) of an mp4 by decoding every frame, or why it failed."""
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = 0
            for frame in container.decode(stream):
                frames += 1
                size = (frame.width, frame.height)
    except (av.FFmpegError, IndexError) as err:
        return f"{type(err).__name__}: {err}"
    return (frames, *size) if frames else "no frames"


def check_summary(out_dir: Path, videos: list[Row], shots: list[Row], index: list[Row],
                  ) -> list[str]:
    """``summary.json`` exists and counts what the tables hold."""
    try:
        summary = json.loads((out_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        return [f"summary.json: unreadable: {err}"]
    actual = {"inputs": len(videos), "shots": len(shots), "samples": len(index),
              "status": dict(Counter(v["status"] for v in videos))}
    return [f"summary.json: {key} is {summary.get(key)}, the tables hold {value}"
            for key, value in actual.items() if summary.get(key) != value]
