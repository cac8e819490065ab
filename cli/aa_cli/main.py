"""``aa``: run the pipeline, run one stage on a run folder, list plugins; sweep, compare, report, predict, export (``results``).

Startup stays light: ``aa --help`` and ``aa plugins`` import neither torch nor pydantic (the
config and the stages are imported inside the commands that need them; tests/test_cli.py counts).
"""

from __future__ import annotations

import enum
import functools
import inspect
import json
import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from aa_cli import results
from aa_core.errors import AAError
from aa_core.kinds import KINDS
from aa_core.stages import STAGE_NAMES

Stage = enum.Enum("Stage", {name: name for name in STAGE_NAMES}, type=str)

app = typer.Typer(
    name="aa",
    help="Adapt Anything: tailor an image classifier to any domain and categories from text.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts render as written ("KEY: [values]"), and rich is never imported
)


@dataclass
class RunOptions:
    """The options `aa run` and every stage command share: which config, with what changed."""

    config: Optional[Path]
    flags: dict  # flag name (a kind, source, target, seed) -> value or None
    sets: list[str]

    def load(self, base: dict | None = None):
        from aa_core.config import load_config

        return load_config(self.config, self.flags, self.sets, base=base)


def _option(name: str, annotation, help_text: str, *flags: str) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[annotation, typer.Option(*flags, help=help_text)]
    )


SHARED = [
    _option("config", Optional[Path], "A YAML file of config sections.", "--config"),
    *(_option(k.name, Optional[str], f"{k.help} ({k.section}.name).", k.flag) for k in KINDS.values() if k.flag),
    _option("source", Optional[str], "A labelled image folder instead of a synthetic source.", "--source"),
    _option("target", Optional[str], "Target image folder or built-in data set.", "--target"),
    _option("seed", Optional[int], "Random seed.", "--seed"),
    _option("sets", Optional[list[str]], "Override any key: section.key=value (repeatable).", "--set"),
]


def with_run_options(command):
    """Add the shared options to ``command``, which receives them as one ``options: RunOptions``."""
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "options"]

    @functools.wraps(command)
    def wrapper(**kwargs):
        shared = {p.name: kwargs.pop(p.name) for p in SHARED}
        config, sets = shared.pop("config"), shared.pop("sets") or []
        return command(options=RunOptions(config, shared, sets), **kwargs)

    wrapper.__signature__ = inspect.Signature(own + SHARED)
    return wrapper


