"""``curate run --dry-run``: what a run would do, and whether it can start, before any work.

Discovers the inputs, lists which would be processed and which are already committed, prints the
stage plan with the resources each stage would reserve, and checks the configured models, ffmpeg
and ffprobe, the output folder's settings and the free space for the samples. It starts no Ray
and writes nothing; OUT_DIR is not created.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as ds

from curation.config import PipelineConfig
from curation.discover import discover
from curation.plan import PlannedStage, PreflightError, build_plan, preflight
from curation.run_state import RunStateError, check_run_state
from curation.runner import RunOptions, actor_cpu_shares
from stages.probe import ProbeError, run_ffprobe
from stages.records import Record, Status

# Samples are H.264 at CRF 20 (encode stage defaults) with short side 480: the footage in
# samples/ takes 4-14 MB per minute, real films about 5-10. The estimate takes the upper end.
MB_PER_MINUTE = 10.0


@dataclass(frozen=True)
class Check:
    """One go/no-go check of the dry run."""

    name: str
    ok: bool
    detail: str


def dry_run(raw_dir: Path, out_dir: Path, config: PipelineConfig,
            options: RunOptions) -> tuple[list[str], bool]:
    """The lines to print and whether ``curate run`` with these arguments could start."""
    if not raw_dir.is_dir():
        return [f"input folder does not exist: {raw_dir}"], False
    records = discover(raw_dir, config.input)
    done = set() if options.overwrite else committed_ids(out_dir)
    todo = [r for r in records if r["video_id"] not in done]
    later = todo[options.limit:] if options.limit is not None else []
    todo = todo[: options.limit] if options.limit is not None else todo
    finished = len(records) - len(todo) - len(later)
    lines = [f"inputs under {raw_dir}: {len(records)} files; {finished} already done in "
             f"{out_dir}, {len(todo)} to do"
             + (f", {len(later)} left for later runs (--limit)" if later else "")]
    lines += _input_lines(records, done, {r["video_id"] for r in later})
    plan = build_plan(config, out_dir)
    gpus = 0 if options.ray_address else local_gpus()
    lines += ["", plan_header(options, gpus)]
    lines += plan_lines(plan, options, gpus)
    planned = {p.stage.name for p in plan}
    skipped = [name for name in type(config.stages).model_fields if name not in planned]
    if skipped:
        lines.append(f"  not run: {', '.join(skipped)} (no model configured, or after stop_after)")
    pending = [r for r in todo if r["status"] == Status.PENDING.value]
    checks = [
        _check_output(out_dir, config, options.overwrite),
        _check_models(config),
        _check_tools(),
        _check_gpus(plan, gpus, options),
        _check_space(out_dir, pending),
    ]
    lines += ["", "checks:"]
    lines += [f"  {'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in checks]
    ok = all(c.ok for c in checks)
    lines.append("dry run: a run could start" if ok else "dry run: a run would not start")
    return lines, ok


def committed_ids(out_dir: Path) -> set[str]:
    """``video_id`` of the videos committed in ``out_dir``, read without touching the folder
    (``PartWriter`` would clean up uncommitted files, which could belong to a live run)."""
    videos = out_dir / "videos"
    if not videos.is_dir():
        return set()
    table = ds.dataset(videos, format="parquet").to_table(columns=["video_id"])
    return set(table.column("video_id").to_pylist())


def _input_lines(records: list[Record], done: set[str], later: set[str]) -> list[str]:
    lines = []
    for record in records:
        if record["video_id"] in done:
            what = "done"
        elif record["video_id"] in later:
            what = "later"
        elif record["status"] != Status.PENDING.value:
            what = record["status"]  # settled by discovery: gets its row, no processing
        else:
            what = "process"
        size = f"{record['size_bytes'] / 1e6:8.1f} MB" if record.get("size_bytes") else " " * 11
        reason = f"  ({record['reason']})" if record["reason"] else ""
        lines.append(f"  {what:<9s} {size}  {record['rel_path']}{reason}")
    return lines


def plan_header(options: RunOptions, gpus: int) -> str:
    """Where the stages would run."""
    if options.ray_address:
        return f"stage plan on the Ray cluster at {options.ray_address}:"
    cpus = options.num_cpus or os.cpu_count()
    return f"stage plan on a local Ray with {cpus} CPUs and {gpus} GPUs:"


def plan_lines(plan: list[PlannedStage], options: RunOptions, gpus: int) -> list[str]:
    """One line per stage: tasks or an actor pool, and the CPUs and GPUs each worker reserves
    (as the runner sizes them: actor pools shrink their CPUs on small machines)."""
    cluster_cpus = float(options.num_cpus or os.cpu_count() or 1)
    shares = {} if options.ray_address else actor_cpu_shares(plan, cluster_cpus)
    lines = []
    for planned in plan:
        res = planned.resources
        cpus = shares.get(planned.stage.name, res.num_cpus)
        if res.gpu_when_available:
            share = f"{res.gpu_share:g} GPU"
            device = share if gpus else f"CPU only ({share} where the cluster has one)"
        else:
            device = f"{res.num_gpus:g} GPU" if res.num_gpus else "CPU only"
        kind = "actor pool" if planned.actors else "tasks"
        most = f", at most {res.max_workers} workers" if res.max_workers else ""
        lines.append(f"  {planned.stage.name:<13s} {kind:<10s} {cpus:g} CPU, {device}{most}")
    return lines


def local_gpus() -> int:
    """NVIDIA GPUs on this machine, as ``nvidia-smi -L`` lists them (0 without the tool)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


