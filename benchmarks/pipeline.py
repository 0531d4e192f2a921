"""Time the whole pipeline without captioning (through the encode) against one decode.

``curate run`` with the default pipeline on the full Big Buck Bunny film, alternating with
``ffmpeg -i bbb.mp4 -f null -`` (see :mod:`benchmarks.bbb`); prints each stage's seconds per
minute of source. Target: at most 2.5 including the encode.

    python benchmarks/pipeline.py [--rounds 2] [--cache ~/.cache/moga-curate]
"""

from bbb import main

if __name__ == "__main__":
    main(__doc__.splitlines()[0], "{}\n", target=2.5)
