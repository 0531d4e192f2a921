"""Run progress: plain lines with rate and ETA, quiet silence, auto picks by terminal."""

from __future__ import annotations

import io

from curation.progress import Progress, resolve_mode


def _record(name: str, status: str = "accepted") -> dict:
    return {"rel_path": name, "status": status, "num_shots": 3, "num_samples": 1,
            "reason": None if status == "accepted" else "probe.empty_file: zero bytes"}


def test_plain_mode_prints_a_line_per_video_with_rate_and_eta() -> None:
    out = io.StringIO()
    progress = Progress("plain", 2, out)
    progress.update(_record("a.mp4"))
    progress.update(_record("b.mp4", "failed"))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[1/2 ") and "ETA" in lines[0] and "3 shots, 1 samples" in lines[0]
    assert lines[1].startswith("[2/2 ") and "probe.empty_file" in lines[1]


def test_quiet_mode_prints_nothing_and_auto_is_plain_off_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress("quiet", 1, out)
    progress.update(_record("a.mp4"))
    progress.close()
    assert out.getvalue() == ""
    assert resolve_mode("auto", io.StringIO()) == "plain"
    assert resolve_mode("bar", io.StringIO()) == "bar"
