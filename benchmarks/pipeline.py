"""Time the whole pipeline without captioning (through the encode) against one decode.

``curate run`` with the default pipeline on the full Big Buck Bunny film, alternating with
``ffmpeg -i bbb.mp4 -f null -`` (see :mod:`benchmarks.bbb`); prints each stage's seconds per
minute of source. Target: at most 2.5 including the encode.

    python benchmarks/pipeline.py [--rounds 2] [--cache ~/.cache/moga-curate]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bbb import DEFAULT_CACHE, curate_vs_decode, fetch_bbb, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    film = fetch_bbb(args.cache)
    decode, curate, summary = curate_vs_decode(film, "{}\n", args.rounds)
    report(decode, curate, summary, target=2.5)
    minutes = summary["accepted_hours"] * 60
    for stage, seconds in summary["stage_seconds"].items():
        print(f"  {stage:13s} {seconds / minutes:7.3f} s per minute of source")


if __name__ == "__main__":
    main()
