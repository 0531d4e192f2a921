"""``OUT/summary.json`` and the summary printed at the end of a run."""

from __future__ import annotations

import json
import platform
import subprocess
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from common.atomic import atomic_write_bytes
from curation.config import PipelineConfig
from curation.output.schema import CLIPS_INDEX, SHOTS, VIDEOS
from stages.registry import STAGE_NAMES

_PACKAGES = ("ray", "scenedetect", "decord", "av", "opencv-python-headless", "pyarrow",
             "ffmpeg-python", "pydantic", "rapidocr", "onnxruntime", "torch", "transformers")


def write_summary(out_dir: Path, config: PipelineConfig, wall_seconds: float) -> dict[str, Any]:
    """Summarise everything committed in ``out_dir`` and write ``summary.json``."""
    videos = ds.dataset(out_dir / "videos", schema=VIDEOS, format="parquet").to_table()
    shots = ds.dataset(out_dir / "shots", schema=SHOTS, format="parquet").to_table(
        columns=["kept", "drop_stage", "drop_rule"]).to_pylist()
    clips = ds.dataset(out_dir / "clips_index", schema=CLIPS_INDEX, format="parquet").to_table(
        columns=["num_frames", "fps", "shard", "caption_model"]).to_pylist()
    rows = videos.to_pylist()
    accepted = [r for r in rows if r["status"] == "accepted"]
    summary = {
        "inputs": len(rows),
        "status": dict(Counter(r["status"] for r in rows)),
        "rejected_by_rule": _count_rules(rows, "rejected"),
        "failed_by_rule": _count_rules(rows, "failed"),
        "shots": len(shots),
        "shots_kept": sum(1 for shot in shots if shot["kept"]),
        "shots_dropped_by_rule": dict(Counter(
            f"{shot['drop_stage']}.{shot['drop_rule']}" for shot in shots
            if shot["kept"] is False).most_common()),
        "samples": len(clips),
        "sample_hours": round(sum(c["num_frames"] / c["fps"] for c in clips) / 3600, 4),
        "shards": len({c["shard"] for c in clips}),
        "models": {
            "ocr": sorted({r["ocr_engine"] for r in accepted if r.get("ocr_engine")}),
            "aesthetic": sorted({r["aesthetic_model"] for r in accepted
                                 if r.get("aesthetic_model")}),
            "caption": sorted({c["caption_model"] for c in clips if c["caption_model"]}),
        },
        "accepted_hours": round(sum(r["duration_s"] or 0 for r in accepted) / 3600, 4),
        "stage_seconds": {
            name: round(sum(r[f"seconds_{name}"] or 0 for r in rows), 3) for name in STAGE_NAMES
        },
        "last_run_wall_seconds": round(wall_seconds, 3),
        "versions": _versions(),
        "config_fingerprint": config.fingerprint(),
        "config": config.model_dump(mode="json"),
    }
    atomic_write_bytes(out_dir / "summary.json", json.dumps(summary, indent=2).encode())
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for the end of ``curate run``."""
    status = summary["status"]
    lines = [
        f"inputs {summary['inputs']}: " + ", ".join(f"{k} {v}" for k, v in sorted(status.items())),
        f"shots {summary['shots']} ({summary['shots_kept']} kept), accepted video "
        f"{summary['accepted_hours'] * 60:.2f} min",
        f"samples {summary['samples']} ({summary['sample_hours'] * 60:.2f} min) in "
        f"{summary['shards']} shard(s); captions by "
        + (", ".join(summary["models"]["caption"]) or "nobody (captioning is off)"),
    ]
    for kind in ("rejected", "failed"):
        for rule, count in summary[f"{kind}_by_rule"].items():
            lines.append(f"  {kind} {count:5d}  {rule}")
    for rule, count in summary["shots_dropped_by_rule"].items():
        lines.append(f"  shot dropped {count:5d}  {rule}")
    return "\n".join(lines)


def _count_rules(rows: list[dict[str, Any]], status: str) -> dict[str, int]:
    counts = Counter(f"{r['reject_stage']}.{r['reject_rule']}" for r in rows
                     if r["status"] == status)
    return dict(counts.most_common())


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        banner = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True)
        versions["ffmpeg"] = banner.stdout.split("\n", 1)[0]
    except (OSError, subprocess.CalledProcessError):
        versions["ffmpeg"] = "not found"
    return versions
