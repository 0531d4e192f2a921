"""Shared by the curation benchmarks: the Big Buck Bunny film and a timed curate-vs-decode run.

The footage is the full Big Buck Bunny film (596 s, 1280x720, 24 fps, H.264 + AAC) that the
``moviepy==2.2.1`` source archive on PyPI carries. ``ffmpeg -f null`` decodes and ``curate run``
alternate ``rounds`` times in one process tree; ratios are of medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ARCHIVE_MEMBER = ("moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/"
                  "moviepy_10_minutes.zip")
DEFAULT_CACHE = Path.home() / ".cache" / "moga-curate"


def fetch_bbb(cache: Path) -> Path:
    """The full BBB film, extracted once from the moviepy 2.2.1 sdist on PyPI."""
    film = cache / "bbb.mp4"
    if film.exists():
        return film
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "moviepy==2.2.1", "-d", str(cache), "-q"], check=True)
    with tarfile.open(cache / "moviepy-2.2.1.tar.gz") as archive:
        inner = archive.extractfile(ARCHIVE_MEMBER)
        assert inner is not None
        with zipfile.ZipFile(inner) as zipped:
            name = next(n for n in zipped.namelist() if n.endswith("/bbb.mp4"))
            film.write_bytes(zipped.read(name))
    return film


def bbb_minutes(cache: Path, minutes: float) -> Path:
    """A cached input of about ``minutes``: 10 is the film itself (596 s), a multiple of 10 is
    that many back-to-back copies (ffmpeg's concat demuxer, ``-c copy``, no re-encode), and less
    than 10 is the film's first ``minutes`` (``-t``, ``-c copy``, so it ends on a packet)."""
    film = fetch_bbb(cache)
    if minutes == 10:
        return film
    if minutes > 10 and minutes % 10 == 0:
        target, copies = cache / f"bbb_x{int(minutes // 10)}.mp4", int(minutes // 10)
        inputs = ["-f", "concat", "-safe", "0", "-i", str(cache / f"bbb_x{copies}.txt")]
    elif 0 < minutes < 10:
        target, copies = cache / f"bbb_{minutes:g}min.mp4", 0
        inputs = ["-i", str(film), "-t", f"{minutes * 60:g}"]
    else:
        raise ValueError(f"minutes must be below 10 or a multiple of 10, not {minutes}")
    if target.exists():
        return target
    if copies:
        (cache / f"bbb_x{copies}.txt").write_text(f"file '{film.resolve()}'\n" * copies)
    partial = target.with_suffix(".partial.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-c", "copy", str(partial)],
                   check=True)
    partial.rename(target)
    return target


def timed(cmd: list[str], cwd: Path | None = None) -> float:
    """Wall seconds of ``cmd`` (run in ``cwd``); raises if it fails."""
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    return time.perf_counter() - started


def curate_vs_decode(film: Path, config_yaml: str, rounds: int) -> tuple[list, list, dict]:
    """(decode seconds, curate seconds, last summary.json) for ``rounds`` alternating runs."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, out, config = Path(tmp, "raw"), Path(tmp, "out"), Path(tmp, "pipeline.yaml")
        raw.mkdir()
        (raw / film.name).symlink_to(film)
        config.write_text(config_yaml)
        decode, curate = [], []
        for _ in range(rounds):
            decode.append(timed(["ffmpeg", "-v", "error", "-i", str(film), "-f", "null", "-"]))
            curate.append(timed([sys.executable, "-m", "curation.cli", "run", str(raw), str(out),
                                 "-c", str(config), "--overwrite"]))
        summary = json.loads((out / "summary.json").read_text())
    return decode, curate, summary


def report(decode: list[float], curate: list[float], summary: dict, target: float) -> float:
    """Print the timings and the ratio of medians; return the ratio."""
    ratio = statistics.median(curate) / statistics.median(decode)
    print(f"ffmpeg -f null decode: {[round(t, 2) for t in decode]} s")
    print(f"curate run:            {[round(t, 2) for t in curate]} s")
    print(f"stage seconds (last run): {summary['stage_seconds']}")
    print(f"shots: {summary['shots']}, samples: {summary.get('samples')}, "
          f"status: {summary['status']}")
    print(f"ratio curate / decode (medians): {ratio:.2f}  (target <= {target})")
    return ratio


def main(description: str, config_yaml: str, target: float) -> None:
    """Command line shared by the curation benchmarks: fetch the film, time, report."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    film = fetch_bbb(args.cache)
    decode, curate, summary = curate_vs_decode(film, config_yaml, args.rounds)
    report(decode, curate, summary, target)
    minutes = summary["accepted_hours"] * 60
    for stage, seconds in summary["stage_seconds"].items():
        if seconds:
            print(f"  {stage:13s} {seconds / minutes:7.3f} s per minute of source")