@contextmanager
def user_errors():
    """Print a user's error as one line and exit non-zero, never with a traceback."""
    try:
        yield
    except AAError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.secho("interrupted: rerun the same command to resume where it stopped", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        from aa_core.errors import out_of_space

        if not out_of_space(exc):
            raise
        message = "error: no space left to write the run folder; free some space and rerun the same command to resume"
        typer.secho(message, err=True, fg="red")
        raise typer.Exit(1) from None


class StageReporter:
    """Prints one line per stage, through the stage hooks like any plugin would."""

    def __init__(self):
        from aa_core.hookspecs import hookimpl

        self.aa_stage_start = hookimpl(self._start)
        self.aa_stage_end = hookimpl(self._end)

    @staticmethod
    def _start(stage, run_dir):
        typer.echo(f"[{stage}] running", err=True)

    @staticmethod
    def _end(stage, run_dir, seconds, reused):
        typer.echo(f"[{stage}] {'reused' if reused else f'done in {seconds:.1f} s'}", err=True)


def execute(config, out: Path, only: list[str] | None = None, until: str | None = None, adopt: bool = False) -> dict:
    from aa_core.plugins import plugin_manager
    from aa_core.runs import execute as run

    pm = plugin_manager().pm
    reporter = StageReporter()
    pm.register(reporter)
    try:
        return run(config, out, only=only, until=until, adopt=adopt)
    finally:
        pm.unregister(reporter)


def print_prompts(run_dir: Path, per_class: int = 3) -> None:
    """A few prompts of each category, as ``prompts.jsonl`` has them now."""
    from aa_core.data.image_folder import shown_name
    from aa_core.data.prompts import sample
    from aa_core.runs import Run

    with user_errors():
        run = Run.open(run_dir)
        for category, texts in sample(run.folder.prompts, run.categories, per_class).items():
            typer.echo(f"{shown_name(category)}:")
            for text in texts:
                typer.echo(f"  {shown_name(text)}")  # an escape sequence in a prompt is shown, not run by the terminal
    typer.echo(f"all prompts: {run.folder.prompts} (edit it by hand; the next `aa run` renders the edited prompts)")


def print_metrics(metrics: dict, out: Path) -> None:
    accuracy, dev = metrics.get("target_accuracy", {}), metrics.get("dev_accuracy", {})
    seconds = metrics.get("seconds", {})
    if accuracy:
        typer.echo("\ntarget accuracy" + ("    test     dev" if dev else ""))
        from aa_core.runs import MODELS

        for name in MODELS:
            if name in accuracy:
                typer.echo(f"  {name:<12} {accuracy[name]:.4f}" + (f"  {dev[name]:.4f}" if name in dev else ""))
    else:
        typer.echo("\nthe target has no labels: see predictions.csv")
    if "final" in metrics:
        from aa_core.runs import told

        for line in told(metrics):
            typer.echo(line)
    if seconds:
        typer.echo("seconds  " + "  ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    typer.echo(f"run folder: {out}")


@app.command()
@with_run_options
def run(
    options: RunOptions,
    out: Annotated[Path, typer.Option("--out", help="Run folder; rerunning reuses completed stages.")] = Path("runs/default"),
    until: Annotated[
        Optional[Stage], typer.Option("--until", help="Stop after this stage (prompts: edit prompts.jsonl, then run again).")
    ] = None,
    adopt: Annotated[
        bool, typer.Option("--adopt", help="Run in an existing folder aa did not make; what the run would overwrite moves to stale/.")
    ] = False,
):
    """Run every stage: prompts -> generate -> adapt -> refine -> evaluate (default: the digits task)."""
    with user_errors():
        metrics = execute(options.load(), out, until=until.value if until else None, adopt=adopt)
    if until is None or until.value == "evaluate":
        print_metrics(metrics, out)
    elif until.value == "prompts":
        print_prompts(out)
    else:
        typer.echo(f"stopped after {until.value}; run folder: {out}")


def stage_command(stage: str):
    def command(options: RunOptions, run_dir: Annotated[Path, typer.Argument(help="A run folder made by `aa run`.")]):
        from aa_core.runs import recorded_config

        with user_errors():
            metrics = execute(options.load(base=recorded_config(run_dir)), run_dir, only=[stage])
        if stage == "evaluate":
            print_metrics(metrics, run_dir)

    command.__doc__ = f"Run the {stage} stage on a run folder (the stages before it must be complete)."
    return with_run_options(command)


def prompts_command(
    options: RunOptions,
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `aa run`.")],
    show: Annotated[bool, typer.Option("--show", help="Print a few prompts of each category.")] = False,
):
    """Run the prompts stage on a run folder (reused while its settings hold); --show prints a sample."""
    from aa_core.runs import recorded_config

    with user_errors():
        execute(options.load(base=recorded_config(run_dir)), run_dir, only=["prompts"])
    if show:
        print_prompts(run_dir)


app.command(name="prompts")(with_run_options(prompts_command))
for _stage in STAGE_NAMES[1:]:
    app.command(name=_stage)(stage_command(_stage))


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False):
    """List installed plugins: distribution, version, status, and the names each registers."""
    from aa_core.plugins import plugin_manager

    with user_errors():
        manager = plugin_manager()
    rows = sorted(manager.plugins.values(), key=lambda p: (not p.builtin, p.distribution.lower()))
    problems = manager.collisions()
    if as_json:
        typer.echo(json.dumps({"plugins": [p.as_dict() for p in rows], "errors": problems}, indent=2))
        return
    for p in rows:
        status = p.status + (f": {p.reason}" if p.reason else "")
        typer.echo(f"{p.distribution} {p.version}  [{status}]{'' if p.builtin else '  (third-party)'}")
        for kind in KINDS:
            if p.names.get(kind):
                typer.echo(f"  {kind:<10} {', '.join(p.names[kind])}")
        if p.hooks:
            typer.echo(f"  {'hooks':<10} {', '.join(p.hooks)}")
    for problem in problems:
        typer.secho(f"error: {problem}", err=True, fg="red")


results.register(app, user_errors)


class LevelPrefix(logging.Formatter):
    """``WARNING: ...`` for problems; plain lines for what the run reports."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname}: {message}"


def main() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(LevelPrefix("%(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.WARNING)
    logging.getLogger("aa").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from aa_core.plugins import plugin_manager

    try:
        plugin_manager().register_commands(app)
    except AAError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(exc.exit_code)
    except Exception as exc:  # strict mode (AA_STRICT_PLUGINS): a plugin that fails to load is an error, traceback shown
        import traceback

        traceback.print_exc()
        typer.secho(f"error: plugins failed to load: {type(exc).__name__}: {exc}", err=True, fg="red")
        sys.exit(1)
    app()


if __name__ == "__main__":
    main()
