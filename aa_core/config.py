"""The whole configuration, validated by pydantic.

Layers, lowest first: these defaults; the task preset of a built-in target (``aa_core/tasks``,
for the default task ``sklearn-digits.yaml``); a run folder's config (stage commands); a YAML
file (``--config``); the named flags (``--uda dann``...); then each ``--set section.key=value``
(values parsed as YAML). An implementation's own options sit in its section beside ``name``
(``uda.trade_off``) and belong to that name: a layer that names another implementation drops
them. They are validated by its ``Options`` model once the implementation is chosen.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from aa_core.errors import ConfigError
from aa_core.kinds import KINDS, NONE
from aa_core.options import SGDOptions, unknown_key

DIGITS = [str(d) for d in range(10)]
TASKS = Path(__file__).parent / "tasks"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ImplementationSection(BaseModel):
    """A section naming an implementation; extra keys are that implementation's options."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _as_name(value: Any) -> Any:
    """Category names written as numbers (``[0, 1]`` in YAML) are names."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


CategoryName = Annotated[str, BeforeValidator(_as_name)]


class TaskConfig(Section):
    categories: list[CategoryName] = Field(default_factory=lambda: list(DIGITS), min_length=2)
    domain: str = "handwritten digit"
    description: str = ""  # free text about the target domain, for prompters that write prose (llm)

    @field_validator("categories")
    @classmethod
    def _plain_names(cls, value: list[str]) -> list[str]:
        """Each category names a folder (``source/<category>/``, a target's class folder), on any file system."""
        for name in value:
            if not name.strip():
                raise ValueError(f"category {name!r} is empty; give every category a name")
            if name.startswith("."):  # "." and ".." are no folder of their own, ".journal" is the run's, the rest hidden
                raise ValueError(f"category {name!r} starts with a dot, which hides its folder or names another; rename it")
            if "/" in name or "\\" in name:
                raise ValueError(f"category {name!r} must be a non-empty name without slashes")
            if "\0" in name:
                raise ValueError(f"category {name!r} holds a NUL character, which no folder name may; rename it")
        if len(set(value)) != len(value):
            raise ValueError("categories must be distinct")
        folded: dict[str, str] = {}
        for name in value:  # one folder on a file system that ignores case (macOS, Windows)
            other = folded.setdefault(name.casefold(), name)
            if other != name:
                raise ValueError(f"categories {other!r} and {name!r} differ only in case; rename one")
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
    retries: int = Field(3, ge=0)  # a blank or filtered image is made again with a derived seed, this many times


class DataConfig(Section):
    source: str | None = None  # a labelled image folder; None synthesises the source from text
    target: str = "sklearn-digits"  # an image folder or a built-in data set
    dev_fraction: float = Field(0.0, ge=0, lt=1)  # of a labelled target: labels tuning may read
    image_size: int = Field(8, ge=4)  # every image, source and target, is brought to this size
    channels: Literal[1, 3] = 1
    flip: bool = False  # horizontal flips in augmentation (wrong for digits and text)
    fill: int = Field(255, ge=0, le=255)  # background value for pixels that augmentation uncovers
    adapt_view: Literal["plain", "weak"] = "plain"  # augmentation while adapting; weak suits large images
    num_workers: int = Field(0, ge=0)  # data-loader processes decoding and augmenting (per GPU); 0: the training process
    # prepared images are held in memory when the whole set fits this many MB (small images), else decoded at each pass
    cache_mb: int = Field(512, ge=0)


class ModelConfig(Section):
    backbone: str | None = None  # any timm model name; none: the UDA algorithm's default_backbone, else aa_small_cnn
    pretrained: bool | str = False  # true: timm's weights from the hub; a path: a local checkpoint
    bottleneck_dim: int = Field(256, ge=1)
    init: str | None = None  # the user's own classifier (a transformers image classifier: folder or hub id) to start from


class TrainConfig(Section):
    batch_size: int = Field(32, ge=1)
    steps: int = Field(3000, ge=0)  # adaptation (UDA) steps
    refine_steps: int = Field(500, ge=0)  # SSL steps on the target
    select: Literal["last", "entropy", "infomax", "snd", "ensv"] = "last"  # which adaptation checkpoint, without labels
    select_every: int = Field(500, ge=1)  # steps between checkpoints the criterion scores
    checkpoint_every: int = Field(500, ge=0)  # steps between saved training states a killed run resumes from; 0: none
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"


class SourceOnlyConfig(SGDOptions):
    """Source-only training before adaptation: the baseline and the adaptation's start."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    steps: int | None = Field(None, ge=0)  # none: the UDA algorithm's source_only_steps, else 500


class UDAConfig(ImplementationSection):
    name: str = "dann"


class SSLConfig(ImplementationSection):
    name: str = "fixmatch"


class VLMConfig(ImplementationSection):
    """A vision-language model that classifies from the category names alone (``aa_core.zero_shot``)."""

    name: str = "none"
    # each category's text: none, the run's own prompts (the template's "a {domain} of a {category}"
    # with a real source); a template of {category} and {domain} otherwise
    template: str | None = None
    batch_size: int = Field(64, ge=1)  # images per forward pass of the zero-shot row

    @field_validator("template")
    @classmethod
    def _names_the_category(cls, value: str | None) -> str | None:
        if value is not None and "{category}" not in value:
            raise ValueError("the template must contain {category}")
        return value


class RefineConfig(Section):
    """The confident split (``aa_core.confident_split``): which target images become labelled."""

    strategy: Literal["fraction", "threshold", "topk"] = "fraction"
    confident_fraction: float = Field(0.5, gt=0, lt=1)  # fraction: share of each predicted class
    threshold: float = Field(0.9, gt=0, le=1)  # threshold: least view-averaged score
    top_k: int = Field(100, ge=1)  # topk: images per predicted class
    min_per_class: int = Field(1, ge=0)  # every predicted class keeps at least this many
    views: int = Field(4, ge=0)  # weak views averaged into each image's score
    # whose class probabilities the split ranks: the adapted model's, the VLM's zero-shot row's, or their mean
    teacher: Literal["adapted", "vlm", "ensemble"] = "adapted"
    # the run's result: auto keeps the candidate (zero-shot, the user's classifier, start, adapted,
    # refined) that agrees most with their ensemble (EnsV, aa_core.final_model); a model's name forces it
    keep: Literal["auto", "source_only", "adapt", "refine", "zero_shot"] = "auto"


class TrackConfig(Section):
    trackers: list[str] = Field(default_factory=list)  # accelerate trackers: tensorboard, wandb, mlflow...


class Config(Section):
    seed: int = 0
    task: TaskConfig = Field(default_factory=TaskConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    source_only: SourceOnlyConfig = Field(default_factory=SourceOnlyConfig)
    uda: UDAConfig = Field(default_factory=UDAConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    ssl: SSLConfig = Field(default_factory=SSLConfig)
    vlm: VLMConfig = Field(default_factory=VLMConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)
    # image filters turned on, each with its options: {clip: {top_k: 1}}; `null` turns one off
    filters: dict[str, dict[str, Any] | None] = Field(default_factory=dict)


# named flags of `aa run` and the stage commands -> dotted keys
FLAG_KEYS = {
    **{name: f"{kind.section}.name" for name, kind in KINDS.items() if kind.flag},
    "source": "data.source",
    "target": "data.target",
    "seed": "seed",
}
IMPLEMENTATION_SECTIONS = {kind.section for kind in KINDS.values() if not kind.several}


def describe(error: ValidationError, prefix: str = "") -> str:
    """One line naming the first invalid field and what is wrong with it."""
    first = error.errors()[0]
    where = prefix + ".".join(str(p) for p in first["loc"]) or "config"
    got = first.get("input")
    shown = "" if isinstance(got, dict) or first["type"] == "missing" else f" (got {got!r})"
    extra = first["type"] == "extra_forbidden"
    message = "unknown key" if extra else first["msg"]
    return f"invalid config: {where}: {message}{shown}"


def dotted(key: str, value: Any) -> dict:
    """``("a.b.c", v)`` -> ``{"a": {"b": {"c": v}}}``."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


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


def read_yaml(path: str | Path) -> dict:
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return loaded


def task_preset(target: Any) -> dict:
    """The preset of a built-in target (``aa_core/tasks/<name>.yaml``), or nothing."""
    path = TASKS / f"{target}.yaml"
    return read_yaml(path) if isinstance(target, str) and "/" not in target and path.is_file() else {}


def load_config(
    path: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    base: dict | None = None,
) -> Config:
    """Merge ``base`` (a run folder's config, or the task preset), a YAML file, flags and --set items; validate."""
    layers = [read_yaml(path)] if path is not None else []
    layers += [dotted(FLAG_KEYS[flag], value) for flag, value in (flags or {}).items() if value is not None]
    layers += [dotted(*parse_set(item)) for item in sets or []]
    if base is None:
        target = Config().data.target
        for layer in layers:
            target = layer.get("data", {}).get("target", target) if isinstance(layer.get("data"), dict) else target
        base = task_preset(target)
    data: dict = copy.deepcopy(base)
    for layer in layers:
        merge(data, layer)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
    for kind in KINDS.values():
        if not kind.optional and not kind.several and getattr(config, kind.section).name == NONE:
            raise ConfigError(f"invalid config: {kind.section}.name: the {kind.name} cannot be {NONE}; name one (`aa plugins` lists them)")
    return config


def merge(into: dict, layer: dict) -> None:
    """Merge ``layer`` over ``into``; a section naming another implementation drops the old one's options."""
    for key, value in layer.items():
        current = into.get(key)
        if key in IMPLEMENTATION_SECTIONS and isinstance(value, dict) and isinstance(current, dict):
            if "name" in value and value["name"] != current.get("name"):
                declared = Config.model_fields[key].annotation.model_fields
                current = {k: v for k, v in current.items() if k in declared}
        if isinstance(value, dict) and isinstance(current, dict):
            into[key] = dict(current)
            merge(into[key], value)
        else:
            into[key] = value


def implementation_options(prefix: str, options: dict[str, Any], cls: type) -> Any:
    """Validate ``options`` against the chosen implementation's ``Options``; errors name keys after ``prefix``.

    A key no field of ``Options`` names is refused here, whatever the model's own ``extra``."""
    section = Config.model_fields.get(prefix.rstrip("."))  # a one-implementation section: its own keys are close too
    own = set(section.annotation.model_fields) if section is not None and hasattr(section.annotation, "model_fields") else set()
    unknown = unknown_key(options, cls.Options, also=own)
    if unknown is not None:
        key, close = unknown
        hint = f"; did you mean {prefix}{close}?" if close else ""
        raise ConfigError(f"invalid config: {prefix}{key}: unknown key (got {options[key]!r}){hint}")
    try:
        return cls.Options.model_validate(options)
    except ValidationError as exc:
        raise ConfigError(describe(exc, prefix=prefix)) from None
