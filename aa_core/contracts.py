"""What each kind of plugin receives and returns.

Four kinds, each registered by name in its own entry-point group::

    [project.entry-points."aa.prompters"]   template = "pkg.module:TemplatePrompter"
    [project.entry-points."aa.generators"]  glyph = "pkg.module:GlyphGenerator"
    [project.entry-points."aa.uda"]         dann = "pkg.module:DANN"
    [project.entry-points."aa.ssl"]         fixmatch = "pkg.module:FixMatch"

Every implementation declares its options and their defaults in one nested pydantic model,
``Options``; the user sets them in the kind's config section (``--set uda.trade_off=0.3``).

Training algorithms own their networks, optimizers and updates: the core hands them a classifier
and batches, and asks for one ``train_step`` at a time. That leaves room for several updates per
step with separate optimizers (MCD), losses over disjoint parameter sets (SymNets), periodic work
over whole data sets and custom batch pairing (CDTrans: override ``batches``), and several
augmented views per image (FixMatch, MixMatch: declare ``unlabelled_views``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

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


class Prompter(Implementation, ABC):
    """Writes text prompts naming a category and a domain."""

    def __init__(self, options: BaseModel, model: str | None = None):
        self.options = options
        self.model = model  # e.g. an LLM name for litellm; None where the prompter needs none

    @abstractmethod
    def prompts(self, categories: Sequence[str], domain: str, per_class: int, seed: int) -> list[Prompt]:
        """Return ``per_class`` prompts for each category, deterministic for a given ``seed``."""


# --- image generators --------------------------------------------------------------------------


@dataclass
class GeneratorContext:
    """What an image generator may use besides the prompts."""

    model: str | None  # checkpoint, hub id or path; meaning is the generator's (fonts for glyph)
    categories: Sequence[str]
    device: Any  # torch.device chosen by accelerate for this process
    mixed_precision: str = "no"


class ImageGenerator(Implementation, ABC):
    """Renders one image per prompt. Called in batches, one batch per process on many GPUs."""

    def __init__(self, options: BaseModel, context: GeneratorContext):
        self.options = options
        self.context = context

    @abstractmethod
    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image]:
        """Return one PIL image per prompt; image ``i`` is a function of ``prompts[i]`` and ``seeds[i]``."""


# --- training algorithms -----------------------------------------------------------------------


@dataclass
class TrainingContext:
    """What a training algorithm is given besides its classifier."""

    accelerator: Any  # accelerate.Accelerator: prepare(), backward(), device
    num_classes: int
    total_steps: int
    batch_size: int
    pretrained_backbone: bool
    seed: int


@dataclass
class UDABatch:
    """Labelled source images and unlabelled target images (one augmented view each)."""

    x_s: torch.Tensor
    y_s: torch.Tensor
    x_t: torch.Tensor


@dataclass
class UDAData:
    """The data of an adaptation stage: source ``(image, label)`` and target ``image`` datasets.

    ``loader(dataset, batch_size)`` yields shuffled batches for ever, on the accelerator's device.
    """

    source: Dataset
    target: Dataset
    loader: Any


class UDAAlgorithm(Implementation, ABC):
    """Unsupervised domain adaptation: labelled source plus unlabelled target."""

    def __init__(self, options: BaseModel, classifier: torch.nn.Module, context: TrainingContext):
        self.options = options
        self.classifier = classifier
        self.context = context

    def batches(self, data: UDAData) -> Iterator[UDABatch]:
        """Pair batches: by default an independent random source batch and target batch."""
        source = data.loader(data.source, self.context.batch_size)
        target = data.loader(data.target, self.context.batch_size)
        for (x_s, y_s), x_t in zip(source, target):
            yield UDABatch(x_s, y_s, x_t)

    @abstractmethod
    def train_step(self, batch: UDABatch, step: int) -> dict[str, float]:
        """Update the networks once; return scalars to log (losses, coefficients)."""

    def predictor(self) -> torch.nn.Module:
        """The network that maps target images to class logits after adaptation."""
        return self.classifier


@dataclass
class SSLBatch:
    """Pseudo-labelled target images and unlabelled target images, as the views asked for."""

    x_l: tuple[torch.Tensor, ...]  # one tensor per name in ``labelled_views``
    y_l: torch.Tensor
    x_u: tuple[torch.Tensor, ...]  # one tensor per name in ``unlabelled_views``


class SSLAlgorithm(Implementation, ABC):
    """Semi-supervised learning on the target alone: a confident, pseudo-labelled part and the rest.

    Views are named augmentations the core provides: ``"weak"`` (flip where allowed, translate
    12.5%) and ``"strong"`` (RandAugment n=2 m=10, then Cutout).
    """

    labelled_views: ClassVar[tuple[str, ...]] = ("weak",)
    unlabelled_views: ClassVar[tuple[str, ...]] = ("weak", "strong")

    def __init__(self, options: BaseModel, classifier: torch.nn.Module, context: TrainingContext):
        self.options = options
        self.classifier = classifier
        self.context = context

    def unlabelled_batch_size(self) -> int:
        """Unlabelled images per step; defaults to ``mu`` times the labelled batch."""
        return self.context.batch_size * int(getattr(self.options, "mu", 1))

    @abstractmethod
    def train_step(self, batch: SSLBatch, step: int) -> dict[str, float]:
        """Update the classifier once; return scalars to log."""

    def predictor(self) -> torch.nn.Module:
        """The network used for the final predictions (e.g. an EMA of the weights)."""
        return self.classifier
