"""Time the video-level stages (probe, video score, video filter, shot split) against one decode.

``curate run`` with ``stop_after: shot_split`` on the full Big Buck Bunny film, alternating with
``ffmpeg -i bbb.mp4 -f null -`` (see :mod:`benchmarks.bbb`). Target: at most 1.5.

    python benchmarks/foundation.py [--rounds 2] [--cache ~/.cache/moga-curate]
"""

from bbb import main

if __name__ == "__main__":
    main(__doc__.splitlines()[0], "stop_after: shot_split\n", target=1.5)
