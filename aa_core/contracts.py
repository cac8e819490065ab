"""What each kind of plugin receives and returns.

Four kinds, each registered by name in its own entry-point group (``aa_core.kinds``)::

    [project.entry-points."aa.prompters"]   template = "pkg.module:TemplatePrompter"
    [project.entry-points."aa.generators"]  glyph = "pkg.module:GlyphGenerator"
    [project.entry-points."aa.uda"]         dann = "pkg.module:DANN"
    [project.entry-points."aa.ssl"]         fixmatch = "pkg.module:FixMatch"

Every implementation declares its options and their defaults in one nested pydantic model,
``Options``; the user sets them in the kind's config section (``--set uda.trade_off=0.3``).

Training algorithms own their networks, optimizers and updates: the core hands them a
``Classifier`` and batches, and asks for one ``train_step`` at a time. That leaves room for
several updates per step with separate optimizers (MCD), losses over disjoint parameter sets
(SymNets), periodic passes over whole data sets and custom batch pairing (CDTrans: override
``batches`` and use ``Loaders.once``), and several augmented views per image (FixMatch,
MixMatch: set ``unlabelled_views``, per instance if it depends on the options).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # keep this module importable without torch
    import torch
    from PIL.Image import Image
    from torch.utils.data import Dataset


class NoOptions(BaseModel):
    """Options model of an implementation that takes none."""

    model_config = ConfigDict(extra="forbid")


class Implementation:
    """Common to every kind: a name (the entry-point name) and an ``Options`` model."""

    Options: ClassVar[type[BaseModel]] = NoOptions


# --- prompt generators -------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """One text prompt and the category it should depict."""

    text: str
    label: str


@dataclass
class PrompterContext:
    """What a prompter may use besides the categories and the domain."""

    model: str | None  # ``prompts.model``: an LLM name for prompters that use one
    cache_dir: Path  # a folder shared by every run on this machine (answers worth keeping)
    run_dir: Path  # the run folder (the prompter writes nothing there: the core does)
    is_main_process: bool  # the core calls prompters on the main process only
    description: str = ""  # ``task.description``: free text about the target domain


class Prompter(Implementation, ABC):
    """Writes text prompts naming a category and a domain."""

    def __init__(self, options: BaseModel, context: PrompterContext):
        self.options = options
        self.context = context

    @abstractmethod
    def prompts(self, categories: Sequence[str], domain: str, per_class: int, seed: int) -> list[Prompt]:
        """Return ``per_class`` prompts for each category, deterministic for a given ``seed``."""

    def usage(self) -> dict:
        """What writing the prompts cost (requests, tokens, money), for the run's metrics."""
        return {}


# --- image generators --------------------------------------------------------------------------


@dataclass
class GeneratorContext:
    """What an image generator may use besides the prompts."""

    model: str | None  # checkpoint, hub id or path; meaning is the generator's (fonts for glyph)
    categories: Sequence[str]
    device: Any  # torch.device chosen by accelerate for this process
    mixed_precision: str = "no"
    cache_dir: Path | None = None  # a folder shared by every run on this machine (downloaded weights)


class ImageGenerator(Implementation, ABC):
    """Renders one image per prompt. Called in batches, one share of the prompts per process."""

    def __init__(self, options: BaseModel, context: GeneratorContext):
        self.options = options
        self.context = context

    @abstractmethod
    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image]:
        """Return one PIL image per prompt; image ``i`` is a function of ``prompts[i]`` and ``seeds[i]``."""

    def close(self) -> None:
        """Release what ``__init__`` loaded (a pipeline on the GPU); called once the stage ends."""


@dataclass
class ImageFilterContext:
    """What an image filter may use besides the images."""

    categories: Sequence[str]
    domain: str  # ``task.domain``
    device: Any  # torch.device chosen by accelerate for this process


class ImageFilter(Implementation, ABC):
    """Drops synthetic images that do not show their category (registered through the
    ``aa_register_image_filters`` hook, turned on by ``filters.NAME`` in the config).

    Built once per generation stage on every process and asked batch by batch; a dropped image
    is kept aside and listed (``dropped.jsonl``), and its slot is made again with another seed.
    """

    def __init__(self, options: BaseModel, context: ImageFilterContext):
        self.options = options
        self.context = context

    @abstractmethod
    def reasons(self, images: Sequence[Image], prompts: Sequence[str], labels: Sequence[str]) -> list[str | None]:
        """Per image, why it is dropped (a short phrase), or ``None`` to keep it.

        Image ``i``'s verdict must depend on image ``i`` alone, not on the rest of its batch, so
        that the kept set is the same however the images were batched or shared out.
        """

    def close(self) -> None:
        """Release what ``__init__`` loaded; called once the stage ends."""


# --- training algorithms -----------------------------------------------------------------------


class Classifier(Protocol):
    """The network every training algorithm receives (``aa_core.api.ImageClassifier``).

    .. math:: f = \\mathrm{bottleneck}(\\mathrm{backbone}(x)), \\qquad \\mathrm{logits} = \\mathrm{head}(f)

    ``backbone`` is a timm model without its classifier (``backbone.num_features`` wide),
    ``bottleneck`` maps that to ``features_dim``, ``head`` maps ``features_dim`` to
    ``num_classes``. An algorithm may replace ``head`` (MCD's two classifiers) or the whole
    network; then it says how to rebuild its predictor in ``build_predictor``.
    """

    backbone: torch.nn.Module
    bottleneck: torch.nn.Module
    head: torch.nn.Module
    features_dim: int
    num_classes: int

    def features(self, x: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, x: torch.Tensor, with_features: bool = False) -> Any: ...


