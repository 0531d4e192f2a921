"""Faults: a stage that hangs in C is cut off by the per-item timeout; a SIGKILLed Ray worker
costs nothing; a full disk stops the run cleanly and a resumed run completes."""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pyarrow.dataset as ds
import pytest

from curation import runner
from curation.config import parse_config
from curation.plan import PlannedStage, StageCall, build_plan
from curation.watchdog import MAX_ATTEMPTS, MAX_DECLARED_DURATION_S, ItemWatchdog, lost_in
from stages.records import Record
from stages.resources import Resources
from stages.video_filter import VideoFilterConfig, VideoFilterStage
from tests import media
from tests.outputs import assert_same_output

LIMIT = Resources(timeout_s=1.5, timeout_per_video_second=0.0)


class HangStage:
    """Test-only stage: blocks forever in C on the files whose name says so.

    ``stuck in C``: PyAV opening a FIFO (a demuxer waiting for bytes that never come);
    ``stuck with GIL``: libc ``sleep`` called through ``PyDLL``, which keeps the GIL, so no
    Python thread could ever run a watchdog.
    """

    name: ClassVar[str] = "hang"

    def __init__(self, fifo: str) -> None:
        self.fifo = fifo

    def setup(self) -> None:
        """Nothing to load."""

    def process(self, record: Record) -> Record:
        if "stuck in C" in record["path"]:
            import av

            av.open(self.fifo)
        if "stuck with GIL" in record["path"]:
            ctypes.PyDLL(None).sleep(3600)
        return record


def _rows(out: Path) -> dict[str, dict]:
    return {r["rel_path"]: r for r in ds.dataset(out / "videos").to_table().to_pylist()}


def _stage_call_in_child(call: StageCall, record: Record) -> None:
    call(record)


def test_the_kernel_timer_stops_a_stage_holding_the_gil(tmp_path: Path) -> None:
    """No Ray: the worker process dies at the limit; the retry reports the timeout at once."""
    call = StageCall(HangStage(""), ItemWatchdog(tmp_path, "hang", LIMIT))
    record = {"video_id": "v1", "path": "/x/stuck with GIL.mp4", "status": "pending"}
    child = multiprocessing.get_context("fork").Process(target=_stage_call_in_child,
                                                        args=(call, record))
    started = time.monotonic()
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGALRM and 1.4 < time.monotonic() - started < 10
    assert lost_in(tmp_path, "v1").rule == "timeout"
    retried = call(dict(record))
    assert (retried["status"], retried["reject_stage"], retried["reject_rule"]) == (
        "failed", "hang", "timeout")
    assert "1.5 s" in retried["reason"] and not list(tmp_path.iterdir())


def test_a_worker_killed_before_its_deadline_is_retried_then_given_up(tmp_path: Path) -> None:
    watchdog = ItemWatchdog(tmp_path, "hang", Resources(timeout_s=60))
    record = {"video_id": "v2", "duration_s": 10.0}
    assert watchdog.limit_s(record) == 60 + 4.0 * 10
    marker = {"stage": "hang", "limit_s": 100.0, "deadline": time.time() + 50, "attempts": 1}
    (tmp_path / "v2.hang.json").write_text(json.dumps(marker))
    assert watchdog.loss(record) is None  # killed early (SIGKILL, OOM): process it again
    assert lost_in(tmp_path, "v2").rule == "worker_lost"  # unless Ray gave up on it
    (tmp_path / "v2.hang.json").write_text(json.dumps(dict(marker, attempts=MAX_ATTEMPTS)))
    loss = watchdog.loss(record)  # a file that keeps crashing its decoder
    assert (loss.stage, loss.rule) == ("hang", "worker_lost") and "3 time(s)" in loss.detail
    assert ItemWatchdog(tmp_path, "hang", Resources(timeout_s=None)).limit_s(record) is None


def test_an_absurd_declared_duration_gets_a_bounded_limit(tmp_path: Path) -> None:
    # a damaged AVI header (fuzz): duration 4.6e18 s made the kernel timer overflow time_t
    watchdog = ItemWatchdog(tmp_path, "video_filter", Resources(timeout_s=60))
    for duration in (4.6116860141324206e18, float("nan"), -5.0):
        record = {"video_id": "v4", "path": "/x/odd.avi", "status": "pending",
                  "duration_s": duration, "fps": 24.0, "width": 320, "height": 180}
        assert watchdog.limit_s(record) <= 60 + 4.0 * MAX_DECLARED_DURATION_S
        done = StageCall(VideoFilterStage(VideoFilterConfig(), "metadata"), watchdog)(record)
        assert done.get("reject_rule") != "error", done["reason"]


def test_watchdog_overhead_per_stage_call_is_small(tmp_path: Path) -> None:
    """Marker write + unlink + two setitimer calls, against a bare call of a no-op stage."""
    record = {"video_id": "v3", "path": "/x/fine.mp4", "status": "pending", "duration_s": 60.0}
    bare = StageCall(HangStage(""))
    guarded = StageCall(HangStage(""), ItemWatchdog(tmp_path, "hang", Resources()))
    seconds = {}
    for name, call in (("bare", bare), ("guarded", guarded)):
        started = time.perf_counter()
        for _ in range(2000):
            call(record)
        seconds[name] = (time.perf_counter() - started) / 2000
    overhead = seconds["guarded"] - seconds["bare"]
    print(f"watchdog overhead per stage call: {overhead * 1e6:.0f} us")
    assert overhead < 2e-3  # ten stages per video: well under the ~1 s a video takes anyway


