"""The background-thread prefetch of the analysis pass: same frames, errors and early stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from curation.decode import iter_analysis_frames, prefetched


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
