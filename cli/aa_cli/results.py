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
        grid_file: Annotated[Optional[Path], typer.Option("--grid-file", help="A YAML file of KEY: [values].")] = None,
        seeds: Annotated[Optional[str], typer.Option("--seeds", help="Seeds, comma-separated (default 0).")] = None,
        config: Annotated[Optional[Path], typer.Option("--config", help="Base YAML config of every run.")] = None,
        sets: Annotated[Optional[list[str]], typer.Option("--set", help="Base section.key=value of every run (repeatable).")] = None,
        devices: Annotated[Optional[str], typer.Option("--devices", help="GPUs to run on at once, one run each: 0,1,2,3.")] = None,
    ):
        """Run a grid of configurations and seeds, sharing the stages they have in common; rerun to resume."""
        from aa_results.sweep import Sweep, parse_grid, run_sweep

        with user_errors():
            if grid or grid_file or seeds or config or sets:
                record = Sweep.load(root) if (root / "sweep.json").is_file() else None
                chosen = Sweep(
                    root=root,
                    config=str(config) if config else (record.config if record else None),
                    sets=list(sets or (record.sets if record else [])),
                    grid=parse_grid(grid or [], grid_file) or (record.grid if record else {}),
                    seeds=[int(s) for s in seeds.split(",")] if seeds else (record.seeds if record else [0]),
                    status=record.status if record else {},
                )
            else:
                chosen = Sweep.load(root)
            status = run_sweep(chosen, devices.split(",") if devices else None, say=lambda line: typer.echo(line, err=True))
        failed = {k: v for k, v in status.items() if v != "done"}
        typer.echo(f"{len(status) - len(failed)} of {len(chosen.members())} runs done under {root}; `aa compare {root}` tabulates them")
        for name, why in failed.items():
            typer.secho(f"  {name}: {why}", err=True, fg="red")
        if failed:
            raise typer.Exit(1)

    @app.command()
    def compare(
        runs: Annotated[list[Path], typer.Argument(help="Run folders, or folders holding them (a sweep's root).")],
        out: Annotated[Optional[Path], typer.Option("--out", help="Folder for compare.csv and .md (default: the first named).")] = None,
    ):
        """One table: a row per configuration, mean ± std over seeds of source-only, adapt and refine accuracy."""
        from aa_results.compare import find_runs, markdown, table, write

        with user_errors():
            rows = table(find_runs(runs))
            csv_path, md_path = write(rows, out or runs[0])
        typer.echo(markdown(rows), nl=False)
        typer.echo(f"written: {csv_path}, {md_path}")

    @app.command()
    def predict(
        run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
        images: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
        out: Annotated[Optional[Path], typer.Option("--out", help="Write a CSV (image, predicted, confidence).")] = None,
    ):
        """Predict the category of images with a run's final model and preprocessing."""
        from aa_core.runs import Run
        from aa_results.predict import Predictor, image_paths, write_csv

        with user_errors():
            predictions = Predictor(Run.open(run_dir)).predict(image_paths(images))
        if out is None:
            for p in predictions:
                typer.echo(f"{p.path}\t{p.category}\t{p.confidence:.4f}")
            return
        write_csv(predictions, out)
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
