"""Run folders seen from outside the pipeline: the core's surface for the tools built on it.

``aa_results`` (sweep, compare, report, predict, export) imports this module and nothing else
of the core, so the core can change inside without its tools noticing::

    Run.open(path)              a run folder made by `aa run`, its config resolved as the run resolved it
    recorded_config(path)       the settings a run folder's config.yaml records (a stage command's base)
    Run(config, path)           the run ``config`` makes in ``path`` (maybe not started yet)
    run.stages                  the stages it runs, in order
    run.fingerprints()          each stage's fingerprint (what it depends on); run.source_only_fingerprint()
    run.share_from(donors)      take the stages other run folders completed with the same fingerprints (``aa sweep``)
    run.final_stage, run.model(stage), run.input_format()
                                the trained networks and the way they read an image
    execute(config, path, ...)  the pipeline itself (``aa run``)
    own_backbone_source(name)   the code of Adapt Anything's own timm backbones, for exports
    IMPLEMENTATION_SECTIONS, core_keys(section)
                                the sections naming an implementation; their keys that are not its options
    load_config, parse_set, RunFolder, OUTPUTS, write_atomic, is_image, AAError
    write_csv, read_csv         CSV files safe in a spreadsheet (formula cells quoted), written whole
    told(metrics)               what aa says of the run's final model: which was kept, why, and what to do
    MODELS                      what a run reports, in order: zero_shot (with a VLM), init (model.init), source_only, adapt, refine
"""

from __future__ import annotations

from pathlib import Path

from aa_core.config import IMPLEMENTATION_SECTIONS, Config, load_config, parse_set
from aa_core.csv_cells import read_csv, write_csv
from aa_core.data.image_folder import is_image, open_image, shown_name
from aa_core.errors import AAError
from aa_core.final_model import told
from aa_core.lock import writer_lock
from aa_core.run_folder import MODELS, OUTPUTS, RunFolder, walk_files, write_atomic

__all__ = [
    "AAError", "IMPLEMENTATION_SECTIONS", "MODELS", "OUTPUTS", "Run", "RunFolder", "core_keys", "execute", "is_image", "load_config",
    "open_image", "own_backbone_source", "parse_set", "read_csv", "recorded_config", "shown_name", "told", "walk_files", "write_atomic",
    "write_csv", "writer_lock",
]  # fmt: skip

OWN_BACKBONES = {"aa_small_cnn": "aa_core.models.small_cnn", "aa_vit_tiny": "aa_core.models.tiny_vit"}


def recorded_config(root: str | Path) -> dict:
    """The settings ``root``'s ``config.yaml`` records, less the derived record; a one-line error
    for a folder ``aa run`` did not make."""
    from aa_core.pipeline import read_config

    return read_config(RunFolder(root))


def core_keys(section: str) -> set[str]:
    """The keys of implementation section ``section`` that are the core's (``name``,
    ``images_per_class``...), not the chosen implementation's options."""
    return set(Config.model_fields[section].annotation.model_fields)


class Run:
    """One run folder and the resolved config that runs (or ran) in it."""

    def __init__(self, config: Config, root: str | Path):
        from aa_core.pipeline import context

        self.ctx = context(config, root)

    @classmethod
    def open(cls, root: str | Path) -> Run:
        """A run folder ``aa run`` made; a one-line error for any other folder."""
        return cls(load_config(base=recorded_config(root)), root)

    @property
    def config(self) -> Config:
        return self.ctx.config

    @property
    def folder(self) -> RunFolder:
        return self.ctx.folder

    @property
    def categories(self) -> list[str]:
        return self.ctx.categories

    @property
    def target(self):
        """The target images and, kept apart for reports, their labels (``aa_core.data.target.TargetSet``)."""
        return self.ctx.target

    @property
    def stages(self) -> list[str]:
        from aa_core.pipeline import active_stages

        return active_stages(self.config)

    def fingerprints(self) -> dict[str, str]:
        """Each stage's fingerprint, from the run folder as it is now."""
        from aa_core.fingerprints import fingerprints

        return fingerprints(self.ctx, self.stages)

    def share_from(self, donors: list[RunFolder]) -> list[str]:
        """Take every leading stage (and the source-only model) a donor run folder completed with
        this run's fingerprints: linked or copied here, recorded as shared; return what was taken."""
        from aa_core.pipeline import share_stages

        self.folder.create()
        return share_stages(self.ctx, donors)

    def source_only_fingerprint(self) -> str:
        from aa_core.fingerprints import source_only_fingerprint

        return source_only_fingerprint(self.ctx)

    @property
    def final_stage(self) -> str:
        from aa_core.trained import final_stage

        return final_stage(self.ctx)

    def model(self, stage: str | None = None):
        """The trained network of ``stage`` (default: the final model), in evaluation mode; a one-line error if not trained yet."""
        from aa_core.trained import trained_model

        stage = stage or self.final_stage
        saved = self.folder.zero_shot_head if stage == "zero_shot" else self.folder.weights(stage)
        if stage != "init" and not saved.is_file():  # init: the user's checkpoint, nothing saved
            raise AAError(f"{self.folder.root} has no trained model yet ({stage}.safetensors); "
                          f"finish it with `aa run --out {self.folder.root}`")  # fmt: skip
        return trained_model(self.ctx, stage).eval()

    def input_format(self, stage: str | None = None):
        """How ``stage``'s model (default: the final one) reads an image (``aa_core.data.input_format.InputFormat``:
        size, channels, normalisation): the run's, or for the zero-shot row the VLM's own."""
        from aa_core.context import VLM_BACKBONE
        from aa_core.data.input_format import InputFormat

        if (stage or self.final_stage) != "zero_shot" or self.config.model.backbone == VLM_BACKBONE:
            return self.ctx.input_format
        cls, options = self.ctx.implementation("vlm")
        side, mean, std = cls.image_format(options)
        return InputFormat(self.config.data.model_copy(update={"image_size": side, "channels": 3}), self.config.model, (mean, std))


def execute(config: Config, root: str | Path, only: list[str] | None = None, until: str | None = None, adopt: bool = False) -> dict:
    """Run the pipeline (``aa run``; ``only`` some stages, or ``until`` one); return the metrics.

    ``adopt``: run in an existing folder aa did not make, moving aside what the run would overwrite."""
    from aa_core.pipeline import run

    return run(config, root, only=only, until=until, adopt=adopt)


def own_backbone_source(name: str) -> str | None:
    """The source of the module that registers Adapt Anything's own timm backbone ``name``; None for timm's own."""
    import importlib
    import inspect

    return inspect.getsource(importlib.import_module(OWN_BACKBONES[name])) if name in OWN_BACKBONES else None
