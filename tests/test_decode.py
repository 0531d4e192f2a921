"""The analysis passes: prefetch (same frames, errors and early stops) and the sparse pass
(frames numbered and timed exactly as in the full decode, also for variable frame rate)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from media.sparse import FrameNumbering, SparseDecodeError, iter_sparse_frames, iter_window_frames
from media.stream import iter_analysis_frames, prefetched
from tests.media import X264


def test_prefetched_pass_yields_the_same_frames(bikes: Path) -> None:
    plain = list(iter_analysis_frames(str(bikes), (128, 56)))
    ahead = list(iter_analysis_frames(str(bikes), (128, 56), prefetch=8))
    assert len(plain) == len(ahead) == 250
    assert all(a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(plain, ahead,
                                                                           strict=True))


def test_producer_errors_reach_the_consumer_and_early_stop_ends_the_thread() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("broken stream")

    with pytest.raises(ValueError, match="broken stream"):
        list(prefetched(failing(), 2))
    before = threading.active_count()
    for item in prefetched(iter(range(1000)), 4):
        if item == 3:
            break
    assert threading.active_count() <= before


class _EveryThird:
    """Selector of the sparse pass: every third frame besides the reference frames."""

    def wanted(self, index: int) -> bool:
        return index % 3 == 0

    def decoded(self, index: int, frame: np.ndarray) -> int:
        return index


def _sparse_equals_full(path: Path, size: tuple[int, int]) -> tuple[int, int]:
    full = list(iter_analysis_frames(str(path), size))
    numbering = FrameNumbering()
    sparse = list(iter_sparse_frames(str(path), size, _EveryThird(), numbering, prefetch=4))
    assert numbering.seconds() == [seconds for seconds, _ in full]
    assert len(numbering.pts) == len(full) and numbering.keys[0] == 0
    indices = [index for index, _, _ in sparse]
    assert indices == sorted(set(indices)) and set(range(0, len(full), 3)) <= set(indices)
    for index, frame, passed in sparse:
        assert passed == index and np.array_equal(frame, full[index][1])
    windows = [(1, 2), (len(full) // 2 - 3, len(full) // 2 + 3), (len(full) - 5, len(full) - 1)]
    decoded = list(iter_window_frames(str(path), size, windows, numbering))
    assert [i for i, _ in decoded] == [i for start, end in windows for i in range(start, end + 1)]
    assert all(np.array_equal(frame, full[index][1]) for index, frame in decoded)
    return len(sparse), len(full)


def test_sparse_pass_numbers_and_times_frames_like_the_full_decode(bikes: Path) -> None:
    decoded, total = _sparse_equals_full(bikes, (128, 56))
    assert total == 250 and decoded < 0.75 * total  # non-reference frames were skipped


def test_sparse_pass_numbers_variable_frame_rate_exactly(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"  # 30 frames 1/24 s apart, then gaps of 1/24 to 4/24 s
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=24",
                    "-t", "4", "-vf", r"setpts='if(lt(N\,30)\,N\,30+(N-30)*2+mod(N\,3))/24/TB'",
                    "-fps_mode", "vfr", *X264, "-bf", "3", "-g", "48", str(path)],
                   check=True)
    decoded, total = _sparse_equals_full(path, (160, 88))
    assert decoded < total


def test_stream_without_decode_times_is_refused(bikes: Path, tmp_path: Path) -> None:
    path = tmp_path / "bikes.mkv"  # Matroska keeps no decode times for B-frames
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(bikes), "-c", "copy", str(path)], check=True)
    with pytest.raises(SparseDecodeError):
        list(iter_sparse_frames(str(path), (128, 56), _EveryThird(), FrameNumbering()))
