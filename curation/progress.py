"""What a run shows while it works: a live bar, plain log lines, or nothing.

``bar`` (the default on a terminal) draws Ray Data's per-stage progress bars, named after the
stages, under a bar over finished videos with throughput and ETA. ``plain`` (the default when
stderr is not a terminal, e.g. a batch job's log) prints one line per finished video with the
running rate and ETA. ``quiet`` prints nothing until the final summary.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from curation.output.names import one_line
from stages.records import Record

MODES = ("auto", "bar", "plain", "quiet")


def resolve_mode(mode: str, stream: TextIO = sys.stderr) -> str:
    """``auto`` becomes ``bar`` on a terminal and ``plain`` otherwise."""
    if mode == "auto":
        return "bar" if stream.isatty() else "plain"
    return mode


class Progress:
    """Reports finished videos of one run of ``total`` videos."""

    def __init__(self, mode: str, total: int, stream: TextIO = sys.stderr) -> None:
        self.mode, self.total, self.stream = mode, total, stream
        self.done = 0
        self.started = time.monotonic()
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="video", desc="videos", file=stream,
                             dynamic_ncols=True)

    def update(self, record: Record) -> None:
        """Count one finished video and show it."""
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(f"{record['status']}: {one_line(record['rel_path'])}"[-60:])
            self._bar.update(1)
        elif self.mode == "plain":
            status = record["status"]
            detail = (f"{record.get('num_shots')} shots, {record.get('num_samples') or 0} samples"
                      if status == "accepted" else record["reason"])
            print(f"[{self.done}/{self.total} {self._rate()}] {status:9s} "
                  f"{one_line(record['rel_path'])}: {one_line(str(detail))}", file=self.stream,
                  flush=True)

    def close(self) -> None:
        """End the bar (if any)."""
        if self._bar is not None:
            self._bar.close()

    def _rate(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        per_minute = self.done / elapsed * 60
        left = (self.total - self.done) / (self.done / elapsed)
        return f"{per_minute:.1f}/min, ETA {_clock(left)}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