@dataclass
class TrainingContext:
    """What a training algorithm is given besides its classifier."""

    accelerator: Any  # accelerate.Accelerator: prepare(), backward(), device
    num_classes: int
    total_steps: int
    batch_size: int
    pretrained_backbone: bool
    seed: int


class Loaders(Protocol):
    """Batches on the accelerator's device (``aa_core.data.loaders.Loaders``).

    ``loaders(dataset, batch_size)`` yields shuffled batches for ever (a ``sampler`` replaces the
    shuffling; ``indices=True`` prepends each item's index to it). ``loaders.once(dataset,
    batch_size)`` iterates the whole dataset once, in order, on every process: for passes over a
    whole set, such as labelling the target.
    """

    def __call__(self, dataset: Dataset, batch_size: int, *, sampler: Any = None, indices: bool = False) -> Iterator: ...

    def once(self, dataset: Dataset, batch_size: int, *, indices: bool = False) -> Iterator: ...


class TrainingAlgorithm(Implementation, ABC):
    """An algorithm that trains a classifier one ``train_step`` at a time (UDA or SSL)."""

    # a timm backbone class the algorithm needs (e.g. "VisionTransformer"); others are refused
    requires_backbone: ClassVar[str | None] = None
    # the timm model a UDA algorithm gets when the config names no model.backbone
    default_backbone: ClassVar[str | None] = None
    # the source-only steps a UDA algorithm starts from when the config sets no source_only.steps
    source_only_steps: ClassVar[int | None] = None

    def __init__(self, options: BaseModel, classifier: Classifier, context: TrainingContext):
        from aa_core.training.memory_format import channels_last  # torch loads with the algorithm, not the contracts

        self.options = options
        self.classifier = channels_last(classifier)
        self.context = context

    @abstractmethod
    def train_step(self, batch: Any, step: int) -> dict[str, float]:
        """Update the networks once; return scalars to log (losses, coefficients)."""

    def predictor(self) -> torch.nn.Module:
        """The trained network that maps images to class logits (e.g. an EMA of the weights).

        Its weights are saved; ``build_predictor`` must build a network they load into.
        """
        return self.classifier

    @classmethod
    def build_predictor(cls, classifier: Classifier, options: BaseModel) -> torch.nn.Module:
        """An untrained network of ``predictor()``'s architecture, built around ``classifier``.

        The core loads saved weights into it to predict; no optimizer or schedule is built. The
        default is the classifier itself: override it when the algorithm changes the network.
        """
        return classifier  # type: ignore[return-value]


@dataclass
class UDABatch:
    """Labelled source images and unlabelled target images (one augmented view each)."""

    x_s: torch.Tensor
    y_s: torch.Tensor
    x_t: torch.Tensor


@dataclass
class UDAData:
    """The data of an adaptation stage: source ``(image, label)`` and target ``image`` datasets."""

    source: Dataset
    target: Dataset
    loaders: Loaders


class UDAAlgorithm(TrainingAlgorithm):
    """Unsupervised domain adaptation: labelled source plus unlabelled target."""

    def batches(self, data: UDAData) -> Iterator[UDABatch]:
        """Pair batches: by default an independent random source batch and target batch."""
        source = data.loaders(data.source, self.context.batch_size)
        target = data.loaders(data.target, self.context.batch_size)
        for (x_s, y_s), x_t in zip(source, target):
            yield UDABatch(x_s, y_s, x_t)

    @abstractmethod
    def train_step(self, batch: UDABatch, step: int) -> dict[str, float]:
        """Update the networks once; return scalars to log (losses, coefficients)."""


@dataclass
class SSLBatch:
    """Pseudo-labelled target images and unlabelled target images, as the views asked for."""

    x_l: tuple[torch.Tensor, ...]  # one tensor per name in ``labelled_views``
    y_l: torch.Tensor
    x_u: tuple[torch.Tensor, ...]  # one tensor per name in ``unlabelled_views``


class SSLAlgorithm(TrainingAlgorithm):
    """Semi-supervised learning on the target alone: a confident, pseudo-labelled part and the rest.

    Views are named augmentations the core provides: ``"plain"`` (no augmentation), ``"weak"``
    (flip where allowed, translate 12.5%) and ``"strong"`` (FixMatch's RandAugment, then Cutout). The core
    reads ``labelled_views`` and ``unlabelled_views`` from the instance after ``__init__``, so
    they may depend on the options (MixMatch: ``self.unlabelled_views = ("weak",) * options.k``).
    """

    labelled_views: tuple[str, ...] = ("weak",)
    unlabelled_views: tuple[str, ...] = ("weak", "strong")
    # whether the unlabelled set holds every target image (FixMatch's practice) or only the rest
    unlabelled_includes_labelled: bool = False

    def unlabelled_batch_size(self) -> int:
        """Unlabelled images per step; defaults to ``mu`` times the labelled batch."""
        return self.context.batch_size * int(getattr(self.options, "mu", 1))

    @abstractmethod
    def train_step(self, batch: SSLBatch, step: int) -> dict[str, float]:
        """Update the classifier once; return scalars to log."""
