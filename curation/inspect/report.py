"""``curate report OUT``: one self-contained ``report.html`` of what a run produced.

The page holds the funnel from inputs to samples (counts and hours lost per stage and rule),
histograms of the shot (``vqa_*``) and video (``vs_*``) scores with the configured thresholds,
a contact sheet per sample, the rejected inputs and dropped shots, and a search box. Frames are
JPEG data URIs and charts are inline SVG, so the file opens anywhere without a server or network.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tarfile
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import pyarrow.dataset as ds

from common.atomic import atomic_write_bytes
from curation.output.schema import CLIPS_INDEX, SHOTS, VIDEOS
from media.readers import open_reader
from stages.shot_score.stage import VQA_SCORES

VS_SCORES = ("clarity", "mean_luma", "underexposed", "overexposed")
THUMB_WIDTH = 240
_TEMPLATE = Path(__file__).with_name("report_template.html")
_BINS = 24


@dataclass(frozen=True)
class Output:
    """The committed tables and summary of an output folder, as lists of rows."""

    out_dir: Path
    summary: dict[str, Any]
    videos: list[dict[str, Any]]
    shots: list[dict[str, Any]]
    samples: list[dict[str, Any]]


@dataclass(frozen=True)
class Loss:
    """Inputs or shots that one rule removed between two funnel steps. ``hours`` counts only
    rows whose duration is known (files that failed before the probe have none)."""

    status: str
    rule: str
    count: int
    hours: float | None


@dataclass(frozen=True)
class Step:
    """One stage of the funnel: what is left after it, and what it removed."""

    key: str
    label: str
    count: int
    hours: float | None
    losses: list[Loss]


def load_output(out_dir: Path) -> Output:
    """Read ``summary.json`` and the three Parquet datasets of ``out_dir``."""

    def rows(name: str, schema: Any) -> list[dict[str, Any]]:
        return ds.dataset(out_dir / name, schema=schema, format="parquet").to_table().to_pylist()

    summary = json.loads((out_dir / "summary.json").read_text())
    samples = sorted(rows("clips_index", CLIPS_INDEX),
                     key=lambda s: (s["source_rel_path"], s["sample_id"]))
    return Output(out_dir, summary, rows("videos", VIDEOS), rows("shots", SHOTS), samples)


def funnel(output: Output) -> list[Step]:
    """Inputs, accepted videos, shots, kept shots and samples, with what each step lost."""
    videos, shots = output.videos, output.shots
    accepted = [v for v in videos if v["status"] == "accepted"]
    kept = [s for s in shots if s["kept"] is not False]
    outside = [s for s in kept if s["sample_index"] is None]
    dropped = [s for s in shots if s["kept"] is False]
    sample_hours = sum(c["num_frames"] / c["fps"] for c in output.samples) / 3600
    return [
        Step("inputs", "inputs", len(videos), _video_hours(videos), []),
        Step("accepted", "accepted videos", len(accepted), _video_hours(accepted),
             _losses([v for v in videos if v["status"] != "accepted"], "reject", _video_hours)),
        Step("shots", "shots", len(shots), _shot_hours(shots), []),
        Step("kept", "kept shots", len(kept), _shot_hours(kept),
             _losses(dropped, "drop", _shot_hours)),
        Step("samples", "samples", len(output.samples), sample_hours,
             [Loss("unused", "shot_merge.outside_samples", len(outside), _shot_hours(outside))]
             if outside else []),
    ]


def _losses(rows: list[dict[str, Any]], prefix: str, hours: Any) -> list[Loss]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        status = row.get("status") or "dropped"
        groups[status, f"{row[f'{prefix}_stage']}.{row[f'{prefix}_rule']}"].append(row)
    losses = [Loss(status, rule, len(group), hours(group))
              for (status, rule), group in groups.items()]
    return sorted(losses, key=lambda loss: (-loss.count, loss.rule))


def _video_hours(rows: list[dict[str, Any]]) -> float | None:
    """Summed duration of the rows that were probed; None when none was."""
    known = [r["duration_s"] for r in rows if r["duration_s"] is not None]
    return sum(known) / 3600 if known else None


def _shot_hours(rows: list[dict[str, Any]]) -> float:
    return sum(r["end_time"] - r["start_time"] for r in rows) / 3600


def format_duration(hours: float | None) -> str:
    """``1.25 h``, ``3.4 min`` or ``12.5 s`` by size; ``unknown`` for files never probed."""
    if hours is None:
        return "unknown"
    if hours >= 1:
        return f"{hours:.2f} h"
    return f"{hours * 60:.1f} min" if hours >= 1 / 60 else f"{hours * 3600:.1f} s"


def write_report(out_dir: Path, target: Path | None = None, max_samples: int = 200) -> Path:
    """Write the report of ``out_dir`` to ``target`` (default ``out_dir/report.html``)."""
    output = load_output(out_dir)
    target = target or out_dir / "report.html"
    shown = output.samples[:max_samples]
    page = Template(_TEMPLATE.read_text(encoding="utf-8")).substitute(
        title=html.escape(f"MoGA-Curate report: {out_dir.name}"),
        out_dir=html.escape(str(out_dir.resolve())),
        fingerprint=html.escape(output.summary.get("config_fingerprint", "?")),
        funnel=_funnel_table(funnel(output)),
        histograms="\n".join(_histograms(output)),
        sheets_note=(f"Contact sheets of the first {len(shown)} of {len(output.samples)} samples."
                     if len(shown) < len(output.samples) else ""),
        sheets="\n".join(_sheets(output, shown)),
        rejected=_rows_table(["input", "status", "rule", "reason"], [
            [v["rel_path"], v["status"], f"{v['reject_stage']}.{v['reject_rule']}", v["reason"]]
            for v in output.videos if v["status"] != "accepted"]),
        dropped=_rows_table(["video", "shot", "frames", "rule", "reason"], _dropped_rows(output)),
    )
    atomic_write_bytes(target, page.encode())
    return target


def _funnel_table(steps: list[Step]) -> str:
    widest = max(step.hours or 0 for step in steps) or 1.0
    rows = []
    for step in steps:
        bar = f'<div class="bar" style="width:{100 * (step.hours or 0) / widest:.1f}%"></div>'
        rows.append(f'<tr class="step" data-step="{step.key}" data-count="{step.count}">'
                    f"<th>{step.label}</th><td class=num>{step.count}</td>"
                    f"<td class=num>{format_duration(step.hours)}</td><td>{bar}</td></tr>")
        for loss in step.losses:
            rows.append(f'<tr class="loss" data-rule="{html.escape(loss.rule)}" '
                        f'data-count="{loss.count}"><td>&minus; {loss.status} '
                        f"<code>{html.escape(loss.rule)}</code></td><td class=num>{loss.count}"
                        f"</td><td class=num>{format_duration(loss.hours)}</td><td></td></tr>")
    return "\n".join(rows)


def _histograms(output: Output) -> list[str]:
    stages = output.summary["config"]["stages"]
    charts = []
    for name in VQA_SCORES:
        column = f"vqa_{name}"
        groups = {"kept": [s[column] for s in output.shots if s["kept"] is not False],
                  "dropped": [s[column] for s in output.shots if s["kept"] is False]}
        charts.append(histogram_svg(column, "shots", groups, _limits(stages["shot_filter"], name)))
    for name in VS_SCORES:
        column = f"vs_{name}"
        groups = {"kept": [v[column] for v in output.videos if v["status"] == "accepted"],
                  "dropped": [v[column] for v in output.videos if v["status"] != "accepted"]}
        limits = _limits(stages["video_filter"], name)
        charts.append(histogram_svg(column, "videos", groups, limits))
    return charts


def _limits(stage_config: dict[str, Any], name: str) -> dict[str, float]:
    """A filter's thresholds on score ``name``: its ``min_NAME`` / ``max_NAME`` keys, the naming
    both filter stages' rules follow (e.g. ``min_contrast`` bounds ``vqa_contrast``)."""
    found = {kind: stage_config.get(f"{kind}_{name}") for kind in ("min", "max")}
    return {kind: float(limit) for kind, limit in found.items() if limit is not None}


