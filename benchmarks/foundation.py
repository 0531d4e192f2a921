"""Time the video-level stages (probe, video score, video filter, shot split) against one decode.

``curate run`` with ``stop_after: shot_split`` on the full Big Buck Bunny film, alternating with
``ffmpeg -i bbb.mp4 -f null -`` (see :mod:`benchmarks.bbb`). Target: at most 1.5.

    python benchmarks/foundation.py [--rounds 2] [--cache ~/.cache/moga-curate]
    python benchmarks/foundation.py --compare [--rounds 3]

``--compare`` runs, in every round, the decode and then ``curate run`` twice: with the sparse
analysis pass (the default) and with ``shot_split.sparse_decode: false`` (every frame decoded),
so both see the same load on a shared machine; it prints each variant's ratio of medians and
its ``shot_split`` stage seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bbb import DEFAULT_CACHE, fetch_bbb, main, timed

CONFIG = "stop_after: shot_split\n"
VARIANTS = {"sparse pass": CONFIG,
            "full pass": CONFIG + "stages:\n  shot_split:\n    sparse_decode: false\n"}


def compare(film: Path, rounds: int) -> None:
    """Decode, then each variant, ``rounds`` times; print times, stage seconds and ratios."""
    decode: list[float] = []
    runs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    stage: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp, "raw"), Path(tmp, "out")
        raw.mkdir()
        (raw / film.name).symlink_to(film)
        for _ in range(rounds):
            decode.append(timed(["ffmpeg", "-v", "error", "-i", str(film), "-f", "null", "-"]))
            for name, config_yaml in VARIANTS.items():
                config = Path(tmp, "pipeline.yaml")
                config.write_text(config_yaml)
                runs[name].append(timed([sys.executable, "-m", "curation.cli", "run", str(raw),
                                         str(out), "-c", str(config), "--overwrite"]))
                summary = json.loads((out / "summary.json").read_text())
                stage[name].append(summary["stage_seconds"]["shot_split"])
    print(f"ffmpeg -f null decode: {[round(t, 2) for t in decode]} s")
    for name in VARIANTS:
        ratio = statistics.median(runs[name]) / statistics.median(decode)
        print(f"{name:11s} curate run {[round(t, 2) for t in runs[name]]} s, shot_split "
              f"{[round(t, 1) for t in stage[name]]} s, ratio (medians) {ratio:.2f}")


if __name__ == "__main__":
    if "--compare" in sys.argv:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--compare", action="store_true")
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
        args = parser.parse_args()
        compare(fetch_bbb(args.cache), args.rounds)
    else:
        main(__doc__.splitlines()[0], CONFIG, target=1.5)
