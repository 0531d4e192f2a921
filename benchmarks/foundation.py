"""Time the video-level stages (probe, video score, video filter, shot split) against one decode.

``curate run`` with ``stop_after: shot_split`` on the full Big Buck Bunny film, alternating with
``ffmpeg -i bbb.mp4 -f null -`` (see :mod:`benchmarks.bbb`). Target: at most 1.5.

    python benchmarks/foundation.py [--rounds 2] [--cache ~/.cache/moga-curate]
    python benchmarks/foundation.py --compare [--rounds 3] [--code NAME=DIR ...]

``--compare`` runs, in every round, the decode and then ``curate run`` once per variant, so all
see the same load on a shared machine; it prints each variant's ratio of medians and its
``shot_split`` stage seconds. Without ``--code`` the variants are the shot detectors named by
``--detectors`` (default ``content,fused``; ``transnetv2`` and ``autoshot`` run the model on
every frame, minutes on a CPU), each with the default settings otherwise. Each ``--code NAME=DIR``
is instead a variant that runs the code checked out in DIR (``git archive`` of a commit) with
the default settings, e.g. an older commit against the current one.
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


def detector_config(detector: str) -> str:
    """The benchmark's config with ``shot_split.detector`` set."""
    return CONFIG + f"stages:\n  shot_split:\n    detector: {detector}\n"


def compare(film: Path, rounds: int, variants: dict[str, tuple[str, Path | None]]) -> None:
    """Decode, then each variant (name: config YAML and the code checkout to run, None for the
    installed one), ``rounds`` times; print times, stage seconds and ratios."""
    decode: list[float] = []
    runs: dict[str, list[float]] = {name: [] for name in variants}
    stage: dict[str, list[float]] = {name: [] for name in variants}
    found: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp, "raw"), Path(tmp, "out")
        raw.mkdir()
        (raw / film.name).symlink_to(film)
        for _ in range(rounds):
            decode.append(timed(["ffmpeg", "-v", "error", "-i", str(film), "-f", "null", "-"]))
            for name, (config_yaml, code) in variants.items():
                config = Path(tmp, "pipeline.yaml")
                config.write_text(config_yaml)
                # `python -m` in the checkout imports its packages; Ray's workers get the
                # driver's working directory on their path too
                runs[name].append(timed([sys.executable, "-m", "curation.cli", "run", str(raw),
                                         str(out), "-c", str(config), "--overwrite"], cwd=code))
                summary = json.loads((out / "summary.json").read_text())
                stage[name].append(summary["stage_seconds"]["shot_split"])
                found[name] = _shots_and_model_frames(out)
    print(f"ffmpeg -f null decode: {[round(t, 2) for t in decode]} s")
    for name in variants:
        ratio = statistics.median(runs[name]) / statistics.median(decode)
        print(f"{name:11s} curate run {[round(t, 2) for t in runs[name]]} s, shot_split "
              f"{[round(t, 1) for t in stage[name]]} s, ratio (medians) {ratio:.2f}, "
              f"shots {found[name][0]}, model frames {found[name][1]}")


def _shots_and_model_frames(out: Path) -> tuple[int, int]:
    """(shots, frames the learned model ran over) of the run written to ``out``."""
    import pyarrow.dataset as ds

    videos = ds.dataset(out / "videos", format="parquet").to_table().to_pylist()
    return (sum(v.get("num_shots") or 0 for v in videos),
            sum(v.get("model_frames") or 0 for v in videos))


if __name__ == "__main__":
    if "--compare" in sys.argv:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--compare", action="store_true")
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
        parser.add_argument("--code", action="append", default=[], metavar="NAME=DIR",
                            help="a variant running the code checked out in DIR")
        parser.add_argument("--detectors", default="content,fused")
        args = parser.parse_args()
        variants = {name: (detector_config(name), None) for name in args.detectors.split(",")}
        if args.code:
            variants = {name: (CONFIG, Path(code).resolve())
                        for name, code in (item.split("=", 1) for item in args.code)}
        compare(fetch_bbb(args.cache), args.rounds, variants)
    else:
        main(__doc__.splitlines()[0], CONFIG, target=1.5)