def histogram_svg(column: str, unit: str, groups: dict[str, list[float | None]],
                  limits: dict[str, float]) -> str:
    """A stacked histogram of ``groups`` (kept / dropped) with each limit as a vertical line."""
    values = {g: [v for v in vs if v is not None] for g, vs in groups.items()}
    every = [v for vs in values.values() for v in vs]
    head = (f'<figure class="hist" data-score="{column}"><figcaption><code>{column}</code> '
            f"({len(every)} {unit})</figcaption>")
    if not every:
        return head + '<p class="muted">no values (the scorer did not run)</p></figure>'
    lo, hi = min(every + list(limits.values())), max(every + list(limits.values()))
    hi = hi if hi > lo else lo + 1
    counts = {g: [0] * _BINS for g in values}
    for group, vs in values.items():
        for v in vs:
            counts[group][min(int((v - lo) / (hi - lo) * _BINS), _BINS - 1)] += 1
    width, height, left, bottom = 300, 110, 8, 18
    step, tallest = (width - 2 * left) / _BINS, max(map(sum, zip(*counts.values(), strict=True)))
    parts = []
    for i in range(_BINS):
        base = height - bottom
        for group in values:
            h = counts[group][i] / tallest * (height - bottom - 14)
            if h:
                parts.append(f'<rect class="{group}" x="{left + i * step:.1f}" y="{base - h:.1f}" '
                             f'width="{step - 1:.1f}" height="{h:.1f}"/>')
            base -= h
    for kind, limit in limits.items():
        x = left + (limit - lo) / (hi - lo) * (width - 2 * left)
        anchor = "end" if x > width / 2 else "start"  # keep the label inside the chart
        parts.append(f'<line class="limit" x1="{x:.1f}" x2="{x:.1f}" y1="10" '
                     f'y2="{height - bottom}"/><text class="limit" x="{x:.1f}" y="9" '
                     f'text-anchor="{anchor}">{kind} {limit:g}</text>')
    parts.append(f'<text x="{left}" y="{height - 4}">{lo:.3g}</text><text x="{width - left}" '
                 f'y="{height - 4}" text-anchor="end">{hi:.3g}</text>')
    return (head + f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
            + "".join(parts) + "</svg></figure>")


