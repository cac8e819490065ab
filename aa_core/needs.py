"""What the chosen training algorithms need of the run (``TrainingAlgorithm.needs``), read here alone.

Two moments: before fingerprints, the settings a config leaves unset are filled from the UDA
algorithm's needs (``model.backbone``: its ``default_backbone``, else ``aa_small_cnn``;
``source_only.steps``: its ``source_only_steps``, else 500; 0 where the run starts from the
user's classifier and the algorithm needs no source), and ``config.yaml`` records the values;
before any work, a backbone an algorithm cannot use is refused with one line.

``reads_source`` says whether any training of a run reads the labelled source: where none does,
the run neither prompts (unless a VLM's zero-shot classifier reads the prompts) nor generates.
"""

from __future__ import annotations

from aa_core.context import VLM_BACKBONE, StageContext
from aa_core.errors import AAError
from aa_core.kinds import chosen
from aa_core.models.classifier import DEFAULT_BACKBONE
from aa_core.plugins import plugin_manager

DEFAULT_SOURCE_ONLY_STEPS = 500  # where neither the config nor the UDA algorithm says otherwise


def fill_defaults(ctx: StageContext) -> None:
    """Set what the config leaves to the UDA algorithm (in place, on ``ctx.config``)."""
    needs = ctx.implementation("uda")[0].needs if ctx.active("uda") else None
    if ctx.config.model.init is not None:
        check_init(ctx)
    elif ctx.config.model.backbone is None:
        ctx.config.model.backbone = (needs and needs.default_backbone) or DEFAULT_BACKBONE
    if ctx.config.source_only.steps is None:
        if ctx.config.model.init is not None and needs is not None and not needs.source:
            ctx.config.source_only.steps = 0  # the user's classifier is the source model: adapted from the target alone
        else:
            ctx.config.source_only.steps = (needs and needs.source_only_steps) or DEFAULT_SOURCE_ONLY_STEPS
    if ctx.config.model.backbone == VLM_BACKBONE and not ctx.active("vlm"):
        raise AAError("model.backbone=vlm trains a vision-language model's image tower; add --vlm clip --set vlm.model=...")
    own = ctx.network_format()
    if own is not None:  # a trained network's own input: its size, in colour
        ctx.config.data.image_size, ctx.config.data.channels = own[0], 3


def reads_source(config) -> bool:
    """Whether source-only training or the UDA algorithm reads the labelled source (an unsettled
    ``source_only.steps`` counts as training)."""
    if config.source_only.steps != 0:
        return True
    uda = chosen(config, "uda")
    return bool(uda) and plugin_manager().load("uda", uda[0]).needs.source


def check_init(ctx: StageContext) -> None:
    """The user's classifier names every category (its config alone: no weights loaded), and no backbone is named beside it."""
    from aa_core.models.user_classifier import label_rows, labels_of

    init = ctx.config.model.init
    if ctx.config.model.backbone is not None:
        raise AAError(f"model.init={init} is the network, and model.backbone={ctx.config.model.backbone} names another; "
                      "leave model.backbone unset")  # fmt: skip
    label_rows(labels_of(init), ctx.categories, init)


def check_backbone(backbone, needs, who: str) -> None:
    """Refuse a backbone that is not an instance of the timm class ``needs.backbone`` names."""
    required = needs.backbone
    if required and required not in {cls.__name__ for cls in type(backbone).__mro__}:
        raise AAError(
            f"{who} needs a {required} backbone, and model.backbone is a {type(backbone).__name__}; "
            f"set model.backbone to a timm model of that class"
        )


def check_backbones(ctx: StageContext, backbone) -> None:
    """Every chosen training algorithm accepts ``backbone`` (built on the meta device: no memory;
    ``None`` for a VLM's tower, which is no timm class)."""
    for kind in ("uda", "ssl"):
        for name, (cls, _options) in ctx.implementations(kind).items():
            if backbone is None and cls.needs.backbone:
                network = f"model.init={ctx.config.model.init}" if ctx.config.model.init else "model.backbone=vlm (a VLM's tower)"
                raise AAError(f"{kind} '{name}' needs a timm {cls.needs.backbone} backbone, and {network} is none; "
                              "use another algorithm, or a timm backbone")  # fmt: skip
            if backbone is not None:
                check_backbone(backbone, cls.needs, f"{kind} '{name}'")
