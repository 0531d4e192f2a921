"""``OUT/run.json``: the config fingerprint an output folder was started with.

Resuming into a folder written with different settings would mix two pipelines in one dataset,
so it is refused with a message saying how to proceed.
"""

from __future__ import annotations

import json
from pathlib import Path

from common.atomic import atomic_write_bytes
from curation.config import PipelineConfig


class RunStateError(RuntimeError):
    """The output folder belongs to a run with other settings."""


def check_run_state(out_dir: Path, config: PipelineConfig) -> None:
    """Record the config fingerprint on a fresh folder; refuse a mismatching resume."""
    state_path = out_dir / "run.json"
    fingerprint = config.fingerprint()
    if state_path.exists():
        recorded = json.loads(state_path.read_text()).get("config_fingerprint")
        if recorded != fingerprint:
            raise RunStateError(
                f"{out_dir} was written with other pipeline settings (config {recorded}, now "
                f"{fingerprint}); rerun with --overwrite to start again, or use a new OUT_DIR"
            )
        return
    state = {"config_fingerprint": fingerprint, "config": config.model_dump(mode="json")}
    atomic_write_bytes(state_path, json.dumps(state, indent=2).encode())
