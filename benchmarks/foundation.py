"""Time ``curate run`` (probe, video score, video filter, shot split) against one ffmpeg decode.

The footage is the full Big Buck Bunny film (596 s, 1280x720, 24 fps, H.264 + AAC) that the
``moviepy==2.2.1`` source archive on PyPI carries. Both commands run in the same process tree,
alternating, ``--rounds`` times; the ratio of medians is the result (target: at most 1.5).

    python benchmarks/foundation.py [--rounds 2] [--cache ~/.cache/moga-curate]
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

ARCHIVE_MEMBER = "moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip"


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


def timed(cmd: list[str]) -> float:
    """Wall seconds of ``cmd``; raises if it fails."""
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "moga-curate")
    args = parser.parse_args()
    film = fetch_bbb(args.cache)
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp, "raw"), Path(tmp, "out")
        raw.mkdir()
        (raw / "bbb.mp4").symlink_to(film)
        decode, curate = [], []
        for _ in range(args.rounds):
            decode.append(timed(["ffmpeg", "-v", "error", "-i", str(film), "-f", "null", "-"]))
            curate.append(timed([sys.executable, "-m", "curation.cli", "run", str(raw), str(out),
                                 "--overwrite"]))
        summary = json.loads((out / "summary.json").read_text())
    ratio = statistics.median(curate) / statistics.median(decode)
    print(f"ffmpeg -f null decode: {[round(t, 2) for t in decode]} s")
    print(f"curate run:            {[round(t, 2) for t in curate]} s")
    print(f"stage seconds (last run): {summary['stage_seconds']}")
    print(f"shots: {summary['shots']}, status: {summary['status']}")
    print(f"ratio curate / decode (medians): {ratio:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
