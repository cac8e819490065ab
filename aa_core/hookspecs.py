"""The hooks a plugin may implement: the whole cross-cutting contract, in one place.

Named implementations (a prompter, a generator, an image filter, a UDA or SSL algorithm) are not
hooks: they are registered as entry points, one group per kind (``aa_core.kinds``). Hooks are for
things many plugins join at once. A plugin module implements any of them with ``@hookimpl`` (from
``aa_core.api``) and is registered under the ``aa.plugins`` entry-point group. Keep that module
light: ``aa --help`` and ``aa plugins`` import it. Under ``accelerate launch`` hooks are called
on the main process only.
"""

import pluggy

hookspec = pluggy.HookspecMarker("aa")
hookimpl = pluggy.HookimplMarker("aa")


@hookspec
def aa_register_commands(app):
    """Add commands to the ``aa`` command line; ``app`` is its ``typer.Typer``."""


@hookspec
def aa_run_start(run_dir, config):
    """A run is starting in ``run_dir`` (a ``pathlib.Path``) with the resolved ``config`` (a dict)."""


@hookspec
def aa_stage_start(stage, run_dir):
    """Stage ``stage`` (one of ``aa_core.stages.STAGE_NAMES``) is about to run."""


@hookspec
def aa_stage_end(stage, run_dir, seconds, reused):
    """Stage ``stage`` finished after ``seconds``; ``reused`` is True when its earlier result was kept."""


@hookspec
def aa_log(stage, step, scalars):
    """Training step ``step`` (counted from 0) of training part ``stage`` logged ``scalars``
    (name -> float). The parts: ``source_only`` and ``adapt`` (the adapt stage trains the
    source-only model, then the UDA algorithm from it), ``refine`` (the SSL algorithm)."""


@hookspec
def aa_checkpoint(stage, step, path):
    """Training part ``stage`` (``source_only``, ``adapt``, ``refine``, as ``aa_log`` names them)
    saved its state after ``step`` steps in the folder ``path``; a run killed from now on resumes there."""


@hookspec
def aa_run_end(run_dir, metrics):
    """A run finished; ``metrics`` is the dict written to ``metrics.json``."""
