"""Training logs to accelerate's experiment trackers, through the ``aa_log`` hook.

``--set track.trackers='[tensorboard]'`` (or ``wandb``, ``mlflow``, ``comet_ml``, ``aim``,
``clearml``, ``dvclive``: accelerate's names) opens those trackers when a run starts, records the
resolved config as its hyper-parameters, sends every logged step as ``<stage>/<scalar>``, and
closes them when the run ends. Trackers that keep files write them under ``<run>/tracking``.
TensorBoard needs the ``tensorboard`` package: ``pip install 'adapt-anything[tensorboard]'``.

This module is a hook plugin of the ``adapt-anything`` distribution itself; it imports
accelerate only when a run asks for a tracker.
"""

from __future__ import annotations

import importlib.util

from aa_core.errors import AAError
from aa_core.hookspecs import hookimpl

_open: list = []  # this process's trackers, between aa_run_start and aa_run_end

NEEDS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml", "aim": "aim"}


def flat(config: dict, prefix: str = "") -> dict:
    """Nested config -> ``{"section/key": value}`` with scalars only (trackers take no lists)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def check_tracker(name: str) -> None:
    """Refuse an unknown tracker, or one whose package is missing, before any work."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    if name not in LOGGER_TYPE_TO_CLASS:
        raise AAError(f"unknown tracker '{name}' in track.trackers; choose from {', '.join(sorted(LOGGER_TYPE_TO_CLASS))}")
    package = NEEDS.get(name)
    if package and importlib.util.find_spec(package) is None:
        raise AAError(f"tracker '{name}' needs the {package} package; pip install {package}")


def open_tracker(name: str, run_dir):
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    check_tracker(name)
    cls = LOGGER_TYPE_TO_CLASS[name]
    run_name = run_dir.name
    tracker = cls(run_name, logging_dir=run_dir / "tracking") if cls.requires_logging_directory else cls(run_name)
    if hasattr(tracker, "start"):  # accelerate 1.0 (the floor) opens a tracker in its constructor; later ones in start()
        tracker.start()
    return tracker


@hookimpl
def aa_run_start(run_dir, config):
    names = config.get("track", {}).get("trackers", [])
    _open[:] = [open_tracker(name, run_dir) for name in names]
    for tracker in _open:
        tracker.store_init_configuration(flat(config))


@hookimpl
def aa_log(stage, step, scalars):
    for tracker in _open:
        tracker.log({f"{stage}/{name}": value for name, value in scalars.items()}, step=step)


@hookimpl
def aa_run_end(run_dir, metrics):
    for tracker in _open:
        tracker.finish()
    _open.clear()
