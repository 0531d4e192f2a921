"""``train.yaml``: the trainer's settings (model, data, optimizer, flow schedule, run), validated
with errors that name the key, and ``--set key=value`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.overrides import OverrideError, apply_overrides
from models.dit import DiTConfig
from models.encoders import EncoderConfig
from models.shards import DataConfig


class ModelConfig(DiTConfig):
    """The model's shape, and optionally the pretrained weights it starts from."""

    init_from: str | None = Field(
        None, description="Wan2.1 transformer weights to start from (diffusers folder, original "
        "checkpoint folder or file; see models/wan_weights.py). Not used on resume.")


class OptimConfig(BaseModel):
    """AdamW with linear warm-up to a constant rate (the paper trains at a constant 1e-5)."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(1e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0, description="Max global grad norm; null: off.")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="Keep an EMA; null: off.")


class FlowConfig(BaseModel):
    """Rectified flow: x_t = (1 - t) x_0 + t noise, the model predicts noise - x_0."""

    model_config = ConfigDict(extra="forbid")

    timesteps: Literal["logit_normal", "uniform"] = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = Field(1.0, gt=0)
    shift: float = Field(1.0, gt=0, description="t -> shift t / (1 + (shift - 1) t); >1: noisier.")
    caption_dropout: float = Field(0.1, ge=0, le=1,
                                   description="Chance a shot's caption is replaced by ''.")


class RunConfig(BaseModel):
    """Loop, precision, parallelism and bookkeeping."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(1000, ge=1)
    grad_accum: int = Field(1, ge=1, description="Samples (micro-batches of one) per step.")
    seed: int = 0
    precision: Literal["bf16", "fp32"] = Field("bf16", description="bf16 autocast on GPU only.")
    activation_checkpointing: bool = True
    sequence_parallel: int = Field(1, ge=1, description="Ulysses group size (ranks per sample).")
    fsdp: bool = Field(False, description="Shard parameters, gradients and optimizer state over "
                       "all ranks with FSDP2 (models/fsdp.py); checkpoints become DCP folders.")
    log_every: int = Field(1, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)


class StageConfig(BaseModel):
    """One training stage: the top-level data section with this stage's keys changed."""

    model_config = ConfigDict(extra="forbid")

    until_step: int | None = Field(None, ge=1, description="The stage trains steps up to and "
                                   "including this one; null for the last stage (to the end).")
    data: DataConfig = DataConfig()


class TrainConfig(BaseModel):
    """The whole training YAML."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig = ModelConfig()
    encoders: EncoderConfig
    data: DataConfig = DataConfig()
    stages: list[StageConfig] = Field(
        default_factory=list, description="Training stages in order, switched at their "
        "until_step (e.g. the paper's 10 s, then 30 s windows); empty: one stage of data.")
    optim: OptimConfig = OptimConfig()
    flow: FlowConfig = FlowConfig()
    train: RunConfig = RunConfig()

    @model_validator(mode="before")
    @classmethod
    def _stages_inherit_data(cls, values: Any) -> Any:
        """Each stage's data starts from the top-level data section."""
        if not isinstance(values, dict) or not isinstance(values.get("stages"), list):
            return values
        base = values.get("data") if isinstance(values.get("data"), dict) else {}
        stages = []
        for stage in values["stages"]:
            own = stage.get("data") or {} if isinstance(stage, dict) else None
            stages.append({**stage, "data": {**base, **own}} if isinstance(own, dict) else stage)
        return {**values, "stages": stages}

    @field_validator("stages")
    @classmethod
    def _stages_in_order(cls, stages: list[StageConfig]) -> list[StageConfig]:
        """Every stage but the last ends at a later step than the one before."""
        ends = [s.until_step for s in stages[:-1]]
        if None in ends or ends != sorted(set(ends)):
            raise ValueError(f"until_step must be set and increasing on all but the last stage, "
                             f"got {ends}")
        if stages and stages[-1].until_step is not None:
            raise ValueError("the last stage runs to train.steps: leave out its until_step")
        return stages

    def stage_at(self, step: int) -> tuple[int, DataConfig]:
        """(index, data section) of the stage that trains the step after ``step`` steps done."""
        for index, stage in enumerate(self.stages):
            if stage.until_step is None or step < stage.until_step:
                return index, stage.data
        return 0, self.data  # no stages


class TrainConfigError(ValueError):
    """The training YAML is unreadable or invalid; the message names every bad key."""


def load_train_config(path: Path, overrides: list[str] = ()) -> TrainConfig:
    """Read ``path`` and apply ``key.sub=value`` overrides (values parsed as YAML)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise TrainConfigError(f"{path}: cannot read config: {err}") from None
    return parse_train_config(data, overrides, str(path))


def parse_train_config(data: dict[str, Any], overrides: list[str] = (),
                       source: str = "config") -> TrainConfig:
    """Validate a parsed config after applying ``key.sub=value`` overrides."""
    try:
        apply_overrides(data, overrides)
    except OverrideError as err:
        raise TrainConfigError(str(err)) from None
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        raise TrainConfigError(f"{source}: invalid config:\n  " + "\n  ".join(lines)) from None

