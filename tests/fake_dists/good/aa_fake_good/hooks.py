"""Implements every hook; lifecycle events are appended to the file $AA_FAKE_HOOK_LOG."""

import json
import os

from aa_core.api import hookimpl


def _log(event, **fields):
    path = os.environ.get("AA_FAKE_HOOK_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"event": event, **fields}, default=str) + "\n")


@hookimpl
def aa_register_commands(app):
    @app.command(name="fake-hello")
    def fake_hello(name: str = "world"):
        """Say hello (a command added by a plugin)."""
        print(f"hello {name} from aa-fake-good")


@hookimpl
def aa_run_start(run_dir, config):
    _log("run_start", run_dir=run_dir, uda=config["uda"]["name"])


@hookimpl
def aa_stage_start(stage, run_dir):
    _log("stage_start", stage=stage)


@hookimpl
def aa_stage_end(stage, run_dir, seconds, reused):
    _log("stage_end", stage=stage, reused=reused)


@hookimpl
def aa_log(stage, step, scalars):
    _log("log", stage=stage, step=step, names=sorted(scalars))


@hookimpl
def aa_checkpoint(stage, step, path):
    _log("checkpoint", stage=stage, step=step)


@hookimpl
def aa_run_end(run_dir, metrics):
    _log("run_end", metrics=metrics)

