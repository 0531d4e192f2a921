"""Per-item stage timeouts that also stop C code: a kernel timer ends the worker process.

A Python thread cannot interrupt a decoder blocked in C, and if that code holds the GIL the
thread never even runs. So before each stage call the worker arms ``ITIMER_REAL``; at the
deadline the kernel delivers SIGALRM, whose default action ends the process whatever it is
doing. A marker written before the call (``OUT/.inflight/VIDEO.STAGE.json``, on storage every
node shares, like the staging folder) survives that death. Ray retries the lost task on a new
worker; its :class:`~curation.plan.StageCall` finds the overdue marker and fails the video with
rule ``timeout`` instead of hanging again. A worker that dies before its deadline (SIGKILL, OOM,
a segfault) leaves a marker that is not overdue, so the retry processes the video again, up to
``MAX_ATTEMPTS`` deaths in one stage (Ray Data itself retries forever), after which the video
fails with rule ``worker_lost``. If the run ends with a video missing anyway, the runner reads its
marker (:func:`lost_in`).

Cost per stage call: one small file write and unlink plus two ``setitimer`` calls.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stages.records import Record, StageRule
from stages.resources import Resources

INFLIGHT_DIR = ".inflight"


@dataclass(frozen=True)
class Loss:
    """Why a stage call on one video never returned: ``rule`` ``timeout`` (it ran past
    ``limit_s``) or ``worker_lost`` (its worker died ``MAX_ATTEMPTS`` times, e.g. a decoder that
    segfaults on this file)."""

    stage: str
    rule: StageRule
    detail: str


MAX_ATTEMPTS = 3


# The longest duration a video's header is believed for its time limit: a damaged header claimed
# 4.6e18 s, and the kernel timer refused the deadline (OverflowError, time_t).
MAX_DECLARED_DURATION_S = 48 * 3600.0


@dataclass(frozen=True)
class ItemWatchdog:
    """Arms the kernel timer around one stage's calls and keeps their in-flight markers."""

    folder: Path
    stage: str
    resources: Resources

    def limit_s(self, record: Record) -> float | None:
        """The limit for ``record``: ``timeout_s`` plus ``timeout_per_video_second`` times its
        duration (known from the probe stage on); None when the stage has no limit."""
        if self.resources.timeout_s is None:
            return None
        duration = record.get("duration_s") or 0.0
        if not 0.0 <= duration <= MAX_DECLARED_DURATION_S:  # NaN, or a header's absurd claim
            duration = MAX_DECLARED_DURATION_S if duration > 0 else 0.0
        return self.resources.timeout_s + self.resources.timeout_per_video_second * duration

    def loss(self, record: Record) -> Loss | None:
        """Why earlier attempts of this stage on ``record`` died, once that is final (and
        forget them); None for a first attempt or one that may be retried."""
        marker = self._marker(record["video_id"])
        found = _read_loss(marker)
        if found is not None:
            marker.unlink(missing_ok=True)
        return found

    @contextmanager
    def guard(self, record: Record) -> Iterator[None]:
        """Run the body under the kernel timer; the marker lives exactly as long as the call."""
        limit = self.limit_s(record)
        marker = self._marker(record["video_id"])
        attempts = _read_state(marker).get("attempts", 0) + 1
        marker.write_text(json.dumps({
            "stage": self.stage, "attempts": attempts, "limit_s": limit,
            "deadline": None if limit is None else time.time() + limit,
        }))
        if limit is not None:
            _arm(limit)
        try:
            yield
        finally:
            if limit is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
            marker.unlink(missing_ok=True)

    def _marker(self, video_id: str) -> Path:
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{video_id}.{self.stage}.json"


def lost_in(folder: Path, video_id: str) -> Loss | None:
    """Why ``video_id``'s worker died, from the marker it left: a timeout when the deadline has
    passed, else the stage it was in when Ray's retries ran out."""
    for marker in sorted(folder.glob(f"{video_id}.*.json")):
        state = _read_state(marker)
        if state:
            return _read_loss(marker) or Loss(state["stage"], StageRule.WORKER_LOST, _died(state))
    return None


def _read_loss(marker: Path) -> Loss | None:
    state = _read_state(marker)
    if not state:
        return None
    if state["deadline"] is not None and time.time() >= state["deadline"]:
        return Loss(state["stage"], StageRule.TIMEOUT,
                    f"no result after {state['limit_s']:g} s (the stage's per-video limit); "
                    "its worker was stopped")
    if state["attempts"] >= MAX_ATTEMPTS:
        return Loss(state["stage"], StageRule.WORKER_LOST, _died(state))
    return None


def _died(state: dict) -> str:
    return f"the worker died {state['attempts']} time(s) in this stage on this file"


def _read_state(marker: Path) -> dict:
    if not marker.exists():  # the usual case; a stat is much cheaper than a failed open
        return {}
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):  # no marker, or one cut short by the kill itself
        return {}


def _arm(limit: float) -> None:
    """Start the timer; SIGALRM must keep its default action (end the process), which a
    Python-level handler would replace with code that needs the GIL."""
    if signal.getsignal(signal.SIGALRM) is not signal.SIG_DFL:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("SIGALRM has a handler and cannot be reset off the main thread; "
                               "set resources.timeout_s: null for this stage")
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, max(limit, 0.001))
