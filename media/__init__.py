"""Media access, the bottom layer: it imports nothing from ``stages``, ``curation`` or ``models``.

- ``readers``: random access to sampled frames (decord, PyAV when decord fails), and
  :func:`~media.readers.analysis_size`.
- ``stream``: sequential PyAV passes, frames numbered by presentation order, a prefetch thread.
- ``sparse``: decoding only chosen frames (reference frames, windows) of a one-pass video.
- ``seek``: the frame grid from packet timestamps, and decoding from the keyframe before a frame.
"""
