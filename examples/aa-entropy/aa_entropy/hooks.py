"""Hooks: each stage's time appended to ``timings.csv`` in the run folder; ``aa timings RUN`` prints them."""

import csv
from pathlib import Path

from aa_core.api import hookimpl


@hookimpl
def aa_stage_end(stage, run_dir, seconds, reused):
    with open(Path(run_dir) / "timings.csv", "a", newline="") as f:
        csv.writer(f).writerow([stage, f"{seconds:.3f}", int(reused)])


@hookimpl
def aa_register_commands(app):
    @app.command()
    def timings(run_dir: Path):
        """Print the stage timings recorded in a run folder."""
        for stage, seconds, reused in csv.reader(open(run_dir / "timings.csv")):
            print(f"{stage:<10} {'reused' if reused == '1' else seconds + ' s'}")
