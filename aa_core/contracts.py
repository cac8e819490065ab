"""What each kind of plugin receives and returns: declarations only; the core decides what to do with them.

Six kinds, each registered by name in its own entry-point group (``aa_core.kinds``)::

    [project.entry-points."aa.prompters"]   template = "pkg.module:TemplatePrompter"
    [project.entry-points."aa.generators"]  glyph = "pkg.module:GlyphGenerator"
    [project.entry-points."aa.filters"]     clip = "pkg.module:CLIPFilter"
    [project.entry-points."aa.uda"]         dann = "pkg.module:DANN"
    [project.entry-points."aa.ssl"]         fixmatch = "pkg.module:FixMatch"
    [project.entry-points."aa.vlms"]        clip = "pkg.module:TransformersVLM"

Every implementation declares its options and their defaults in one nested pydantic model,
``Options``; the user sets them in the kind's config section (``--set uda.trade_off=0.3``).

Training algorithms own their networks, optimizers and updates: the core hands them a
``Classifier`` and batches, and asks for one ``train_step`` at a time. That leaves room for
several updates per step with separate optimizers (MCD), losses over disjoint parameter sets
(SymNets), periodic passes over whole data sets and custom batch pairing (CDTrans: override
``batches`` and use ``Loaders.once``). What an algorithm needs from the core is declared, never
done here: ``needs`` (a kind of backbone, defaults for the run), ``build_network`` (the network
it trains, when it is not the classifier) and, for SSL, ``feed`` (the views and sets it is fed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel

from aa_core.options import NoOptions

if TYPE_CHECKING:  # keep this module importable without torch
    import torch
    from PIL.Image import Image
    from torch.utils.data import Dataset


class Implementation:
    """Common to every kind: a name (the entry-point name) and an ``Options`` model.

    ``Options`` derives from ``aa_core.api.Options`` (unknown keys refused); ``inputs`` declares
    what the implementation's result depends on beyond its options and its release.
    """

    Options: ClassVar[type[BaseModel]] = NoOptions

    @classmethod
    def inputs(cls, options: BaseModel) -> Any:
        """What this implementation's result depends on besides ``options`` and its version,
        as JSON-able data: a file's digest (``aa_core.api.file_digest``), a remote model's
        revision. It goes into its stage's fingerprint: when it changes, the stage runs again.
        The default, ``None``: nothing else."""
        return None


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
    """Renders one image per prompt. Called in batches, one share of the prompts per process.

    ``speed_options`` names the options that change memory or speed but never the pixels
    (attention slicing, VAE tiling, CPU offload, compilation): they are left out of each image's
    key, so turning one on keeps every image already made. Every other option is in the key.

    ``reports_withheld``: True when ``generate`` puts ``None`` in place of each image it withholds
    (its safety checker's verdict), so every image it returns is kept as made, black or not;
    False, the stage takes an all-black image for a withheld one (a safety checker's black square).
    """

    speed_options: ClassVar[frozenset[str]] = frozenset()
    reports_withheld: ClassVar[bool] = False

    def __init__(self, options: BaseModel, context: GeneratorContext):
        self.options = options
        self.context = context

    @abstractmethod
    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image | None]:
        """Return one PIL image per prompt (``None``: withheld); image ``i`` is a function of ``prompts[i]`` and ``seeds[i]``."""

    def close(self) -> None:
        """Release what ``__init__`` loaded (a pipeline on the GPU); called once the stage ends."""


@dataclass
class ImageFilterContext:
    """What an image filter may use besides the images."""

    categories: Sequence[str]
    domain: str  # ``task.domain``
    device: Any  # torch.device chosen by accelerate for this process


class ImageFilter(Implementation, ABC):
    """Drops synthetic images that do not show their category (``aa.filters``; turned on by
    ``filters.NAME`` in the config, several at once).

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


# --- vision-language models ---------------------------------------------------------------------


@dataclass
class VLMContext:
    """What a vision-language model may use."""

    device: Any  # torch.device chosen by accelerate for this process


class VisionLanguageModel(Implementation, ABC):
    """Embeds images and texts in one space (``aa.vlms``; ``--vlm NAME``): the core builds a
    zero-shot classifier from the category names with it (``aa_core.zero_shot``).

    The logit of image :math:`x` for text :math:`t` is :math:`s \\cos(f(x), g(t)) + b`, with
    ``logit_scale`` :math:`s` and ``logit_bias`` :math:`b` (0 but for sigmoid-trained models: SigLIP).
    """

    logit_scale: float = 1.0
    logit_bias: float = 0.0

    def __init__(self, options: BaseModel, context: VLMContext):
        self.options = options
        self.context = context

    @abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """One L2-normalised embedding per text: ``[len(texts), d]``, float32 on the CPU."""

    @abstractmethod
    def preprocessor(self) -> Callable[[Sequence[Image]], torch.Tensor]:
        """A function from RGB images to the model's input batch (its own size and normalisation).
        It runs in data-loader workers: it must not hold the model."""

    @abstractmethod
    def embed_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """One L2-normalised embedding per image of a ``preprocessor`` batch: ``[n, d]``, float32 on the CPU."""

    def close(self) -> None:
        """Release what ``__init__`` loaded; called once the zero-shot pass ends."""

    # --- the image tower as the run's backbone (``model.backbone=vlm``); optional -------------

    @classmethod
    def image_format(cls, options: BaseModel) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
        """The tower's input: its square side, and the RGB mean and standard deviation it
        normalises with. Read without loading the weights (the run's input format is set from it)."""
        raise NotImplementedError(f"{cls.__name__} cannot be the run's backbone (it declares no image_format)")

    def image_tower(self) -> torch.nn.Module:
        """The image tower as a module to train: pixels (the run's plain view) -> unnormalised
        embedding, the one ``embed_images`` normalises. The text tower is not part of it."""
        raise NotImplementedError(f"{type(self).__name__} cannot be the run's backbone (it has no image_tower)")


# --- training algorithms -----------------------------------------------------------------------


class Classifier(Protocol):
    """The network every training algorithm receives (``aa_core.api.ImageClassifier``).

    .. math:: f = \\mathrm{bottleneck}(\\mathrm{backbone}(x)), \\qquad \\mathrm{logits} = \\mathrm{head}(f)

    ``backbone`` is a timm model without its classifier (``backbone.num_features`` wide),
    ``bottleneck`` maps that to ``features_dim``, ``head`` maps ``features_dim`` to
    ``num_classes``. An algorithm may replace ``head`` (MCD's two classifiers) in its
    ``build_network``.
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


@dataclass(frozen=True)
class Needs:
    """What a training algorithm needs of the run, declared once and read by the core alone.

    ``backbone``: a timm backbone class the algorithm works with (CDTrans: ``"VisionTransformer"``);
    a config naming another is refused before any work. ``default_backbone``: the timm model a
    UDA algorithm gets when the config names no ``model.backbone``. ``source_only_steps``: the
    source-only training a UDA algorithm starts from when the config sets no ``source_only.steps``.
    ``views``: the named views (``SSLFeed``'s: ``"plain"``, ``"weak"``, ``"strong"``) of each
    source and target image a UDA algorithm is fed, in place of ``data.adapt_view``'s one
    (AdaMatch: ``("weak", "strong")``); its batches then hold a tuple of views per domain.
    ``source``: false for a UDA algorithm that adapts from the target alone (SHOT): its
    ``UDAData.source`` is None, and a run that starts from the user's classifier
    (``model.init``) then reads no source at all: it neither prompts nor generates, and its
    source-only part is the classifier as it came (``source_only.steps`` 0).
    """

    backbone: str | None = None
    default_backbone: str | None = None
    source_only_steps: int | None = None
    views: tuple[str, ...] | None = None
    source: bool = True


class TrainingAlgorithm(Implementation, ABC):
    """An algorithm that trains a network one ``train_step`` at a time (UDA or SSL).

    The core builds the network first (``build_network``) and hands it to ``__init__`` as
    ``classifier``; after the last step it saves ``predictor()``'s weights, and to predict later
    it builds the network the same way and loads them.
    """

    needs: ClassVar[Needs] = Needs()

    def __init__(self, options: BaseModel, classifier: Classifier, context: TrainingContext):
        self.options = options
        self.classifier = classifier
        self.context = context

    @classmethod
    def build_network(cls, classifier: Classifier, options: BaseModel) -> torch.nn.Module:
        """The network this algorithm trains and predicts with, built around the core's ``classifier``.

        The default is the classifier itself. An algorithm with other heads (MCD's two
        classifiers, SymNets' 2K-wide one) builds them here, untrained: the core calls this before
        ``__init__``, and again, with no optimizer, to load saved weights.
        """
        return classifier  # type: ignore[return-value]

    @abstractmethod
    def train_step(self, batch: Any, step: int) -> dict[str, float]:
        """Update the networks once; return scalars to log (losses, coefficients)."""

    def predictor(self) -> torch.nn.Module:
        """The trained network whose weights are saved: the one ``__init__`` received, or one of
        its architecture (an ``EMA``'s copy of it)."""
        return self.classifier

    def extra_state(self) -> dict:
        """What a training checkpoint must hold beyond what the core saves by itself.

        The core saves the models and optimizers passed to ``accelerator.prepare``, the random
        states, and each ``Update``'s schedule, ``EMA`` and ``torch.Generator`` held as an attribute. Return anything
        else a resumed run needs to continue exactly (tensors, numbers, strings, lists, dicts).
        """
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Take back what ``extra_state`` returned, before training resumes."""


@dataclass
class UDABatch:
    """Labelled source images and unlabelled target images: one augmented view each, or a tuple
    of views in the order the algorithm's ``needs.views`` names them."""

    x_s: torch.Tensor | tuple[torch.Tensor, ...]
    y_s: torch.Tensor
    x_t: torch.Tensor | tuple[torch.Tensor, ...]


@dataclass
class UDAData:
    """The data of an adaptation stage: source ``(image, label)`` and target ``image`` datasets.

    ``plain_source`` and ``plain_target`` are the same images through the deterministic view,
    for an algorithm that labels or pairs them (CDTrans); None where ``source`` and ``target``
    are plain already. ``plain()`` gives whichever applies. ``source`` is None for an algorithm
    whose ``needs.source`` is false.
    """

    source: Dataset | None
    target: Dataset
    loaders: Loaders
    plain_source: Dataset | None = None
    plain_target: Dataset | None = None

    def plain(self) -> tuple[Dataset, Dataset]:
        """Source and target through the deterministic view."""
        source = self.source if self.plain_source is None else self.plain_source
        return source, self.target if self.plain_target is None else self.plain_target


class UDAAlgorithm(TrainingAlgorithm):
    """Unsupervised domain adaptation: labelled source plus unlabelled target."""

    def batches(self, data: UDAData) -> Iterator[UDABatch]:
        """Pair batches: by default an independent random source batch and target batch."""
        source = data.loaders(data.source, self.context.batch_size)
        target = data.loaders(data.target, self.context.batch_size)
        for (*x_s, y_s), x_t in zip(source, target):
            yield UDABatch(x_s[0] if len(x_s) == 1 else tuple(x_s), y_s, tuple(x_t) if isinstance(x_t, (list, tuple)) else x_t)

    def resume_batches(self, data: UDAData, done: int) -> Iterator[UDABatch]:
        """``batches(data)`` from step ``done`` on, for a run resumed from a checkpoint.

        The default draws the first ``done`` batches and drops them, which leaves every loader
        where an uninterrupted run has it. Override it when the batches depend on the model
        (CDTrans' pairs): the replay runs before the checkpoint's weights are loaded.
        """
        batches = self.batches(data)
        for _ in range(done):  # now, not lazily (islice): the checkpoint's random states are loaded after this
            next(batches)
        return batches

    @abstractmethod
    def train_step(self, batch: UDABatch, step: int) -> dict[str, float]:
        """Update the networks once; return scalars to log (losses, coefficients)."""


@dataclass
class SSLBatch:
    """Pseudo-labelled target images and unlabelled target images, as the views asked for."""

    x_l: tuple[torch.Tensor, ...]  # one tensor per name in ``SSLFeed.labelled_views``
    y_l: torch.Tensor
    x_u: tuple[torch.Tensor, ...]  # one tensor per name in ``SSLFeed.unlabelled_views``


@dataclass(frozen=True)
class SSLFeed:
    """What an SSL algorithm is fed each step: which views of which images, how many.

    Views are named augmentations the core provides: ``"plain"`` (no augmentation), ``"weak"``
    (flip where allowed, translate 12.5%) and ``"strong"`` (FixMatch's RandAugment, then
    Cutout). ``unlabelled`` is ``"unconfident"`` (the images the confident split left
    unlabelled) or ``"all"`` (every target image, FixMatch's practice).
    """

    labelled_batch_size: int
    unlabelled_batch_size: int
    labelled_views: tuple[str, ...] = ("weak",)
    unlabelled_views: tuple[str, ...] = ("weak", "strong")
    unlabelled: Literal["unconfident", "all"] = "unconfident"


class SSLAlgorithm(TrainingAlgorithm):
    """Semi-supervised learning on the target alone: a confident, pseudo-labelled part and the rest."""

    @classmethod
    def feed(cls, options: BaseModel, context: TrainingContext) -> SSLFeed:
        """The views and sets this algorithm is fed (default: a weak labelled view; weak and
        strong views of as many unlabelled images, the unconfident ones)."""
        return SSLFeed(context.batch_size, context.batch_size)

    @abstractmethod
    def train_step(self, batch: SSLBatch, step: int) -> dict[str, float]:
        """Update the classifier once; return scalars to log."""
