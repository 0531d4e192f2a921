"""Throughput and agreement of the learned shot-boundary models on each device and precision.

Times :meth:`stages.shot_split.models.BoundaryModel.predict` on batches of 100-frame windows
(50 predicted frames each) and the streamed :class:`stages.shot_split.learned.WindowedScorer`
over a synthetic film, on the CPU and (when there is one) the GPU, in fp32 and bf16; checks that
every device and precision finds the cuts fp32 on the CPU finds. Needs no decoder: the film is
made in memory (shots of moving colour gradients, hard cuts at known frames).

    python3 benchmarks/shot_models.py --models transnetv2,autoshot --out results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stages.shot_split.fusion import learned_boundaries  # noqa: E402
from stages.shot_split.learned import CONTEXT, PREDICTED, WindowedScorer  # noqa: E402
from stages.shot_split.models import THRESHOLDS, load_model  # noqa: E402


def synthetic_film(frames: int, shot: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """(48x27 RGB frames, true cuts): shots of ``shot`` frames, each a gradient in its own
    colours drifting a pixel per frame, so frames within a shot move and shots differ."""
    rng = np.random.default_rng(seed)
    x = np.arange(48)[None, :, None]
    y = np.arange(27)[:, None, None]
    film = np.empty((frames, 27, 48, 3), np.uint8)
    for start in range(0, frames, shot):
        a, b = rng.uniform(20, 235, (2, 3))
        for i in range(start, min(frames, start + shot)):
            t = ((x + y + (i - start)) % 75) / 74.0
            film[i] = np.broadcast_to(a + (b - a) * t, (27, 48, 3)).astype(np.uint8)
    return film, list(range(shot, frames, shot))


def time_predict(model: object, batch: int, repeats: int) -> float:
    """Predicted frames per second for batches of ``batch`` random windows."""
    windows = np.random.default_rng(1).integers(0, 255, (batch, 100, 27, 48, 3), np.uint8)
    model.predict(windows)  # warm-up (cuDNN plans, oneDNN primitives)
    start = time.perf_counter()
    for _ in range(repeats):
        model.predict(windows)
    return repeats * batch * PREDICTED / (time.perf_counter() - start)


def stream(model: object, film: np.ndarray, batch: int) -> tuple[float, np.ndarray]:
    """(frames per second, cut probabilities) of the streamed scorer over every frame."""
    scorer = WindowedScorer(model, 0, None, 2 * CONTEXT + PREDICTED, batch)
    scorer.request_every_frame()
    start = time.perf_counter()
    for index, frame in enumerate(film):
        scorer.push(index, frame)
    cut, _ = scorer.finish()
    return len(film) / (time.perf_counter() - start), cut


def measure(name: str, device: str, bf16: bool, film: np.ndarray, cpu_cut: np.ndarray | None
            ) -> dict:
    """One row: throughput by batch size, streamed fps, and agreement with the CPU fp32 run."""
    model = load_model(name, device, bf16)
    on_gpu = device.startswith("cuda")
    batches, repeats = ((1, 8, 32), 20) if on_gpu else ((1, 4), 2)
    row = {"model": name, "device": device, "bf16": model.bf16,
           "predicted_fps": {b: round(time_predict(model, b, repeats)) for b in batches}}
    fps, cut = stream(model, film, 32 if on_gpu else 1)
    cuts, _ = learned_boundaries(cut, cut, THRESHOLDS[name], 4)
    row.update(stream_fps=round(fps), cuts=cuts)
    if cpu_cut is not None:
        row["max_abs_diff_vs_cpu_fp32"] = float(np.nanmax(np.abs(cut - cpu_cut)))
    return row


def main() -> None:
    """Measure each model on each device and precision; print and optionally save JSON."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="transnetv2,autoshot")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--cpu-frames", type=int, default=400)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    for name in args.models.split(","):
        film, truth = synthetic_film(args.frames, 73)
        short = film[:args.cpu_frames]
        reference = measure(name, "cpu", False, short, None)
        cpu_cut = stream(load_model(name, "cpu", False), short, 1)[1]
        rows.append({**reference, "truth": [c for c in truth if c < args.cpu_frames]})
        rows.append(measure(name, "cpu", True, short, cpu_cut))
        if torch.cuda.is_available():
            for bf16 in (False, True):
                gpu = measure(name, "cuda", bf16, film, None)
                gpu_short = stream(load_model(name, "cuda", bf16), short, 32)[1]
                gpu["max_abs_diff_vs_cpu_fp32"] = float(np.nanmax(np.abs(gpu_short - cpu_cut)))
                gpu["truth"] = truth
                rows.append(gpu)
        for row in rows[-4:]:
            print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
