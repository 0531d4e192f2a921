"""Test videos made with the system ffmpeg from lavfi sources, with their true boundaries.

Every generator writes H.264 mp4 and returns the ground truth the tests check against.
No command goes through a shell.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tarfile
from pathlib import Path

from media.seek import FrameGrid

# Where registry-shipped footage is extracted once (beside benchmarks/bbb.py's film).
CACHE = Path.home() / ".cache" / "moga-curate"
TRAILER_MEMBER = ("moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/"
                  "trailer_bbb.mp4")

# One x264 thread: frame-threaded x264 writes different bytes for the same frames now and then
# on a loaded machine (benchmarks/RESULTS.md), and a test's input must be the same every run.
X264 = ["-c:v", "libx264", "-threads", "1"]

# Visually distinct lavfi sources; each is a different "shot".
SOURCES = [
    "testsrc2=size={w}x{h}:rate={fps}",
    "smptehdbars=size={w}x{h}:rate={fps}",
    "mandelbrot=size={w}x{h}:rate={fps}",
    # colours and end points fixed: ffmpeg draws them at random on every run, seed or not, so
    # a fourth shot differed from run to run and a borderline transition came and went
    "gradients=size={w}x{h}:rate={fps}:speed=0.02:nb_colors=2:c0=0x7a1fb4:c1=0xf0c020:"
    "x0=0:y0=0:x1={w1}:y1={h1}",
    "rgbtestsrc=size={w}x{h}:rate={fps}",
]


# Moving, text-free sources (nothing for OCR to crop, nothing frozen): a long multi-shot film.
MOVING_SOURCES = [
    "mandelbrot=size={w}x{h}:rate={fps}",
    # Colours, end points and seeds fixed: left to ffmpeg, gradients' colours and sierpinski's
    # pattern are random per run, and a draw of two close colours made a low-contrast shot that
    # the shot filter dropped now and then (test_curate_then_train got three samples, not two).
    "gradients=size={w}x{h}:rate={fps}:speed=0.01:nb_colors=3:c0=0x1f77b4:c1=0xff7f0e:"
    "c2=0x2ca02c:x0=0:y0=0:x1={w1}:y1={h1}",
    "sierpinski=size={w}x{h}:rate={fps}:seed=3",
]


def _ffmpeg(args: list[str]) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def _source(template: str, w: int, h: int, fps: int) -> str:
    """A lavfi source of ``template`` at ``w`` x ``h`` and ``fps``."""
    return template.format(w=w, h=h, fps=fps, w1=w - 1, h1=h - 1)


def _inputs(frames: list[int], w: int, h: int, fps: int, sources: list[str] = SOURCES) -> list[str]:
    args: list[str] = []
    for i, n in enumerate(frames):
        src = _source(sources[i % len(sources)], w, h, fps)
        args += ["-f", "lavfi", "-i",
                 f"{src},trim=end_frame={n},setpts=PTS-STARTPTS,format=yuv420p"]
    return args


def _encode(path: Path, fps: int) -> list[str]:
    return [*X264, "-preset", "veryfast", "-crf", "20", "-g", str(2 * fps),
            "-pix_fmt", "yuv420p", "-r", str(fps), str(path)]


def make_cuts(path: Path, frames: list[int], w: int = 320, h: int = 180, fps: int = 24,
              moving: bool = False) -> list[int]:
    """Concatenate shots of ``frames`` frames each; return the cut frames. ``moving`` takes the
    text-free moving sources, so every shot survives the shot filter and the OCR crop."""
    n = len(frames)
    graph = "".join(f"[{i}:v]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    sources = MOVING_SOURCES if moving else SOURCES
    _ffmpeg([*_inputs(frames, w, h, fps, sources), "-filter_complex", graph, "-map", "[v]",
             *_encode(path, fps)])
    cuts, total = [], 0
    for count in frames[:-1]:
        total += count
        cuts.append(total)
    return cuts


def make_dissolve(
    path: Path, first: int, second: int, blend: int, w: int = 320, h: int = 180, fps: int = 24
) -> tuple[int, int]:
    """Shot A (``first`` frames) dissolving into B over ``blend`` frames; return the blend span.

    xfade starts the blend at frame ``first - blend`` of the output; the span is that frame up to
    the first frame of pure B.
    """
    offset = (first - blend) / fps
    graph = f"[0:v][1:v]xfade=transition=fade:duration={blend / fps}:offset={offset}[v]"
    _ffmpeg([*_inputs([first, second], w, h, fps), "-filter_complex", graph, "-map", "[v]",
             *_encode(path, fps)])
    return first - blend, first


def make_dissolve_then_cuts(
    path: Path, frames: list[int], blend: int, w: int = 320, h: int = 180, fps: int = 24
) -> tuple[tuple[int, int], list[int]]:
    """Shots of ``frames`` frames: the first dissolves into the second over ``blend`` frames,
    the others follow by hard cuts; return the blend span and the cut frames."""
    n = len(frames)
    graph = (f"[0:v][1:v]xfade=transition=fade:duration={blend / fps}:"
             f"offset={(frames[0] - blend) / fps}[ab];[ab]"
             + "".join(f"[{i}:v]" for i in range(2, n)) + f"concat=n={n - 1}:v=1:a=0[v]")
    _ffmpeg([*_inputs(frames, w, h, fps), "-filter_complex", graph, "-map", "[v]",
             *_encode(path, fps)])
    second = frames[0] + frames[1] - blend
    return (frames[0] - blend, frames[0]), [second + sum(frames[2:i]) for i in range(2, n)]


def make_flash(path: Path, flash: range, frames: int = 120, w: int = 320, h: int = 180,
               fps: int = 24) -> None:
    """One moving shot whose frames ``flash`` are blown out to near white (a photographer's
    flash, a lightning strike): no boundary anywhere."""
    source = _source(MOVING_SOURCES[0], w, h, fps)
    blown = f"eq=brightness=0.7:contrast=0.3:enable='between(n,{flash.start},{flash.stop - 1})'"
    _ffmpeg(["-f", "lavfi", "-i", f"{source},trim=end_frame={frames},{blown},format=yuv420p",
             *_encode(path, fps)])


def make_moving_sweeps(path: Path, source: Path, pieces: list[tuple[int, int]],
                       joins: list[tuple[str, int]]) -> list[tuple[int, int]]:
    """Frames ``[start, end)`` of ``source`` for each piece, each joined to the next by the xfade
    transition ``joins[i]`` = (name, frames); return each transition's span (blend start up to
    the first frame of the next piece alone)."""
    fps = _fps(source)
    graph, spans, length, last = "", [], 0, "p0"
    for i, (start, end) in enumerate(pieces):
        graph += f"[0:v]trim=start_frame={start}:end_frame={end},setpts=PTS-STARTPTS[p{i}];"
    length = pieces[0][1] - pieces[0][0]
    for i, ((name, frames), (start, end)) in enumerate(zip(joins, pieces[1:], strict=True)):
        offset = length - frames
        graph += (f"[{last}][p{i + 1}]xfade=transition={name}:duration={frames / fps}:"
                  f"offset={offset / fps}[j{i}];")
        spans.append((offset, length))
        length, last = offset + end - start, f"j{i}"
    _ffmpeg(["-i", str(source), "-filter_complex", graph.rstrip(";"), "-map", f"[{last}]",
             *_encode(path, round(fps))])
    return spans


def _fps(path: Path) -> float:
    rate = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "stream=r_frame_rate", "-of", "csv=p=0", str(path)],
                          check=True, capture_output=True, text=True).stdout.strip()
    numerator, denominator = rate.split("/")
    return int(numerator) / int(denominator)


def misleading_grid(grid: FrameGrid) -> FrameGrid:
    """Timestamps that mislead a seek: half of ``grid``'s frames, the keyframes renumbered to
    match, so decoded frames turn up where this grid has no frame."""
    return dataclasses.replace(grid, pts=grid.pts[::2],
                               keyframes=tuple(sorted({k // 2 for k in grid.keyframes})))


def make_fade_through_black(
    path: Path, first: int, second: int, fade: int, w: int = 320, h: int = 180, fps: int = 24
) -> tuple[int, int]:
    """A fades out to black over ``fade`` frames, then B fades in; return the whole fade span."""
    graph = (
        f"[0:v]fade=t=out:s={first - fade}:n={fade}[a];"
        f"[1:v]fade=t=in:s=0:n={fade}[b];[a][b]concat=n=2:v=1:a=0[v]"
    )
    _ffmpeg([*_inputs([first, second], w, h, fps), "-filter_complex", graph, "-map", "[v]",
             *_encode(path, fps)])
    return first - fade, first + fade


def make_letterboxed(path: Path, frames: int, w: int, h: int, bar: int, fps: int = 24) -> None:
    """A ``w`` x ``h`` video whose picture has black bars of ``bar`` px at top and bottom."""
    src = SOURCES[0].format(w=w, h=h - 2 * bar, fps=fps)
    _ffmpeg(["-f", "lavfi", "-i", f"{src},trim=end_frame={frames},pad={w}:{h}:0:{bar}:black",
             *_encode(path, fps)])


def make_audio_only(path: Path, seconds: float = 2.0) -> None:
    """An mp4 holding only an AAC tone."""
    _ffmpeg(["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac",
             str(path)])


def make_image(path: Path) -> None:
    """A PNG picture written to ``path`` whatever its extension."""
    _ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x180", "-frames:v", "1", "-c:v", "png",
             "-f", "image2", str(path)])


def make_encoded(path: Path, frames: int, w: int, h: int, fps: int = 24, pix_fmt: str = "yuv420p",
                 extra: list[str] | None = None) -> None:
    """One moving shot of ``w`` x ``h`` in ``pix_fmt`` (e.g. yuv420p10le for 10-bit);
    ``extra`` ffmpeg output options such as colour tags."""
    src = _source(MOVING_SOURCES[0], w, h, fps)
    _ffmpeg(["-f", "lavfi", "-i", f"{src},trim=end_frame={frames},format={pix_fmt}",
             *X264, "-preset", "veryfast", "-crf", "20", "-pix_fmt", pix_fmt,
             *(extra or []), str(path)])


def make_hdr(path: Path, frames: int, w: int = 320, h: int = 180) -> None:
    """10-bit video tagged BT.2020 primaries and matrix with the PQ (SMPTE ST 2084) transfer."""
    make_encoded(path, frames, w, h, pix_fmt="yuv420p10le",
                 extra=["-color_primaries", "bt2020", "-color_trc", "smpte2084",
                        "-colorspace", "bt2020nc"])


def make_rotated(source: Path, path: Path, degrees: int) -> None:
    """``source`` remuxed with a display matrix rotating it by ``degrees`` (the mp4 muxer turns
    the ``rotate`` tag into the matrix; ffmpeg 6 spells it ``-display_rotation``)."""
    _ffmpeg(["-i", str(source), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(path)])


def make_variable_fps(path: Path, w: int = 320, h: int = 180) -> list[float]:
    """Two seconds at 30 fps then two at 10 fps in one stream (variable frame rate, kept by
    ``-fps_mode passthrough``); return the frame rates of the parts."""
    graph = ("[0:v]fps=30[a];[1:v]fps=10[b];[a][b]concat=n=2:v=1:a=0[v]")
    src = _source(MOVING_SOURCES[1], w, h, 30)
    _ffmpeg(["-f", "lavfi", "-i", f"{src},trim=duration=2", "-f", "lavfi",
             "-i", f"{_source(MOVING_SOURCES[0], w, h, 30)},trim=duration=2",
             "-filter_complex", graph, "-map", "[v]", "-fps_mode", "passthrough",
             *X264, "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)])
    return [30.0, 10.0]


def make_huge(path: Path, w: int, h: int, frames: int = 2) -> None:
    """A flat grey ``w`` x ``h`` video: a really huge frame size that is cheap to encode."""
    _ffmpeg(["-f", "lavfi", "-i", f"color=c=gray:size={w}x{h}:rate=24,trim=end_frame={frames}",
             *X264, "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)])


def make_cuts_at_rate(path: Path, frames: list[int], rate: str = "30000/1001", gop: int = 60,
                      w: int = 320, h: int = 180) -> list[int]:
    """:func:`make_cuts` at a frame rate ffmpeg spells as a fraction (``30000/1001``: 29.97 fps),
    keyframes at least every ``gop`` frames and x264's B-frames; return the cut frames."""
    n = len(frames)
    graph = "".join(f"[{i}:v]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    _ffmpeg([*_inputs(frames, w, h, rate), "-filter_complex", graph, "-map", "[v]",
             *X264, "-preset", "veryfast", "-crf", "20", "-g", str(gop), "-bf", "3",
             "-pix_fmt", "yuv420p", "-r", rate, str(path)])
    return [sum(frames[:i + 1]) for i in range(n - 1)]


def trailer_bbb(cache: Path = CACHE) -> Path:
    """moviepy's trailer_bbb.mp4 (1280x720, 24 fps, 1323 frames, burned-in captions), extracted
    once into ``cache`` from the moviepy 2.2.1 source archive on PyPI. Raises
    ``subprocess.CalledProcessError`` when pip cannot fetch the archive."""
    film = cache / "trailer_bbb.mp4"
    if film.exists():
        return film
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / "moviepy-2.2.1.tar.gz"
    if not sdist.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", "moviepy==2.2.1", "-d", str(cache), "-q"],
                       check=True, capture_output=True, text=True)
    with tarfile.open(sdist) as archive:
        inner = archive.extractfile(TRAILER_MEMBER)
        assert inner is not None
        part = film.with_suffix(".part")  # a run cut short leaves no half film behind
        part.write_bytes(inner.read())
    part.replace(film)
    return film
