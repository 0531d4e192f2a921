"""Time the video-level stages (probe, video score, video filter, shot split) against one decode.

``curate run`` with ``stop_after: shot_split`` on the full Big Buck Bunny film, alternating with
``ffmpeg -i bbb.mp4 -f null -`` (see :mod:`benchmarks.bbb`). Target: at most 1.5.

    python benchmarks/foundation.py [--rounds 2] [--cache ~/.cache/moga-curate]
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
    report(*curate_vs_decode(film, "stop_after: shot_split\n", args.rounds), target=1.5)


if __name__ == "__main__":
    main()