@pytest.mark.slow
def test_a_stage_hanging_in_c_times_out_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i, name in enumerate(("good", "stuck in C", "stuck with GIL")):
        media.make_cuts(raw / f"{name}.mp4", [24 + 6 * i, 30], w=256, h=144, moving=True)
    fifo = tmp_path / "stream.fifo"
    os.mkfifo(fifo)

    def plan_with_a_hang(config, out_dir):  # noqa: ANN001, ANN202 - build_plan's signature
        plan = build_plan(config, out_dir)
        return [plan[0], PlannedStage(HangStage(str(fifo)), LIMIT), *plan[1:]]

    monkeypatch.setattr(runner, "build_plan", plan_with_a_hang)
    config = parse_config({"stop_after": "shot_split"})
    out = tmp_path / "out"
    started = time.monotonic()
    runner.run(raw, out, config, runner.RunOptions(num_cpus=2))
    rows = _rows(out)
    assert rows["good.mp4"]["status"] == "accepted"
    for name in ("stuck in C.mp4", "stuck with GIL.mp4"):
        row = rows[name]
        assert (row["status"], row["reject_stage"], row["reject_rule"]) == (
            "failed", "hang", "timeout"), row["reason"]
        assert row["reason"].startswith("hang.timeout: no result after 1.5 s")
    assert time.monotonic() - started < 120
    assert not (out / ".inflight").exists()


def _descendants(root: int) -> list[int]:
    """Process ids under ``root``, from /proc (each process's parent is field 4 of its stat)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _busy_ray_worker(root: int) -> tuple[int, str] | None:
    """A Ray worker of the run started as ``root`` that is executing a task right now."""
    for pid in _descendants(root):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if title.startswith("ray::") and "map" in title.lower():  # ray::_map_task, MapWorker
            return pid, title
    return None


@pytest.mark.slow
def test_a_sigkilled_ray_worker_costs_no_video(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(4):
        media.make_cuts(raw / f"v{i}.mp4", [24 + 6 * i, 30, 36], w=256, h=144, moving=True)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "curation.cli", "run", str(raw), str(out),
                             "--num-cpus", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline, killed = time.monotonic() + 120, None
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        if (worker := _busy_ray_worker(proc.pid)) is not None:
            os.kill(worker[0], signal.SIGKILL)
            killed = worker[1]
        time.sleep(0.05)
    _, stderr = proc.communicate(timeout=600)
    assert killed is not None and proc.returncode == 0, stderr
    rows = _rows(out)
    assert sorted(rows) == [f"v{i}.mp4" for i in range(4)], killed
    assert {r["status"] for r in rows.values()} == {"accepted"}, rows
    index = ds.dataset(out / "clips_index").to_table().to_pylist()
    planned = sorted(f"{r['video_id']}-{n:04d}" for r in rows.values()
                     for n in range(r["num_samples"]))
    assert sorted(r["key"] for r in index) == planned and len(planned) >= 3
    assert not Path(f"/proc/{worker[0]}").exists()  # it really died mid-task


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An empty tmpfs the test can resize (``mount -o remount,size=``); skipped where mounting
    is not permitted."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _resize(folder: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


@pytest.mark.slow
def test_a_full_disk_stops_the_run_cleanly_and_a_rerun_resumes(
    tmp_path: Path, tmpfs: Path
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        media.make_cuts(raw / f"v{i}.mp4", [72 + 12 * i, 36], w=256, h=144, moving=True)
    reference = tmp_path / "reference"
    assert _curate(raw, reference).returncode == 0
    mp4_bytes = sum(r["mp4_bytes"] for r in ds.dataset(reference / "clips_index").to_table()
                    .to_pylist())
    # Room for the staged mp4s of the one part, not for them and their shard as well. One part
    # however slow the machine: a part written early by the flush timer would fit.
    one_part = tmp_path / "one_part.yaml"
    one_part.write_text("output: {videos_per_part: 64, flush_seconds: 86400}\n")
    out = tmpfs / "out"
    _resize(tmpfs, (int(mp4_bytes * 1.5) + 65_536) // 4096 * 4096)
    full = _curate(raw, out, "-c", str(one_part))
    assert full.returncode != 0
    assert f"ENOSPC (No space left on device) while writing {out / 'clips'}/clips-000000.tar" \
        in full.stderr, full.stderr[-2000:]
    leftovers = [p.relative_to(out) for p in out.rglob("*") if p.is_file()]
    assert leftovers == [Path("run.json")]  # no shard, part, temp file or staged mp4

    _resize(tmpfs, 64 << 20)
    resumed = _curate(raw, out, "-c", str(one_part))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_output(out, reference)


def _curate(raw: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curation.cli", "run", str(raw), str(out),
                           "--num-cpus", "2", *options], capture_output=True, text=True,
                          timeout=600)