def _sheets(output: Output, samples: list[dict[str, Any]]) -> list[str]:
    """Contact sheets in sample order, reading each shard once."""
    videos = {v["video_id"]: v for v in output.videos}
    shots = {(s["video_id"], s["shot_index"]): s for s in output.shots}
    by_shard: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        by_shard[sample["shard"]].append(sample)
    sheets: dict[str, str] = {}
    for shard, members in by_shard.items():
        with tarfile.open(output.out_dir / "clips" / shard) as tar:
            for sample in members:
                mp4 = tar.extractfile(f"{sample['key']}.mp4").read()
                source_shots = [shots[sample["video_id"], s["source_shot_index"]]
                                for s in sample["shots"]]
                sheets[sample["sample_id"]] = contact_sheet(
                    sample, mp4, videos[sample["video_id"]], source_shots)
    return [sheets[sample["sample_id"]] for sample in samples]


def contact_sheet(sample: dict[str, Any], mp4: bytes, video: dict[str, Any],
                  source_shots: list[dict[str, Any]]) -> str:
    """One sample: a timeline with its cut points, then for each shot its middle frame in the
    sample's mp4 and, when the source is still there, the same moment in the source with the
    sample's crop (green) and the shot's OCR boxes (red) drawn on it."""
    shots = sample["shots"]
    middles = [(s["start_frame"] + s["end_frame"] - 1) // 2 for s in shots]
    source_middles = [(s["source_start_frame"] + s["source_end_frame"] - 1) // 2 for s in shots]
    with tempfile.NamedTemporaryFile(suffix=".mp4") as handle:
        handle.write(mp4)
        handle.flush()
        frames = open_reader(handle.name).frames_at(middles)
    source = os.fsdecode(video["path_bytes"]) if video.get("path_bytes") else video["path"]
    sources = (open_reader(source).frames_at(source_middles) if Path(source).is_file()
               else None)
    cards = []
    for i, (shot, source_shot) in enumerate(zip(shots, source_shots, strict=True)):
        images = _img(frames[i], f"frame {middles[i]} of the sample", "output")
        if sources is not None:
            marked = _mark(sources[i], sample["crop"], source_shot["ocr_boxes"] or [])
            images += _img(marked, f"source frame {source_middles[i]}", "source")
        ocr = _ocr_label(source_shot)
        cards.append(
            f'<figure class="shot {shot["boundary_in"]}">{images}<figcaption>shot {i}: frames '
            f'{shot["start_frame"]}–{shot["end_frame"]} (source {shot["source_start_frame"]}–'
            f'{shot["source_end_frame"]}), in: {shot["boundary_in"]}<br><q>'
            f'{html.escape(shot["caption"] or "no caption")}</q><br>'
            f'<small>OCR: {html.escape(ocr)}</small></figcaption></figure>')
    missing = "" if sources is not None else '<p class="muted">source file is gone</p>'
    return (f'<section class="sample searchable" id="{html.escape(sample["sample_id"])}">'
            f'<h3>{html.escape(sample["sample_id"])} '
            f'<small>{html.escape(sample["source_rel_path"])}'
            f' · {sample["start_time"]:.2f}–{sample["end_time"]:.2f} s · {sample["num_frames"]} '
            f'frames {sample["width"]}×{sample["height"]} · crop {sample["crop"]}</small></h3>'
            f'<p><q>{html.escape(sample["caption"] or "no caption")}</q></p>'
            f'{_timeline_svg(sample)}{missing}<div class="shots">{"".join(cards)}</div></section>')


def _timeline_svg(sample: dict[str, Any]) -> str:
    """The sample's frames as a bar, one segment per shot, a tick and frame number at each cut."""
    scale = 1000 / sample["num_frames"]
    parts = []
    for i, shot in enumerate(sample["shots"]):
        x, w = shot["start_frame"] * scale, (shot["end_frame"] - shot["start_frame"]) * scale
        parts.append(f'<rect class="seg{i % 2}" x="{x:.1f}" y="4" width="{w:.1f}" height="14"/>')
        if i:
            parts.append(f'<line class="cut {shot["boundary_in"]}" x1="{x:.1f}" x2="{x:.1f}" '
                         f'y1="0" y2="22"/><text x="{x + 3:.1f}" y="30">{shot["start_frame"]}'
                         f'</text>')
    return f'<svg class="timeline" viewBox="0 0 1000 32">{"".join(parts)}</svg>'


def _mark(rgb: np.ndarray, crop: list[int], boxes: list[list[int]]) -> np.ndarray:
    """A thumbnail of a source frame with ``crop`` (x, y, w, h) and OCR ``boxes`` drawn on it."""
    import cv2

    scale = THUMB_WIDTH / rgb.shape[1]
    small = _thumb(rgb)
    x, y, w, h = crop
    rectangles = [((x, y, x + w - 1, y + h - 1), (40, 220, 40))]
    rectangles += [(tuple(box), (255, 40, 40)) for box in boxes]
    for corners, colour in rectangles:
        x0, y0, x1, y1 = (round(v * scale) for v in corners)
        for thickness, ink in ((4, (0, 0, 0)), (2, colour)):  # outlined: visible on any colour
            cv2.rectangle(small, (x0, y0), (x1, y1), ink, thickness)
    return small


def _thumb(rgb: np.ndarray) -> np.ndarray:
    import cv2

    height = round(rgb.shape[0] * THUMB_WIDTH / rgb.shape[1])
    small = cv2.resize(rgb, (THUMB_WIDTH, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small)


def _img(rgb: np.ndarray, alt: str, kind: str) -> str:
    import cv2

    small = rgb if rgb.shape[1] == THUMB_WIDTH else _thumb(rgb)
    _, jpeg = cv2.imencode(".jpg", small[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 75])
    data = base64.b64encode(jpeg.tobytes()).decode()
    return f'<img class="{kind}" alt="{alt}" src="data:image/jpeg;base64,{data}">'


def _dropped_rows(output: Output) -> list[list[Any]]:
    names = {v["video_id"]: v["rel_path"] for v in output.videos}
    return [[names.get(s["video_id"], s["video_id"]), s["shot_index"],
             f"{s['start_frame']}–{s['end_frame']}", f"{s['drop_stage']}.{s['drop_rule']}",
             s["reason"]] for s in output.shots if s["kept"] is False]


def _rows_table(header: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join('<tr class="searchable">' + "".join(
        f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table class=rows><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _ocr_label(shot: dict) -> str:
    """What OCR found in a source shot: its texts, or how many boxes it excluded unread."""
    if shot.get("ocr_texts"):
        return " | ".join(shot["ocr_texts"])
    boxes = len(shot.get("ocr_boxes") or [])
    return f"{boxes} text box{'es' if boxes != 1 else ''}, not read" if boxes else "none"
