"""Peak RSS and time of one shot_crop piece, in this process.

    python3 benchmarks/ocr_piece_memory.py FILE OFFSET_S

The piece is 75 shots of 4 s (96 frames at 24 fps) starting OFFSET_S seconds into FILE, read the
way the runner's pieces read them (seeking by the timestamp grid when the file has one).
"""

from __future__ import annotations

import argparse
import resource
import time

from media.seek import frame_grid
from stages.probe import ProbeConfig, ProbeStage
from stages.shot_crop.config import ShotCropConfig
from stages.shot_crop.stage import CropChunk, ShotCropStage

SHOTS, SHOT_FRAMES = 75, 96


def main() -> None:
    """Run one piece and print its time, peak RSS and how many shots had text."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file")
    parser.add_argument("offset_s", type=float)
    args = parser.parse_args()
    record = ProbeStage(ProbeConfig()).process(
        {"path": args.file, "status": "pending", "border_w": 0})
    first = int(args.offset_s * 24)
    record["shots"] = [{"shot_index": i, "start_frame": first + i * SHOT_FRAMES,
                        "end_frame": first + (i + 1) * SHOT_FRAMES} for i in range(SHOTS)]
    started = time.perf_counter()
    grid = frame_grid(args.file)
    grid_s = time.perf_counter() - started
    started = time.perf_counter()
    result = ShotCropStage(ShotCropConfig()).process_chunk(
        record, CropChunk(tuple(range(SHOTS)), grid))
    piece_s = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{args.file}: offset {args.offset_s:g} s, grid {'yes' if grid else 'no'} "
          f"({grid_s:.2f} s), piece {piece_s:.1f} s, peak RSS {peak_mib} MiB, "
          f"shots with text {sum(bool(places) for _, _, places in result.shots)}")


if __name__ == "__main__":
    main()
