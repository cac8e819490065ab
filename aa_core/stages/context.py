"""What every stage is given: the validated config, the run folder, and chosen implementations."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from aa_core.config import Config, implementation_options
from aa_core.kinds import KINDS, NONE, chosen
from aa_core.plugins import plugin_manager
from aa_core.run_folder import RunFolder


@dataclass
class StageContext:
    config: Config
    folder: RunFolder

    @property
    def categories(self) -> list[str]:
        return self.config.task.categories

    def chosen(self, kind: str) -> str:
        """The implementation name the config gives ``kind`` (maybe ``none``)."""
        return chosen(self.config, kind)

    def active(self, kind: str) -> bool:
        return self.chosen(kind) != NONE

    def implementation(self, kind: str):
        """``(class, validated options)`` of the implementation the config names for ``kind``."""
        section_name = KINDS[kind].section
        section = getattr(self.config, section_name)
        cls = plugin_manager().load(kind, section.name)
        return cls, implementation_options(section_name, section, cls)

    def image_filters(self) -> dict:
        """``name -> (class, validated options)`` of the image filters the config turns on."""
        from pydantic import ValidationError

        from aa_core.config import ConfigError, describe

        out = {}
        for name, options in self.config.filters.items():
            if options is None:
                continue
            cls = plugin_manager().image_filter(name)
            try:
                out[name] = cls, cls.Options.model_validate(options)
            except ValidationError as exc:
                raise ConfigError(describe(exc, prefix=f"filters.{name}.")) from None
        return out

    def filter_version(self, name: str) -> dict[str, str]:
        """Which distribution and version provide image filter ``name``."""
        from importlib.metadata import PackageNotFoundError, version

        distribution = plugin_manager().filters[name][1]
        try:
            return {"distribution": distribution, "version": version(distribution)}
        except PackageNotFoundError:
            return {"distribution": distribution}

    def version(self, kind: str) -> dict[str, str]:
        """Which distribution and version provide the named implementation (for fingerprints)."""
        name = self.chosen(kind)
        info = plugin_manager().distribution_of(kind, name)
        return {"name": name, "distribution": info.distribution, "version": info.version} if info else {"name": name}

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

        return open_image_folder(self.config.data.source or self.folder.source, self.categories, labelled=True)

    @cached_property
    def accelerator(self):
        from accelerate.utils import set_seed

        from aa_core.training.accelerator import get_accelerator

        set_seed(self.config.seed)
        return get_accelerator(self.config.train.mixed_precision)

    @property
    def is_main(self) -> bool:
        """Whether this is the process that writes the run folder's shared files."""
        return self.accelerator.is_main_process
