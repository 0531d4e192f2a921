"""Which H.264 encoder a worker uses, and its ffmpeg options.

``h264_nvenc`` runs on the GPU's video engine and leaves the CPU free; ``libx264`` runs
anywhere. Debian's ffmpeg lists ``h264_nvenc`` on every machine, GPU or not (it loads the
driver's library only when it opens the encoder), so a worker is found to have it by encoding
a few frames with it, not by reading the encoder list. The answer is kept per process.
"""

from __future__ import annotations

import functools
import re
import subprocess

LIBX264 = "libx264"
NVENC = "h264_nvenc"
AUTO = "auto"

# A trial encode at NVENC's smallest frame size; a worker without a usable GPU fails in well
# under a second, but a stuck driver must not hang the stage.
_TRIAL = ["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "color=size=256x256:rate=24",
          "-frames:v", "4", "-c:v", NVENC, "-f", "null", "-"]
TRIAL_TIMEOUT_S = 30.0
_PREFIX = re.compile(r"^\[[^]]* @ 0x[0-9a-f]+\] ")  # ffmpeg's "[h264_nvenc @ 0x55ec...] "


class EncoderUnavailableError(RuntimeError):
    """The configured encoder cannot encode on this worker."""


def choose_encoder(preference: str) -> str:
    """The encoder for ``preference``: ``auto`` is NVENC where it works on this worker, else
    libx264; a named encoder is checked and raises :class:`EncoderUnavailableError` if it
    cannot encode here."""
    if preference == LIBX264:
        return LIBX264
    problem = nvenc_problem()
    if problem is None:
        return NVENC
    if preference == NVENC:
        raise EncoderUnavailableError(f"h264_nvenc cannot encode on this worker: {problem}")
    return LIBX264


@functools.lru_cache(maxsize=1)
def nvenc_problem() -> str | None:
    """None when a trial ``h264_nvenc`` encode succeeds in this process's environment (its
    visible GPUs), else ffmpeg's reason."""
    try:
        done = subprocess.run(_TRIAL, capture_output=True, text=True, timeout=TRIAL_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{type(err).__name__}: {err}"
    if done.returncode == 0:
        return None
    lines = [_PREFIX.sub("", line).strip() for line in done.stderr.splitlines() if line.strip()]
    return lines[0] if lines else f"ffmpeg exited with status {done.returncode}"


def codec_options(encoder: str, crf: int, preset: str, nvenc_preset: str) -> dict[str, object]:
    """ffmpeg output options of ``encoder`` at quality ``crf`` (x264's CRF; NVENC's constant
    quality ``-cq`` on the same scale, with no bitrate cap)."""
    if encoder == NVENC:
        return {"vcodec": NVENC, "preset": nvenc_preset, "rc": "vbr", "cq": crf, "b:v": 0}
    # One x264 thread: frame-threaded x264 wrote different bytes for the same frames from run
    # to run on a loaded machine (benchmarks/RESULTS.md), and it spends about 5% more CPU; the
    # runner's parallel pieces keep the cores busy instead.
    return {"vcodec": LIBX264, "crf": crf, "preset": preset, "threads": 1}
