"""Commands on results: `aa sweep`, `aa compare`, `aa report`, `aa predict`, `aa export` (``aa_results``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer, user_errors) -> None:
    @app.command()
    def sweep(
        root: Annotated[Path, typer.Argument(help="Folder of the sweep's run folders (and sweep.json).")],
        grid: Annotated[Optional[list[str]], typer.Option("--grid", help="KEY=V1,V2: values to sweep (repeatable).")] = None,
        grid_file: Annotated[
            Optional[Path], typer.Option("--grid-file", help="A YAML file of KEY: [values]. Its slurm: holds job options.")
        ] = None,
        seeds: Annotated[Optional[str], typer.Option("--seeds", help="Seeds, comma-separated (default 0).")] = None,
        config: Annotated[Optional[Path], typer.Option("--config", help="Base YAML config of every run.")] = None,
        sets: Annotated[Optional[list[str]], typer.Option("--set", help="Base section.key=value of every run (repeatable).")] = None,
        devices: Annotated[Optional[str], typer.Option("--devices", help="GPUs to run on at once, one run each: 0,1,2,3.")] = None,
        launcher: Annotated[
            Optional[str], typer.Option("--launcher", help="processes (the default), slurm (jobs with dependencies), slurm-local.")
        ] = None,
        slurm: Annotated[
            Optional[list[str]],
            typer.Option("--slurm", help="A job option: partition, gpus_per_run, cpus_per_run, time, account, sbatch (repeatable)."),
        ] = None,
    ):
        """Run a grid of configurations and seeds, sharing the stages they have in common; rerun to resume."""
        from aa_core.runs import AAError
        from aa_results.cluster_options import parse_options, slurm_section
        from aa_results.launchers import LAUNCHERS, launch
        from aa_results.sweep import Sweep, check_grid, parse_grid, run_sweep

        say = lambda line: typer.echo(line, err=True)  # noqa: E731
        with user_errors():
            record = Sweep.load(root) if (root / "sweep.json").is_file() else None
            if grid or grid_file or seeds or config or sets or launcher or slurm:
                chosen = Sweep(
                    root=root,
                    config=str(config) if config else (record.config if record else None),
                    sets=list(sets or (record.sets if record else [])),
                    grid=parse_grid(grid or [], grid_file) or (record.grid if record else {}),
                    seeds=[int(s) for s in seeds.split(",")] if seeds else (record.seeds if record else [0]),
                    status=record.status if record else {},
                    launcher=launcher or (record.launcher if record else "processes"),
                    slurm=(record.slurm if record else {}) | slurm_section(grid_file) | parse_options(slurm or []),
                    jobs=record.jobs if record else {},
                )
            else:
                chosen = Sweep.load(root)
            check_grid(chosen.grid, chosen.sets)
            if chosen.launcher not in LAUNCHERS:
                raise AAError(f"unknown launcher '{chosen.launcher}'; choose one of: {', '.join(LAUNCHERS)}")
            if chosen.launcher == "processes" and slurm:
                raise AAError("--slurm sets the options of SLURM jobs; add --launcher slurm")
            if chosen.launcher == "processes":
                status = run_sweep(chosen, devices.split(",") if devices else None, say=say)
            elif devices:
                raise AAError("--devices spreads runs over this machine's GPUs; on SLURM ask each job for GPUs with --slurm gpus_per_run=N")
            else:
                launch(chosen, say=say)
                status = {m.folder: chosen.status.get(m.folder, "") for m in chosen.members()}
        failed = {k: v for k, v in status.items() if v.startswith("failed")}
        done = sum(v == "done" for v in status.values())
        waiting = f"; {len(status) - done - len(failed)} waiting for their jobs" if len(status) - done - len(failed) else ""
        typer.echo(f"{done} of {len(chosen.members())} runs done under {root}{waiting}; `aa compare {root}` tabulates them")
        for name, why in failed.items():
            typer.secho(f"  {name}: {why}", err=True, fg="red")
        if chosen.launcher == "slurm" and done < len(status):
            typer.echo(f"jobs submitted: `aa sweep {root}` shows their states and submits again what failed or was cancelled")
        if failed:
            raise typer.Exit(1)

    @app.command()
    def compare(
        runs: Annotated[list[Path], typer.Argument(help="Run folders, or folders holding them (a sweep's root).")],
        out: Annotated[Optional[Path], typer.Option("--out", help="Folder for compare.csv and .md (default: the first named).")] = None,
        select: Annotated[
            Optional[str],
            typer.Option("--select", help="Rank by a label-free criterion (snd, infomax, entropy, ensv): the pick and its regret."),
        ] = None,
    ):
        """One table: a row per configuration, mean ± std over seeds of source-only, adapt and refine accuracy."""
        from aa_results.compare import configurations, find_runs, markdown, table, write
        from aa_results.label_free import choose, ranked, regret_rows

        with user_errors():
            groups = configurations(find_runs(runs))
            rows, regrets = table(groups), []
            if select is not None:
                choice = choose(groups, select)
                rows, regrets = ranked(rows, choice, groups), regret_rows(groups)
            csv_path, md_path = write(rows, out or runs[0], regrets)
        typer.echo(markdown(rows, regrets), nl=False)
        if select is not None:
            typer.echo(f"\npicked by {select}: {choice.pick}")
            if choice.regret is None:
                typer.echo("the target has no dev labels: the pick's regret cannot be measured")
            else:
                typer.echo(f"best by dev accuracy: {choice.best_by_dev}; regret {choice.regret:.4f} (dev accuracy given up)")
        typer.echo(f"written: {csv_path}, {md_path}")

    @app.command()
    def predict(
        run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
        images: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
        out: Annotated[Optional[Path], typer.Option("--out", help="Write a CSV (image, predicted, confidence).")] = None,
    ):
        """Predict the category of images with a run's final model and preprocessing."""
        from aa_core.runs import Run
        from aa_results.predict import Predictor, image_paths, write_predictions

        with user_errors():
            predictions = Predictor(Run.open(run_dir)).predict(image_paths(images))
        if out is None:
            for p in predictions:
                typer.echo(f"{p.path}\t{p.category}\t{p.confidence:.4f}")
            return
        write_predictions(predictions, out)
        typer.echo(f"{len(predictions)} predictions written to {out}")

    @app.command()
    def export(
        run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
        out: Annotated[Path, typer.Argument(help="A new folder for the exported model.")],
        push_to_hub: Annotated[Optional[str], typer.Option("--push-to-hub", help="Also upload it to this Hub repo (user/name).")] = None,
        private: Annotated[bool, typer.Option("--private", help="Make the Hub repo private, an existing one too.")] = False,
    ):
        """Write the final model as a folder that loads with torch, timm and safetensors alone (and a model card)."""
        from aa_results.export import export as write_export
        from aa_results.export import push_to_hub as push

        with user_errors():
            folder = write_export(run_dir, out)
            typer.echo(f"exported to {folder} (load it with its modeling.py; README.md is the model card)")
            if push_to_hub:
                typer.echo(f"pushed: {push(folder, push_to_hub, private)}")

    @app.command()
    def report(
        run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
        out: Annotated[Optional[Path], typer.Option("--out", help="The HTML file (default: RUN/report.html).")] = None,
    ):
        """Write a self-contained HTML report: synthetic images, target predictions, training curves, confusion, config."""
        from aa_results.report import write_report

        with user_errors():
            path = write_report(run_dir, out)
        typer.echo(f"report: {path}")
