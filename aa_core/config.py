"""The whole configuration, validated by pydantic.

Precedence, lowest first: these defaults (the built-in digits task), a YAML file (``--config``),
the named flags (``--uda dann``...), then ``--set section.key=value`` (values parsed as YAML).
An implementation's own options sit in its section beside ``name`` (``uda.trade_off``) and are
validated by its ``Options`` model once the implementation is chosen.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aa_core.errors import ConfigError

DIGITS = [str(d) for d in range(10)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ImplementationSection(BaseModel):
    """A section naming an implementation; extra keys are that implementation's options."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TaskConfig(Section):
    categories: list[str] = Field(default_factory=lambda: list(DIGITS), min_length=2)
    domain: str = "handwritten digit"

    @field_validator("categories")
    @classmethod
    def _plain_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.strip() or "/" in name or "\\" in name:
                raise ValueError(f"category {name!r} must be a non-empty name without slashes")
        if len(set(value)) != len(value):
            raise ValueError("categories must be distinct")
        return value


class PromptsConfig(ImplementationSection):
    name: str = "template"
    model: str | None = None  # an LLM for prompters that use one
    per_class: int = Field(50, ge=1)


class GeneratorConfig(ImplementationSection):
    name: str = "glyph"
    model: str | None = None  # checkpoint, hub id or local path; for glyph, a font file or folder
    images_per_class: int = Field(500, ge=1)
    batch_size: int = Field(16, ge=1)


class DataConfig(Section):
    source: str | None = None  # a labelled image folder; None synthesises the source from text
    target: str = "sklearn-digits"  # an image folder or a built-in data set
    image_size: int = Field(8, ge=4)  # every image, source and target, is brought to this size
    channels: Literal[1, 3] = 1
    flip: bool = False  # horizontal flips in augmentation (wrong for digits and text)
    fill: int = Field(255, ge=0, le=255)  # background value for pixels that augmentation uncovers
    adapt_view: Literal["plain", "weak"] = "plain"  # augmentation while adapting; weak suits large images
    num_workers: int = Field(0, ge=0)


class ModelConfig(Section):
    backbone: str = "aa_small_cnn"  # any timm model name
    pretrained: bool = False
    bottleneck_dim: int = Field(256, ge=1)


class TrainConfig(Section):
    batch_size: int = Field(32, ge=1)
    source_steps: int = Field(500, ge=0)  # source-only training before adaptation
    steps: int = Field(3000, ge=0)  # adaptation (UDA) steps
    refine_steps: int = Field(500, ge=0)  # SSL steps on the target
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"


class UDAConfig(ImplementationSection):
    name: str = "dann"


class SSLConfig(ImplementationSection):
    name: str = "fixmatch"


class RefineConfig(Section):
    confident_fraction: float = Field(0.8, gt=0, le=1)  # per predicted class


class Config(Section):
    seed: int = 0
    task: TaskConfig = Field(default_factory=TaskConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    uda: UDAConfig = Field(default_factory=UDAConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    ssl: SSLConfig = Field(default_factory=SSLConfig)


# Options the built-in digits task sets for its default implementations (tuned for that demo:
# DANN's own default trade-off of 1 over-aligns 8x8 digits). They apply only while the section
# still names that implementation; choosing another one starts from its own defaults.
TASK_OPTIONS = {"uda": {"dann": {"trade_off": 0.1}}}

# flags of `aa run` -> dotted keys
FLAG_KEYS = {
    "prompter": "prompts.name",
    "generator": "generator.name",
    "uda": "uda.name",
    "ssl": "ssl.name",
    "source": "data.source",
    "target": "data.target",
    "seed": "seed",
}


def describe(error: ValidationError, prefix: str = "") -> str:
    """One line naming the first invalid field and what is wrong with it."""
    first = error.errors()[0]
    where = prefix + ".".join(str(p) for p in first["loc"]) or "config"
    got = first.get("input")
    shown = "" if isinstance(got, dict) or first["type"] == "missing" else f" (got {got!r})"
    extra = first["type"] == "extra_forbidden"
    message = "unknown key" if extra else first["msg"]
    return f"invalid config: {where}: {message}{shown}"


def set_dotted(data: dict, key: str, value: Any) -> None:
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"invalid config: {key}: '{part}' is not a section")
        node = child
    node[leaf] = value


def parse_set(item: str) -> tuple[str, Any]:
    """``section.key=value`` -> (key, value), the value read as YAML (numbers, lists, null)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"invalid --set '{item}': write it as section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_config(
    path: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    base: dict | None = None,
) -> Config:
    """Merge ``base`` (e.g. a run folder's config), a YAML file, flags and --set items; validate."""
    data: dict = copy.deepcopy(base or {})
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        _merge(data, loaded)
    for flag, value in (flags or {}).items():
        if value is not None:
            key = FLAG_KEYS[flag]
            section = key.split(".")[0]
            if key.endswith(".name") and isinstance(data.get(section), dict) and data[section].get("name") != value:
                # another implementation: the previous one's options do not apply to it
                declared = Config.model_fields[section].annotation.model_fields
                data[section] = {k: v for k, v in data[section].items() if k in declared}
            set_dotted(data, key, value)
    for item in sets or []:
        set_dotted(data, *parse_set(item))
    for section, presets in TASK_OPTIONS.items():
        given = data.setdefault(section, {})
        if isinstance(given, dict):
            chosen = given.get("name", Config.model_fields[section].default_factory().name)
            for key, value in presets.get(chosen, {}).items():
                given.setdefault(key, value)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def _merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key] = dict(into[key])
            _merge(into[key], value)
        else:
            into[key] = value


def implementation_options(section_name: str, section: ImplementationSection, cls: type) -> Any:
    """Validate a section's extra keys against the chosen implementation's ``Options``."""
    try:
        return cls.Options.model_validate(section.options())
    except ValidationError as exc:
        raise ConfigError(describe(exc, prefix=f"{section_name}.")) from None
