"""``curate run``: discover, skip what is done, map the stages with Ray Data, commit parts.

The driver discovers files, writes rows for files that need no processing (duplicates,
unreadable), and streams the rest through a Ray Dataset, one map per stage sized from the
config. Finished videos come back to the driver as they complete and are committed in batches
by :class:`~curation.output.writer.PartWriter`; a killed run resumes from the last committed part.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from curation.config import PipelineConfig
from curation.discover import discover
from curation.input_changes import unless_changed
from curation.output.disk_full import check_record, commit
from curation.output.summary import write_summary
from curation.output.writer import PartWriter
from curation.plan import PlannedStage, build_plan, preflight, stage_call_class
from curation.progress import Progress, resolve_mode
from curation.rules import RunnerRule
from curation.run_state import check_run_state
from curation.watchdog import INFLIGHT_DIR, ItemWatchdog, lost_in
from stages.base import ChunkedStage
from stages.records import Record, Status, fail

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """Command-line choices of one ``curate run``."""

    ray_address: str | None = None
    num_cpus: int | None = None
    limit: int | None = None
    overwrite: bool = False
    config_path: str | None = None
    progress: str = "auto"


@dataclass
class RunResult:
    """What happened in this invocation (the summary covers the whole output folder)."""

    discovered: int = 0
    skipped_done: int = 0
    processed: int = 0
    failed: int = 0
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)


def run(raw_dir: Path, out_dir: Path, config: PipelineConfig, options: RunOptions) -> RunResult:
    """Curate ``raw_dir`` into ``out_dir``; safe to rerun after a crash."""
    started = time.perf_counter()
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"input folder does not exist: {raw_dir}")
    if options.overwrite and out_dir.exists():
        for name in ("videos", "shots", "clips", "clips_index", ".staging", INFLIGHT_DIR,
                     "summary.json", "run.json"):
            target = out_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    preflight(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_run_state(out_dir, config)
    writer = PartWriter(out_dir, config.output.samples_per_shard, config.output.max_shard_bytes)
    done = writer.done_ids()
    records = discover(raw_dir, config.input)
    result = RunResult(discovered=len(records))
    todo = [r for r in records if r["video_id"] not in done]
    result.skipped_done = len(records) - len(todo)
    if options.limit is not None:
        todo = todo[: options.limit]
    log.info("found %d files under %s: %d already done, %d to do",
             len(records), raw_dir, result.skipped_done, len(todo))
    settled = [r for r in todo if r["status"] != Status.PENDING.value]
    commit(writer, settled)
    statuses = Counter(r["status"] for r in settled)
    pending = [r for r in todo if r["status"] == Status.PENDING.value]
    if pending:
        statuses += _process_on_ray(pending, config, options, writer, out_dir)
    writer.finish()
    result.failed = statuses[Status.FAILED.value]
    result.processed = len(todo)
    result.seconds = time.perf_counter() - started
    result.summary = write_summary(out_dir, config, result.seconds)
    return result


def _process_on_ray(
    pending: list[Record], config: PipelineConfig, options: RunOptions, writer: PartWriter,
    out_dir: Path,
) -> Counter[str]:
    """Stream ``pending`` through the stages; commit results as they arrive; count statuses."""
    import ray

    started_here = _init_ray(options)
    inflight = out_dir / INFLIGHT_DIR
    shutil.rmtree(inflight, ignore_errors=True)  # markers of an earlier, killed run
    stamps = {r["video_id"]: (r["size_bytes"], r["mtime_ns"]) for r in pending}  # discovery's
    try:
        mode = resolve_mode(options.progress)
        dataset = _build_dataset(pending, build_plan(config, out_dir), inflight,
                                 stage_bars=mode == "bar")
        progress = Progress(mode, len(pending))
        batch = _Batcher(writer, config.output.videos_per_part, config.output.flush_seconds)
        seen: set[str] = set()
        for row in dataset.iter_rows():
            record = _finish(dict(row))
            check_record(record, out_dir)
            record = unless_changed(record, stamps[record["video_id"]])
            seen.add(record["video_id"])
            progress.update(record)
            batch.add(record)
        for record in pending:
            if record["video_id"] not in seen:
                batch.add(_lost(dict(record), inflight))
        batch.flush()
        progress.close()
        shutil.rmtree(inflight, ignore_errors=True)
        return batch.statuses
    finally:
        if started_here:
            ray.shutdown()


def _lost(record: Record, inflight: Path) -> Record:
    """A video that never came back: its in-flight marker says in which stage and why."""
    loss = lost_in(inflight, record["video_id"])
    if loss is not None:
        return fail(record, loss.stage, loss.rule, loss.detail)
    return fail(record, "runner", RunnerRule.WORKER_LOST,
                "the worker died while processing this file")


def _init_ray(options: RunOptions) -> bool:
    """Connect to ``options.ray_address`` or start a local Ray; True if we started it."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        return False
    if options.ray_address:
        import common
        import curation
        import media
        import stages

        ray.init(address=options.ray_address, log_to_driver=False,
                 runtime_env={"py_modules": [common, curation, stages, media]})
    else:
        # "local": a fresh Ray even when `ray start` runs on this machine (plain init joins it)
        ray.init(address="local", num_cpus=options.num_cpus, include_dashboard=False,
                 log_to_driver=False)
    return True


