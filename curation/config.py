"""``pipeline.yaml``: one pydantic model per section, validated before any work starts.

Each stage owns its config model (next to the stage); the ``stages`` section is composed from
:data:`stages.registry.REGISTRY`, and validation errors become messages that name the key and, for
unknown keys, the allowed ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)

from common.overrides import OverrideError, apply_overrides
from stages.registry import REGISTRY

DEFAULT_EXTENSIONS = ["mp4", "mkv", "mov", "webm", "avi", "m4v", "mpg", "mpeg", "ts", "m2ts",
                      "mts", "flv", "wmv", "3gp", "ogv", "mxf"]


class InputConfig(BaseModel):
    """How videos are found under the input folder."""

    model_config = ConfigDict(extra="forbid")

    extensions: list[str] = Field(default_factory=lambda: list(DEFAULT_EXTENSIONS))
    probe_unknown: bool = Field(
        True, description="Ask ffprobe about files with other extensions; keep those with video."
    )
    ignore_extensions: list[str] = Field(
        default_factory=lambda: ["txt", "json", "md", "srt", "vtt", "jpg", "jpeg", "png", "py",
                                 "yaml", "yml", "csv", "parquet", "tar", "zip", "gz", "nfo"],
        description="Never probed when probe_unknown is on (sidecars, stills, archives).",
    )
    follow_symlinks: bool = True


class _StagesBase(BaseModel):
    model_config = ConfigDict(extra="forbid")


# One section per stage of stages.registry, in pipeline order, each defaulting to its config.
StagesConfig = create_model(
    "StagesConfig", __base__=_StagesBase, __doc__="Per-stage settings, in pipeline order.",
    **{entry.name: (entry.config, entry.config()) for entry in REGISTRY},
)


class OutputConfig(BaseModel):
    """How results are written."""

    model_config = ConfigDict(extra="forbid")

    videos_per_part: int = Field(64, ge=1, description="Finished videos per Parquet part file.")
    flush_seconds: float = Field(30.0, gt=0, description="Write a part at least this often.")
    samples_per_shard: int = Field(1000, ge=1, description="Most samples in one clips-N.tar.")
    max_shard_bytes: int = Field(1 << 30, ge=1, description="Start a new shard past this size.")


class PipelineConfig(BaseModel):
    """The whole ``pipeline.yaml``."""

    model_config = ConfigDict(extra="forbid")

    input: InputConfig = InputConfig()
    stages: StagesConfig = StagesConfig()
    output: OutputConfig = OutputConfig()
    stop_after: str | None = Field(
        None, description="Run the stages up to and including this one (e.g. shot_split to "
        "look at shots before paying for OCR and captioning); null runs them all.")

    @field_validator("stop_after")
    @classmethod
    def _known_stage(cls, value: str | None) -> str | None:
        if value is not None and value not in StagesConfig.model_fields:
            raise ValueError(f"unknown stage; allowed: {', '.join(StagesConfig.model_fields)}")
        return value

    def fingerprint(self) -> str:
        """Short hash of the settings that change results: not output batching, not the
        settings marked :data:`~stages.resources.SPEED_ONLY` (CPUs, workers, piece sizes)."""
        relevant = results_settings(self)
        del relevant["output"]
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]


def results_settings(model: BaseModel) -> dict[str, Any]:
    """``model``'s settings as JSON values, less those marked speed-only, at any depth."""
    settings: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("speed_only"):
            continue
        value = getattr(model, name)
        settings[name] = (results_settings(value) if isinstance(value, BaseModel)
                          else model.model_dump(mode="json", include={name})[name])
    return settings


class ConfigError(ValueError):
    """``pipeline.yaml`` is unreadable or invalid; the message names every bad key."""


def load_config(path: Path | None, overrides: Sequence[str] = ()) -> PipelineConfig:
    """Read and validate ``path`` (defaults when None) after applying ``key.sub=value``
    ``overrides`` (``curate run --set``)."""
    data: Any = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config: {err}") from None
    source = str(path) if path is not None else "defaults"
    if overrides:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
        try:
            apply_overrides(data, overrides)
        except OverrideError as err:
            raise ConfigError(str(err)) from None
        source += " with --set " + " ".join(overrides)
    return parse_config(data, source)


def parse_config(data: Any, source: str = "config") -> PipelineConfig:
    """Validate a parsed YAML document."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        lines = [_describe(e) for e in err.errors()]
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(lines)) from None


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(error["loc"][:-1])
        return f"{key}: unknown key; allowed keys here: {', '.join(allowed)}"
    given = error.get("input")
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    return f"{key}: {error['msg']}{shown}"


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = PipelineConfig
    for part in parent:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)
