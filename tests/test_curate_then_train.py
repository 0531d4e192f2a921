"""End to end: ``curate run`` writes shards, ``curate train`` trains the tiny MoGA-DiT on them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests import media
from tests.tiny_encoders import build_tiny_encoders

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]


def _planning_evidence(out: Path) -> str:
    """The shots and samples behind an unexpected sample count, for the failure message."""
    import pyarrow.dataset as ds

    shots = ds.dataset(out / "shots").to_table(columns=[
        "video_id", "shot_index", "start_frame", "end_frame", "boundary_in", "kept",
        "drop_stage", "drop_rule", "drop_value", "ocr_texts", "crop_w", "crop_h", "sample_index"])
    clips = ds.dataset(out / "clips_index").to_table(columns=[
        "sample_id", "source_start_frame", "source_end_frame", "crop", "shard"])
    return f"shots: {shots.to_pylist()}\nsamples: {clips.to_pylist()}"


def test_train_reads_what_curate_wrote(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(2):
        media.make_cuts(raw / f"film {i}.mp4", [48 + 12 * i, 60, 54], w=256, h=144, moving=True)
    out = tmp_path / "out"
    curate = [sys.executable, "-m", "curation.cli"]
    done = subprocess.run([*curate, "run", str(raw), str(out), "--num-cpus", "2"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    samples = json.loads((out / "summary.json").read_text())["samples"]
    assert samples == 2, _planning_evidence(out)
    vae, text = build_tiny_encoders(tmp_path / "encoders")
    run = tmp_path / "run"
    trained = subprocess.run([*curate, "train", "-c", str(ROOT / "configs" / "train-tiny.yaml"),
                              "--data", str(out / "clips"), "--out", str(run),
                              "--set", "train.steps=12", "--set", "train.checkpoint_every=12",
                              "--set", f"encoders.vae_path={vae}",
                              "--set", f"encoders.text_encoder_path={text}"],
                             capture_output=True, text=True, timeout=900)
    assert trained.returncode == 0, trained.stderr
    logged = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, 13))
    assert all(math.isfinite(r["loss"]) and r["balance_loss"] <= 0.2 for r in logged)
    assert (run / "checkpoints" / "step-00000012.pt").exists()
