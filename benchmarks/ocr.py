"""Time the shot crop stage's OCR per frame and per shot, against one ffmpeg decode of the video.

The default footage is moviepy's ``trailer_bbb.mp4`` (55 s, 1280x720, 11 shots, burned-in
captions), which ``tests/test_shot_crop.py`` caches under ``~/.cache/moga-curate``. Shots come
from the shot split stage; each setting runs ``--rounds`` times and the best round is shown,
as wall and CPU seconds (CPU time is less disturbed by other load on a shared machine).

    python benchmarks/ocr.py [VIDEO] [--rounds 2] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.probe import ProbeConfig, ProbeStage  # noqa: E402
from stages.resources import Resources
from stages.shot_crop.config import ShotCropConfig  # noqa: E402
from stages.shot_crop.ocr import OcrEngine, build_engine  # noqa: E402
from stages.shot_crop.stage import ShotCropStage  # noqa: E402
from stages.shot_split.config import ShotSplitConfig
from stages.shot_split.stage import ShotSplitStage
from stages.video_score import VideoScoreConfig, VideoScoreStage  # noqa: E402

DEFAULT = Path.home() / ".cache" / "moga-curate" / "trailer_bbb.mp4"


class Timed:
    """An OCR engine that sums the wall and CPU seconds spent in detection and recognition."""

    def __init__(self, engine: OcrEngine) -> None:
        self.name, self._engine = engine.name, engine
        self.seconds = {"detect": 0.0, "recognize": 0.0}
        self.cpu = {"detect": 0.0, "recognize": 0.0}
        self.calls = {"detect": 0, "recognize": 0, "crops": 0}

    def detect(self, image):  # noqa: ANN001, ANN201
        return self._timed("detect", self._engine.detect, image)

    def recognize(self, crops):  # noqa: ANN001, ANN201
        self.calls["crops"] += len(crops)
        return self._timed("recognize", self._engine.recognize, crops)

    def _timed(self, step: str, call, arg):  # noqa: ANN001, ANN202
        started, cpu = time.perf_counter(), time.process_time()
        result = call(arg)
        self.seconds[step] += time.perf_counter() - started
        self.cpu[step] += time.process_time() - cpu
        self.calls[step] += 1
        return result


def prepared(path: Path) -> dict:
    """The record the shot crop stage gets: probed, scored, split into shots."""
    record = ProbeStage(ProbeConfig()).process({"path": str(path), "status": "pending"})
    record = VideoScoreStage(VideoScoreConfig()).process(record)
    return ShotSplitStage(ShotSplitConfig()).process(record)


def run_once(record: dict, threads: int) -> tuple[float, float, Timed]:
    """(wall s, CPU s, engine timings) of one ``process`` call on a fresh copy of ``record``."""
    config = ShotCropConfig(resources=Resources(num_cpus=threads))
    engine = Timed(build_engine(config))
    stage = ShotCropStage(config)
    stage._engine = engine  # the benchmark's timing wrapper replaces what setup() builds
    fresh = {**record, "shots": [dict(s) for s in record["shots"]]}
    wall, cpu = time.perf_counter(), time.process_time()
    stage.process(fresh)
    return time.perf_counter() - wall, time.process_time() - cpu, engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path, nargs="?", default=DEFAULT)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if not args.video.exists():
        sys.exit(f"{args.video} missing: run tests/test_shot_crop.py once, or pass a video")
    record = prepared(args.video)
    shots = len(record["shots"])
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(args.video), "-f", "null", "-"], check=True)
    decode = time.perf_counter() - started
    print(f"{args.video.name}: {shots} shots, {record['num_frames']} frames; "
          f"ffmpeg -f null decode {decode:.2f} s")
    for threads in args.threads:
        wall, cpu, engine = min((run_once(record, threads) for _ in range(args.rounds)),
                                key=lambda r: r[0])
        frames, boxes = engine.calls["detect"], max(1, engine.calls["crops"])
        print(f"threads={threads}: stage {wall:.2f} s wall / {cpu:.2f} s CPU "
              f"= {wall / shots:.3f} s per shot, {wall / frames:.3f} s per frame read "
              f"({wall / decode:.1f}x the decode); "
              f"detection {1000 * engine.seconds['detect'] / frames:.0f} ms/frame "
              f"({1000 * engine.cpu['detect'] / frames:.0f} CPU), "
              f"recognition {1000 * engine.seconds['recognize'] / boxes:.0f} ms/box "
              f"({1000 * engine.cpu['recognize'] / boxes:.0f} CPU) "
              f"over {engine.calls['crops']} boxes")


if __name__ == "__main__":
    main()
