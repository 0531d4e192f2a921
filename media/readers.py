"""Frame access for the analysis stages.

Random access (sampled frames): decord first, PyAV when decord cannot open the file or fails on a
read; both readers give RGB ``uint8`` frames at a requested size and key-frame indices, numbered
alike. Whole-video passes: :func:`iter_analysis_frames`, a PyAV pass that costs about one plain
decode.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from media.stream import decoded_frames, open_video

log = logging.getLogger(__name__)


class FrameReader(Protocol):
    """What the stages need from a decoder."""

    backend: str
    num_frames: int

    def key_indices(self) -> list[int]:
        """Display-order indices of the key frames."""

    def frames_at(self, indices: list[int]) -> np.ndarray:
        """Frames at ``indices`` as (n, H, W, 3) RGB."""


def analysis_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    """(w, h) with width ``target_width`` (never upscaled) and the source aspect, both
    multiples of 4 (so 4:2:0 chroma planes downscale to whole rows)."""
    w = max(4, min(target_width, width) // 4 * 4)
    h = max(4, int(round(height * w / width / 4)) * 4)
    return w, h


def open_reader(path: str, size: tuple[int, int] | None = None) -> FrameReader:
    """Open ``path`` with decord; fall back to PyAV if decord refuses it (and, through
    :class:`DecordReader`, if decord fails on a read later)."""
    try:
        return DecordReader(path, size)
    except Exception as err:  # decord raises its own DECORDError or RuntimeError
        log.info("decord could not open %s (%s); using PyAV", path, err)
        return PyAVReader(path, size)


class DecordReader:
    """Random-access reader over decord's VideoReader that switches to PyAV when decord fails.

    decord fails on some valid streams only while reading: with three or more frame threads (its
    default on two or more cores) it can stop with EAGAIN from ``avcodec_send_packet`` on VP9
    with alt-ref superframes (two-pass libvpx-vp9). A read that raises is redone by a
    :class:`PyAVReader` (same frame numbering, size and format), which serves every later read;
    ``backend`` then says ``pyav``.
    """

    def __init__(self, path: str, size: tuple[int, int] | None) -> None:
        import decord

        self.backend = "decord"
        self._path, self._size = path, size
        self._pyav: PyAVReader | None = None
        kwargs = {"width": size[0], "height": size[1]} if size else {}
        self._vr = decord.VideoReader(path, num_threads=0, **kwargs)
        self.num_frames = len(self._vr)
        if self.num_frames == 0:
            raise ValueError("decord found no frames")

    def key_indices(self) -> list[int]:
        if self._pyav is None:
            try:
                return [int(i) for i in self._vr.get_key_indices()]
            except Exception as err:  # decord raises its own DECORDError types
                self._switch(err)
        return self._pyav.key_indices()

    def frames_at(self, indices: list[int]) -> np.ndarray:
        if self._pyav is None:
            try:
                return self._vr.get_batch(list(indices)).asnumpy()
            except Exception as err:  # decord raises its own DECORDError types
                self._switch(err)
        return self._pyav.frames_at(indices)

    def _switch(self, err: Exception) -> None:
        """Serve this and every later read with PyAV."""
        log.warning("decord failed reading %s (%s: %s); using PyAV for this file", self._path,
                    type(err).__name__, err)
        self._pyav = PyAVReader(self._path, self._size)
        self._vr = None
        self.backend = self._pyav.backend


class PyAVReader:
    """Reader over PyAV for containers and codecs decord cannot handle (seeks by decoding).

    Frame ``i`` is the ``i``-th decoded frame, as in decord and :func:`iter_timed_frames`. Frames
    are scaled and converted to RGB in one bilinear step, as decord's scaler does.
    """

    backend = "pyav"

    def __init__(self, path: str, size: tuple[int, int] | None) -> None:
        import av

        self._path = path
        self._size = size
        with av.open(path) as container:
            stream = container.streams.video[0]
            packets = [
                (p.pts, p.is_keyframe)
                for p in container.demux(stream)
                if p.pts is not None and p.size > 0
            ]
        packets.sort()  # decode order to display order
        self._keys = [i for i, (_, key) in enumerate(packets) if key]
        self._key_of = {packets[i][0]: i for i in self._keys}  # pts -> index of each key frame
        self.num_frames = len(packets)
        if self.num_frames == 0:
            raise ValueError(f"PyAV found no video frames in {path}")

    def key_indices(self) -> list[int]:
        return list(self._keys)

    def frames_at(self, indices: list[int]) -> np.ndarray:
        """Frames at ``indices``; a frame that does not decode (a damaged packet) is replaced by
        the nearest one that did, with a warning naming it."""
        wanted = set(indices)
        keys_only = wanted <= set(self._keys)
        picked: dict[int, np.ndarray] = {}
        last: tuple[int, Any] | None = None  # the last decoded frame with an index
        with open_video(self._path) as (container, stream):
            if keys_only:  # a hint: some decoders (VP9) still give every frame
                stream.codec_context.skip_frame = "NONKEY"
            for number, frame in enumerate(decoded_frames(container, stream)):
                index = self._key_of.get(frame.pts) if keys_only else number
                if index is None:
                    continue
                last = (index, frame)
                if index in wanted:
                    picked[index] = self._rgb(frame)
                    if len(picked) == len(wanted):
                        break
        missing = sorted(wanted - set(picked))
        if missing:
            if last is None:
                raise ValueError(f"no frame of {self._path} decoded")
            log.warning("%s: frames %s of %d did not decode; using the nearest decoded frames",
                        self._path, missing, self.num_frames)
            picked.setdefault(last[0], self._rgb(last[1]))
            for index in missing:
                picked[index] = picked[min(picked, key=lambda i: abs(i - index))]
        return np.stack([picked[i] for i in indices])

    def _rgb(self, frame: Any) -> np.ndarray:
        """A decoded frame as RGB at the reader's size."""
        width, height = self._size or (None, None)
        return frame.reformat(width, height, format="rgb24", interpolation="BILINEAR").to_ndarray()
