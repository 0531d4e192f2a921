"""Test videos with burned-in text, made with the system ffmpeg's drawtext, and their masks:
the same text drawn alone, white on black and losslessly, which gives the true text area of
every frame.

Shots come from lavfi sources on which the OCR finds no text by itself (testsrc2 prints a clock,
and colour bars or fractals give texture hits), or from real footage (:class:`FootageText`).
No command goes through a shell.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.media import X264

TEXT_FREE_SOURCES = [
    # colours and end points fixed: ffmpeg draws them at random on every run, seed or not, and a
    # dark draw along the bottom read as a letterbox bar now and then
    "gradients=size={w}x{h}:rate={fps}:speed=0.02:nb_colors=2:c0=0x7a1fb4:c1=0xf0c020:"
    "x0=0:y0=0:x1={w1}:y1={h1}",
    "life=size={w}x{h}:rate={fps}:seed=7:mold=10:ratio=0.1:death_color=#203040:life_color=#80c0a0",
    "rgbtestsrc=size={w}x{h}:rate={fps}",
]
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


@dataclass
class TextVideo:
    """What to draw: per shot, subtitles that share the shot's frames equally; optionally a
    watermark in the top-right corner and a caption in the middle, both on every frame."""

    subtitles: list[list[str]]
    shot_frames: int = 48
    watermark: str | None = None
    middle: str | None = None
    bar: int = 0  # black letterbox bars of this height at top and bottom
    size: tuple[int, int] = (640, 360)
    fps: int = 24
    cuts: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.cuts = [self.shot_frames * (i + 1) for i in range(len(self.subtitles) - 1)]


def make_text_video(path: Path, spec: TextVideo, mask: bool = False) -> None:
    """Write ``spec`` as H.264 mp4. ``mask=True`` writes only its text, white (outline too) on
    black and lossless, so ``frames.max() > 0`` is exactly where text was drawn."""
    w, h = spec.size
    n = len(spec.subtitles)
    args: list[str] = []
    for i in range(n):
        picture_h = h - 2 * spec.bar
        src = TEXT_FREE_SOURCES[i % len(TEXT_FREE_SOURCES)].format(
            w=w, h=picture_h, w1=w - 1, h1=picture_h - 1, fps=spec.fps)
        if mask:
            src = f"color=black:size={w}x{h - 2 * spec.bar}:rate={spec.fps}"
        args += ["-f", "lavfi", "-i",
                 f"{src},trim=end_frame={spec.shot_frames},setpts=PTS-STARTPTS,format=yuv420p"]
    chain = [f"concat=n={n}:v=1:a=0", f"pad={w}:{h}:0:{spec.bar}:black",
             *_text_filters(spec, "white" if mask else "black")]
    graph = "".join(f"[{i}:v]" for i in range(n)) + ",".join(chain) + "[v]"
    quality = ["-qp", "0"] if mask else ["-crf", "18"]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", *args, "-filter_complex", graph, "-map", "[v]",
         *X264, "-preset", "veryfast", *quality, "-g", str(2 * spec.fps),
         "-pix_fmt", "yuv420p", "-r", str(spec.fps), str(path)],
        check=True,
    )


def _text_filters(spec: TextVideo, outline: str) -> list[str]:
    style = f"fontfile={FONT}:fontcolor=white:borderw=2:bordercolor={outline}"
    filters = []
    bottom = spec.size[1] - spec.bar - 40
    for shot, lines in enumerate(spec.subtitles):
        step = spec.shot_frames // len(lines)
        for k, line in enumerate(lines):
            first = shot * spec.shot_frames + k * step
            filters.append(f"drawtext={style}:fontsize=24:text='{line}':x=(w-text_w)/2:y={bottom}"
                           f":enable='between(n,{first},{first + step - 1})'")
    if spec.watermark:
        filters.append(f"drawtext={style}:fontsize=20:text='{spec.watermark}'"
                       f":x=w-text_w-16:y={spec.bar + 16}")
    if spec.middle:
        filters.append(f"drawtext={style}:fontsize=40:text='{spec.middle}'"
                       ":x=(w-text_w)/2:y=(h-text_h)/2")
    return filters



@dataclass
class FootageText:
    """Text over real footage scaled to ``size``: subtitles that share its frames equally, and a
    faint watermark in the top-right corner (white at ``watermark_alpha``, no outline) on every
    frame, which OCR reads on some shots and misses on others."""

    subtitles: list[str]
    watermark: str
    watermark_alpha: float = 0.3
    size: tuple[int, int] = (854, 480)


def make_footage_text_video(path: Path, footage: Path, frames: int, spec: FootageText,
                            mask: bool = False) -> None:
    """Write the first ``frames`` frames of ``footage`` with ``spec``'s text as H.264 mp4 at
    the footage's rate; ``mask=True`` as in :func:`make_text_video` (every text fully opaque)."""
    w, h = spec.size
    chain = [f"scale={w}:{h}", "setsar=1", *(["drawbox=color=black:t=fill"] if mask else [])]
    style = f"fontfile={FONT}:fontcolor=white:borderw=2:bordercolor={'white' if mask else 'black'}"
    step = frames // len(spec.subtitles)
    for k, line in enumerate(spec.subtitles):
        chain.append(f"drawtext={style}:fontsize=26:text='{line}':x=(w-text_w)/2:y=h-60"
                     f":enable='between(n,{k * step},{k * step + step - 1})'")
    alpha = 1.0 if mask else spec.watermark_alpha
    chain.append(f"drawtext=fontfile={FONT}:fontcolor=white@{alpha}:fontsize=24"
                 f":text='{spec.watermark}':x=w-text_w-16:y=16")
    quality = ["-qp", "0"] if mask else ["-crf", "18"]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(footage), "-filter_complex",
         f"[0:v]{','.join(chain)}[v]", "-map", "[v]", "-frames:v", str(frames),
         *X264, "-preset", "veryfast", *quality, "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
