"""Captioning inside ``curate run``: the tiny Qwen2.5-VL through the real path, and preflight."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests import media
from tests.tiny_models import build_tiny_qwen25vl

pytestmark = pytest.mark.slow
CURATE = [sys.executable, "-m", "curation.cli", "run"]


def test_captions_land_in_shards_index_and_shots(tmp_path: Path) -> None:
    model = build_tiny_qwen25vl(tmp_path / "tiny-qwen")
    raw = tmp_path / "raw"
    raw.mkdir()
    media.make_cuts(raw / "three shots.mp4", [48, 60, 54], w=256, h=144, moving=True)
    config = tmp_path / "caption.yaml"
    config.write_text(json.dumps({"stages": {"shot_caption": {
        "model": str(model), "frames_per_shot": 2, "frames_per_sample": 4, "max_new_tokens": 8,
        "global_max_new_tokens": 8}}}))
    out = tmp_path / "out"
    done = subprocess.run([*CURATE, str(raw), str(out), "-c", str(config), "--num-cpus", "2"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert f"captions by {model}" in done.stdout
    (shard,) = (out / "clips").glob("clips-*.tar")
    with tarfile.open(shard) as tar:
        metas = [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")]
    assert len(metas) == 1
    meta = metas[0]
    assert isinstance(meta["caption"], str) and meta["caption_model"] == str(model)
    assert len(meta["shots"]) == 3 and all(isinstance(s["caption"], str) for s in meta["shots"])
    shots = ds.dataset(out / "shots").to_table().to_pylist()
    assert {s["caption_model"] for s in shots} == {str(model)}
    index = ds.dataset(out / "clips_index").to_table().to_pylist()
    assert [s["caption"] for s in index[0]["shots"]] == [s["caption"] for s in meta["shots"]]


def test_unloadable_caption_model_stops_the_run_before_any_work(tmp_path: Path) -> None:
    config = tmp_path / "caption.yaml"
    config.write_text(json.dumps({"stages": {"shot_caption": {"model": str(tmp_path / "nope")}}}))
    raw = tmp_path / "raw"
    raw.mkdir()
    done = subprocess.run([*CURATE, str(raw), str(tmp_path / "out"), "-c", str(config)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "shot_caption.model" in done.stderr and "shot_caption.model: null" in done.stderr
    assert not (tmp_path / "out").exists()