def _check_output(out_dir: Path, config: PipelineConfig, overwrite: bool) -> Check:
    if out_dir.exists() and not out_dir.is_dir():
        return Check("output folder", False, f"{out_dir} is a file")
    if not (out_dir / "run.json").exists():
        return Check("output folder", True, f"{out_dir} would be created or started afresh")
    if overwrite:
        return Check("output folder", True, f"--overwrite would delete the results in {out_dir}")
    try:
        check_run_state(out_dir, config)  # reads run.json only, since it exists
    except RunStateError as err:
        return Check("output folder", False, str(err))
    return Check("output folder", True, f"{out_dir} was written with these settings; resuming")


def _check_models(config: PipelineConfig) -> Check:
    try:
        preflight(config)
    except PreflightError as err:
        return Check("models", False, str(err))
    models = [m for m in (config.stages.shot_caption.model,
                          config.stages.shot_score.aesthetic.clip_model) if m]
    return Check("models", True, ", ".join(models) + " load" if models else "none configured")


def _check_tools() -> Check:
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        return Check("ffmpeg", False, f"not on PATH: {', '.join(missing)}")
    return Check("ffmpeg", True, f"{shutil.which('ffmpeg')}, {shutil.which('ffprobe')}")


def _check_gpus(plan: list[PlannedStage], gpus: int, options: RunOptions) -> Check:
    needy = [p.stage.name for p in plan
             if p.resources.num_gpus and not p.resources.gpu_when_available]
    if needy and not gpus and not options.ray_address:
        return Check("GPUs", False, f"{', '.join(needy)} need a GPU and this machine has none")
    return Check("GPUs", True, f"required by {', '.join(needy)}" if needy else "none required")


def _check_space(out_dir: Path, pending: list[Record]) -> Check:
    """Free space where OUT_DIR is (or would be) against the samples' estimated size."""
    minutes = sum(_durations([r["path"] for r in pending])) / 60
    needed = minutes * MB_PER_MINUTE * 1e6
    parent = out_dir.absolute()
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    detail = (f"{free / 1e9:.1f} GB free at {parent}; need about {needed / 1e9:.2f} GB "
              f"({minutes:.1f} min of video to do x {MB_PER_MINUTE:g} MB per minute at 480p, "
              f"assuming every file is accepted)")
    return Check("space", free >= needed, detail)


def _durations(paths: list[str]) -> list[float]:
    """Container durations in seconds (0 where ffprobe fails), probed concurrently."""

    def duration(path: str) -> float:
        try:
            return float(run_ffprobe(path, timeout_s=20).get("format", {}).get("duration") or 0)
        except (ProbeError, OSError, subprocess.TimeoutExpired, ValueError):
            return 0.0

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(duration, paths))
