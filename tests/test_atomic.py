"""Atomic file writes: the content lands whole, or the old file stays and no temp file is left."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from common.atomic import atomic_file, atomic_write_bytes


def test_the_content_lands_and_no_temp_file_is_left(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with atomic_file(target) as handle:
        handle.write(b"one ")
        handle.write(b"two")
        assert not target.exists()  # nothing visible until the block ends
        assert [p.name[:9] for p in tmp_path.iterdir()] == [".out.bin."]  # the temp file
    assert target.read_bytes() == b"one two"
    atomic_write_bytes(target, b"three")
    assert target.read_bytes() == b"three"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_an_exception_inside_keeps_the_old_file_and_removes_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(OSError) as raised, atomic_file(target) as handle:
        handle.write(b"half of the new")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(target)  # named, for curation.output.disk_full
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_torch_save_payload_round_trips(tmp_path: Path) -> None:
    target = tmp_path / "state.pt"
    state = {"w": torch.arange(6.0).reshape(2, 3), "step": 7}
    with atomic_file(target) as handle:
        torch.save(state, handle)
    loaded = torch.load(target)
    assert loaded["step"] == 7 and torch.equal(loaded["w"], state["w"])
