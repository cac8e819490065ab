"""What every stage is given: the validated config, the run folder, the chosen implementations,
the target and source image lists and the accelerator, each computed once per run.

Stages read the run through this one object, so none of them needs another stage's module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from aa_core.config import Config, implementation_options
from aa_core.kinds import KINDS, chosen
from aa_core.plugins import plugin_manager
from aa_core.run_folder import RunFolder

VLM_BACKBONE = "vlm"  # model.backbone naming the VLM's image tower (``aa_core.models.vlm_classifier``)


@dataclass
class StageContext:
    config: Config
    folder: RunFolder
    fingerprint: str = ""  # the running stage's (set by the pipeline): a training checkpoint resumes only the same inputs
    # what the running stage calls when a part of it (``run_folder.PARTS``) is done: the pipeline records it
    part_done: Callable[[str, str], None] = lambda part, fp: None

    @property
    def categories(self) -> list[str]:
        return self.config.task.categories

    def active(self, kind: str) -> bool:
        """Whether the config turns on an implementation of ``kind`` (``--uda none`` turns uda off)."""
        return bool(chosen(self.config, kind))

    def implementations(self, kind: str) -> dict[str, tuple[type, object]]:
        """``name -> (class, validated options)`` of every implementation the config turns on for ``kind``."""
        several, name_of_section = KINDS[kind].several, KINDS[kind].section
        section = getattr(self.config, name_of_section)
        out = {}
        for name in chosen(self.config, kind):
            cls = plugin_manager().load(kind, name)
            options, prefix = (section[name], f"{name_of_section}.{name}.") if several else (section.options(), f"{name_of_section}.")
            out[name] = cls, implementation_options(prefix, options, cls)
        return out

    def implementation(self, kind: str) -> tuple[type, object]:
        """``(class, validated options)`` of the one implementation the config names for ``kind``."""
        ((cls, options),) = self.implementations(kind).values()
        return cls, options

    def distribution(self, kind: str, name: str) -> dict[str, str]:
        """Which distribution, at which version, provides implementation ``name`` of ``kind``."""
        info = plugin_manager().distribution_of(kind, name)
        return {"distribution": info.distribution, "version": info.version} if info else {}

    def version(self, kind: str) -> dict[str, str]:
        """The one implementation of ``kind``: its name, distribution and version (for fingerprints)."""
        (name,) = chosen(self.config, kind) or ["none"]
        return {"name": name, **self.distribution(kind, name)}

    def training_context(self, steps: int):
        """What a training algorithm of ``steps`` steps is given besides its network."""
        from aa_core.contracts import TrainingContext

        c = self.config
        self.accelerator.free_memory()  # accelerate's registries start empty: a checkpoint holds this training's models alone
        return TrainingContext(
            accelerator=self.accelerator,
            num_classes=len(self.categories),
            total_steps=steps,
            batch_size=c.train.batch_size,
            pretrained_backbone=bool(c.model.pretrained) or self.network_format() is not None,  # a trained network learns slower
            seed=c.seed,
        )

    def new_classifier(self, pretrained: bool | None = None, *, for_training: bool = True):
        """A fresh classifier of the configured backbone (pretrained weights as configured, unless
        ``pretrained`` says), in the memory layout it trains fastest in unless not ``for_training``."""
        from aa_core.models.classifier import build_classifier

        c = self.config
        if c.model.init is not None:
            from aa_core.models.user_classifier import user_classifier

            return user_classifier(c.model.init, self.categories)
        if c.model.backbone == VLM_BACKBONE:
            from aa_core.models.vlm_classifier import vlm_classifier

            return vlm_classifier(self.folder.zero_shot_head, *self.implementation("vlm"), len(self.categories))
        return build_classifier(c.model, len(self.categories), c.data.channels, pretrained, for_training=for_training)

    @cached_property
    def input_format(self):
        """How every image of the run is read: channels, size, normalisation, and the views built on them."""
        from aa_core.data.input_format import InputFormat

        own = self.network_format()
        if own is None:
            return InputFormat(self.config.data, self.config.model)
        _size, mean, std = own  # the size is data.image_size already (``needs.fill_defaults``)
        return InputFormat(self.config.data, self.config.model, (mean, std))

    def network_format(self) -> tuple[int, tuple, tuple] | None:
        """The input of a network that comes trained with its own processor (``model.init``, a VLM's
        tower): its side, mean and standard deviation; ``None`` for a timm backbone."""
        if self.config.model.init is not None:
            from aa_core.models.user_classifier import image_format

            return image_format(self.config.model.init)
        if self.config.model.backbone == VLM_BACKBONE:
            cls, options = self.implementation("vlm")
            return cls.image_format(options)
        return None

    def prepared(self, paths: list[str]):
        """The images of ``paths`` in the input format: held in memory when they fit ``data.cache_mb``,
        else decoded at each pass by ``data.num_workers`` workers."""
        from aa_core.data.prepared import Prepared

        fmt, data = self.input_format, self.config.data
        return Prepared(paths, fmt.prepare(), fmt.size, fmt.channels, data.cache_mb << 20, data.num_workers)

    @cached_property
    def target(self):
        """The target images (and, kept apart, their labels), scanned once per run."""
        from aa_core.data.target import open_target

        return open_target(self.config.data.target, self.categories, self.config.data.dev_fraction)

    @cached_property
    def source(self):
        """The labelled source images, scanned once per run: a real ``--source``, or the synthetic
        source (read first by the adapt stage, after generation)."""
        from aa_core.data.image_folder import open_image_folder

        if self.config.data.source is not None:
            return open_image_folder(self.config.data.source, self.categories, labelled=True)
        return synthetic_source(self.folder, self.categories)

    @cached_property
    def accelerator(self):
        from aa_core.training.accelerator import get_accelerator

        return get_accelerator(self.config.train.mixed_precision)

    @property
    def is_main(self) -> bool:
        """Whether this is the process that writes the run folder's shared files."""
        return self.accelerator.is_main_process


def synthetic_source(folder: RunFolder, categories: list[str]):
    """The synthetic source's images: those ``source/metadata.jsonl`` names, and no other file
    (one planted in a finished source is not trained on: it is named in a warning)."""
    import logging

    from aa_core.data.image_folder import open_image_folder
    from aa_core.data.synthetic import METADATA, read_rows
    from aa_core.run_folder import walk_files

    named = {row.file_name for row in read_rows(folder.source / METADATA)}
    images = open_image_folder(folder.source, categories, labelled=True, named=named)
    every = (p.relative_to(folder.source).as_posix() for p in walk_files(folder.source) if not p.name.startswith("."))
    strangers = sorted(name for name in every if name != METADATA and name not in named)
    if strangers:
        shown = ", ".join(strangers[:3]) + (", ..." if len(strangers) > 3 else "")
        logging.getLogger("aa").warning(
            "%d file(s) in %s that no metadata row names are not trained on (%s); the next generation moves them to %s",
            len(strangers), folder.source, shown, folder.stale,
        )  # fmt: skip
    return images
