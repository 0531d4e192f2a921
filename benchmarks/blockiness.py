"""What the blockiness measure adds to the shot split's analysis pass, per frame.

Decodes ``--frames`` frames of the BBB film (1280x720, from ``--start`` seconds; or of VIDEO) with
deblocking skipped, as the pass decodes them, and keeps them. Then, in ``--rounds`` interleaved
rounds, times per frame: the decode itself (one decoder thread); ``analysis_bgr``, the analysis
frame's conversion, which now also copies the rows the measure reads (``grid_bands``), and the
same with that copy switched off; and ``bands_ratio``, the measure proper, which the pass works
out only on the frames it measures (every ``--stride``-th, 3 by default). Prints the medians
of the rounds and the added cost per decoded frame against the decode.

    python3 benchmarks/blockiness.py [--video VIDEO] [--start 60] [--frames 240] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from bbb import DEFAULT_CACHE, fetch_bbb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import media.stream  # noqa: E402
from media.blockiness import bands_ratio  # noqa: E402
from media.readers import analysis_size  # noqa: E402
from media.stream import analysis_bgr, decoded_frames, open_video  # noqa: E402


def _decode(path: str, start: float, count: int) -> list:
    """``count`` frames from ``start`` seconds, decoded as the analysis pass decodes them."""
    frames = []
    with open_video(path, skip_loop_filter=True, threads=1) as (container, stream):
        container.seek(int(start / stream.time_base), stream=stream)
        for frame in decoded_frames(container, stream):
            frames.append(frame)
            if len(frames) == count:
                break
    return frames


def main() -> None:
    """Time the three steps in interleaved rounds; print ms per frame."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", type=Path)
    parser.add_argument("--start", type=float, default=60.0)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--stride", type=int, default=3)
    args = parser.parse_args()
    path = str(args.video or fetch_bbb(DEFAULT_CACHE))
    times: dict[str, list[float]] = {"decode": [], "analysis_bgr": [],
                                     "analysis_bgr without the copy": [], "bands_ratio": []}
    copy = media.stream.grid_bands
    for _ in range(args.rounds):
        began = time.perf_counter()
        frames = _decode(path, args.start, args.frames)
        times["decode"].append(time.perf_counter() - began)
        size = analysis_size(frames[0].width, frames[0].height, 256)
        media.stream.grid_bands = lambda *_: None
        began = time.perf_counter()
        for frame in frames:
            analysis_bgr(frame, size)
        times["analysis_bgr without the copy"].append(time.perf_counter() - began)
        media.stream.grid_bands = copy
        began = time.perf_counter()
        analysed = [analysis_bgr(frame, size) for frame in frames]
        times["analysis_bgr"].append(time.perf_counter() - began)
        began = time.perf_counter()
        for bgr in analysed:
            bands_ratio(bgr.grid_bands)
        times["bands_ratio"].append(time.perf_counter() - began)
    ms = {name: 1e3 * statistics.median(spent) / args.frames for name, spent in times.items()}
    print(f"{frames[0].width}x{frames[0].height}, {args.frames} frames, {args.rounds} rounds "
          "(median ms per frame):")
    for name, value in ms.items():
        print(f"  {name:30s} {value:.3f}")
    added = (ms["analysis_bgr"] - ms["analysis_bgr without the copy"]
             + ms["bands_ratio"] / args.stride)
    print(f"  added per decoded frame (stride {args.stride}): {added:.3f} ms, "
          f"{added / ms['decode']:.1%} of the decode")


if __name__ == "__main__":
    main()