def _build_dataset(pending: list[Record], plan: list[PlannedStage],  # noqa: ANN202 - ray Dataset
                   inflight: Path, stage_bars: bool):
    import ray
    from ray.data import DataContext

    from curation.fan_out import RayPieceMapper

    context = DataContext.get_current()
    context.enable_progress_bars = stage_bars  # one bar per stage, named by stage_call_class
    context.max_errored_blocks = -1  # a crashed worker loses its videos, not the whole run
    dataset = ray.data.from_items(pending, override_num_blocks=min(len(pending), 10_000))
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    cluster_cpus = ray.cluster_resources().get("CPU", 1)
    actor_cpus = actor_cpu_shares(plan, cluster_cpus)
    for planned in plan:
        res = planned.resources
        gpus = res.gpus_per_worker(cluster_gpus)
        mapper = (RayPieceMapper(planned.stage, res, gpus)
                  if isinstance(planned.stage, ChunkedStage) else None)
        call = (planned.stage, ItemWatchdog(inflight, planned.stage.name, res), mapper)
        if planned.actors:  # a pool of long-lived workers that load their model once
            cpus = actor_cpus[planned.stage.name]
            most = res.max_workers or max(1, int(cluster_gpus / gpus if gpus
                                                 else cluster_cpus // cpus))
            dataset = dataset.map(stage_call_class(planned.stage.name), fn_constructor_args=call,
                                  num_cpus=cpus, num_gpus=gpus or None, concurrency=(1, most))
        else:
            dataset = dataset.map(stage_call_class(planned.stage.name)(*call),
                                  num_cpus=res.num_cpus,
                                  num_gpus=gpus or None, concurrency=res.max_workers)
    return dataset


def actor_cpu_shares(plan: list[PlannedStage], cluster_cpus: float) -> dict[str, float]:
    """CPUs each actor stage reserves per actor. An actor pool holds its CPUs for the whole run,
    so when the pools' minimum (one actor each) would leave less than one CPU for the task
    stages, their reservations shrink in proportion (a 2-core laptop would deadlock otherwise)."""
    wanted = {p.stage.name: p.resources.num_cpus for p in plan if p.actors}
    budget = max(cluster_cpus - 1.0, 0.1 * len(wanted))
    scale = min(1.0, budget / sum(wanted.values())) if wanted else 1.0
    return {name: cpus * scale for name, cpus in wanted.items()}


def _finish(record: Record) -> Record:
    """A record that went through every stage alive is accepted."""
    if record["status"] == Status.PENDING.value:
        record["status"] = Status.ACCEPTED.value
    record["shots"] = [dict(s) for s in record.get("shots") or []]
    record["samples"] = [dict(s) for s in record.get("samples") or []]
    return record


class _Batcher:
    """Collects finished records and commits a part every N records or T seconds."""

    def __init__(self, writer: PartWriter, size: int, seconds: float) -> None:
        self.writer, self.size, self.seconds = writer, size, seconds
        self.buffer: list[Record] = []
        self.statuses: Counter[str] = Counter()
        self.last_flush = time.monotonic()

    def add(self, record: Record) -> None:
        self.buffer.append(record)
        self.statuses[record["status"]] += 1
        if len(self.buffer) >= self.size or time.monotonic() - self.last_flush > self.seconds:
            self.flush()

    def flush(self) -> None:
        commit(self.writer, self.buffer)
        self.buffer = []
        self.last_flush = time.monotonic()
