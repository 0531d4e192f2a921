"""Is the sample encode deterministic, and what does one x264 thread cost? Encodes the same
sample (the resume test's generated video: 256x144 moving test pattern, 96 frames, 3 cuts; or
seconds of the BBB film from --start with --bbb; or of VIDEO) through the real EncodeStage several
times per x264 setting, in interleaved rounds, optionally beside busy loops that load the
machine, and prints per setting: distinct mp4 digests, CPU seconds (this process and its
ffmpeg), wall seconds and bytes. ``threads=auto`` is the encoder before the fix (x264 picks
its frame threads).

    python3 benchmarks/x264_threads.py [--bbb | --video VIDEO] [--start 0] [--seconds 10]
                                       [--repeats 12] [--burn 3]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
from bbb import DEFAULT_CACHE, fetch_bbb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stages.encode.writer as encode_writer  # noqa: E402
from stages.encode.config import EncodeConfig
from stages.encode.stage import EncodeStage
from tests import media  # noqa: E402

ONE_THREAD = encode_writer.encoder_args


def _auto_threads(*args: object, **kwargs: object) -> list[str]:
    """The encoder's arguments without ``-threads 1``: x264 chooses its frame threads."""
    command = ONE_THREAD(*args, **kwargs)
    at = command.index("-threads")
    return command[:at] + command[at + 2:]


SETTINGS: dict[str, Callable[..., list[str]]] = {"threads=1": ONE_THREAD,
                                                 "threads=auto": _auto_threads}


def _burn() -> None:
    while True:
        pass


def _cpu_seconds() -> float:
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def _record(path: Path) -> dict:
    """A 24 fps video record with one sample and one shot over all its frames."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        width, height, frames = stream.width, stream.height, stream.frames
    sample = {"start_frame": 0, "end_frame": frames, "shot_indices": [0],
              "shot_spans": [[0, frames]], "crop_x": 0, "crop_y": 0, "crop_w": width,
              "crop_h": height, "crop_kept_fraction": 1.0, "split_shot": False,
              "sample_id": "bench-0000", "sample_index": 0}
    return {"video_id": "bench", "path": str(path), "status": "pending", "fps": 24.0,
            "fps_variable": False, "rotation": 0, "width": width, "height": height,
            "samples": [sample]}


def _encode(source: Path, folder: Path) -> tuple[bytes, float, float]:
    """One encode of the sample: (mp4 bytes, cpu s, wall s)."""
    record = _record(source)
    cpu, start = _cpu_seconds(), time.perf_counter()
    staging = Path(tempfile.mkdtemp(dir=folder))
    record = EncodeStage(EncodeConfig(), staging).process(record)
    assert record["status"] == "pending", record.get("reason")
    data = Path(record["samples"][0]["mp4_path"]).read_bytes()
    return data, _cpu_seconds() - cpu, time.perf_counter() - start


def main() -> None:
    """Cut the window once, encode it per setting in interleaved rounds, print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", type=Path)
    parser.add_argument("--bbb", action="store_true", help="the BBB film instead of VIDEO")
    parser.add_argument("--start", type=float, default=0.0)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--burn", type=int, default=0, help="busy loops beside the encodes")
    args = parser.parse_args()
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.burn)]
    results: dict[str, list[tuple[str, float, float, int]]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "window.mp4"
        video = fetch_bbb(DEFAULT_CACHE) if args.bbb else args.video
        if video is None:
            video = Path(folder) / "generated.mp4"
            media.make_cuts(video, [30, 30, 36], w=256, h=144, moving=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(args.start), "-i", str(video),
                        "-t", str(args.seconds), "-vf", "fps=24", "-c:v",
                        "libx264", "-crf", "18", "-an", str(source)], check=True)
        for burner in burners:
            burner.start()
        for _ in range(args.repeats):
            for name, arguments in SETTINGS.items():
                encode_writer.encoder_args = arguments
                data, cpu, wall = _encode(source, Path(folder))
                results[name].append((hashlib.md5(data).hexdigest(), cpu, wall, len(data)))
        for burner in burners:
            burner.terminate()
    print(f"{video.name}: {args.seconds} s from {args.start:g} s as one sample encoded at 480p, "
          f"{args.repeats} encodes per setting, {args.burn} busy loops beside")
    print(f"{'setting':<14}{'digests':>8}{'cpu s (median)':>16}{'wall s (median)':>17}"
          f"{'bytes':>10}")
    for name, runs in results.items():
        cpus = sorted(run[1] for run in runs)
        walls = sorted(run[2] for run in runs)
        print(f"{name:<14}{len({run[0] for run in runs}):>8}{cpus[len(cpus) // 2]:>16.2f}"
              f"{walls[len(walls) // 2]:>17.2f}{runs[0][3]:>10}")


if __name__ == "__main__":
    main()
