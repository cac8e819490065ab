"""`aa compare ROOT_OR_RUNS...`: one table of many runs, one row per configuration.

Runs are the finished run folders named, or found under the folders named (a sweep's root).
Runs that differ only in their seed are one configuration; a configuration is named by the
settings that tell it from the others (``uda.name=mcd ssl.name=mixmatch``). Columns: target
accuracy after source-only training, adaptation and refinement, as mean ± standard deviation
over the seeds, on the test half of the labels and (``dev ...``) on the development half, the
one choices may be made on; ``final`` (``dev final``): the test (dev) accuracy of the model each
run kept as its result (chosen without labels, ``aa_core.final_model``); ``final regret`` (``dev
final regret``): the best of the run's models' test (dev) accuracy minus the final model's, what
the choice gave up; blank where the target has no labels or the stage did not run; the number of
seeds, and the mean seconds of a whole run (shared stages counted with the time they took where
they ran). ``--select`` ranks the rows by a
label-free criterion (``label_free``).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from aa_core.runs import MODELS, AAError, write_atomic, write_csv

NOT_SETTINGS = {"seed", "plugins", "environment"}  # differ between seeds or are records, not choices


@dataclass
class Run:
    path: Path
    config: dict
    metrics: dict


def find_runs(paths: list[str | Path]) -> list[Run]:
    runs, seen = [], set()
    for path in map(Path, paths):
        if not path.exists():
            raise AAError(f"{path} does not exist; name run folders or folders holding them")
        found = [path] if (path / "metrics.json").is_file() else sorted(p.parent for p in path.rglob("metrics.json"))
        for run in found:
            if run.resolve() not in seen and (run / "config.yaml").is_file():
                seen.add(run.resolve())
                runs.append(read_run(run))
    if not runs:
        raise AAError(f"no finished run under {', '.join(map(str, paths))}; finish one with `aa run` or `aa sweep`")
    return runs


def read_run(run: Path) -> Run:
    """A finished run's config and metrics; one line for a file edited into something else."""
    from aa_core.runs import recorded_config

    config = recorded_config(run)  # a YAML tag, a broken line: one line naming the file
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except ValueError as exc:
        raise AAError(f"{run / 'metrics.json'} is not JSON ({exc}); run `aa evaluate {run}` to write it again, or leave it out") from None
    if not isinstance(metrics, dict):
        raise AAError(f"{run / 'metrics.json'} is not a JSON object; run `aa evaluate {run}` to write it again, or leave it out")
    return Run(run, config, metrics)


def flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= flatten(value, name + ".")
        else:
            out[name] = value
    return out


def settings(config: dict) -> dict:
    """A run's settings, flattened; an implementation's options keyed by its name too
    (``uda.trade_off`` of DANN is ``uda[dann].trade_off``), since config.yaml writes every option
    out and another implementation's options are no difference between two runs."""
    from aa_core.runs import IMPLEMENTATION_SECTIONS, core_keys

    out = {}
    for key, value in flatten(config).items():
        section, _, name = key.partition(".")
        if section in NOT_SETTINGS:
            continue
        if section in IMPLEMENTATION_SECTIONS and name not in core_keys(section):
            key = f"{section}[{config[section].get('name')}].{name}"
        out[key] = value
    return out


def labels(runs: list[Run]) -> list[str]:
    """Each run's configuration name: the settings whose values differ among the runs, seed aside;
    an option, among the runs of its implementation."""
    flat = [settings(run.config) for run in runs]
    keys = sorted({k for f in flat for k in f})

    def differs(key: str) -> bool:
        among = [f for f in flat if key in f] if "[" in key else flat
        return len({json.dumps(f.get(key), sort_keys=True, default=str) for f in among}) > 1

    differing = [k for k in keys if differs(k)]
    shown = {k: k.split("[")[0] + k.split("]", 1)[1] if "[" in k else k for k in differing}
    return [" ".join(f"{shown[k]}={f[k] if k in f else None}" for k in differing if k in f or "[" not in k) or "all runs" for f in flat]


def mean_std(values: list[float]) -> str:
    if not values:
        return ""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def configurations(runs: list[Run]) -> dict[str, list[Run]]:
    """The runs of each configuration (its name -> its runs, one per seed), in the order found."""
    groups: dict[str, list[Run]] = {}
    for run, label in zip(runs, labels(runs)):
        groups.setdefault(label, []).append(run)
    return groups


def table(groups: dict[str, list[Run]]) -> list[dict]:
    rows = []
    everyone = [r for members in groups.values() for r in members]
    # the zero-shot and user's-classifier columns where some run has them; the trained models' always
    shown = [m for m in MODELS if m not in ("zero_shot", "init") or any(m in r.metrics.get("target_accuracy", {}) for r in everyone)]
    for label, members in groups.items():
        row = {"configuration": label, "seeds": len(members)}
        for key, prefix in (("target_accuracy", ""), ("dev_accuracy", "dev ")):
            for model in shown:
                row[prefix + model] = mean_std([r.metrics[key][model] for r in members if model in r.metrics.get(key, {})])
        row["final"] = mean_std([final_accuracy(r.metrics) for r in members if final_accuracy(r.metrics) is not None])
        row["dev final"] = mean_std([final_accuracy(r.metrics, "dev_accuracy") for r in members
                                     if final_accuracy(r.metrics, "dev_accuracy") is not None])  # fmt: skip
        for key, column in (("target_accuracy", "final regret"), ("dev_accuracy", "dev final regret")):
            row[column] = mean_std([regret for r in members if (regret := final_regret(r.metrics, key)) is not None])
        seconds = [sum(r.metrics.get("seconds", {}).values()) for r in members]
        row["seconds"] = f"{statistics.mean(seconds):.1f}"
        rows.append(row)
    return rows


def final_accuracy(metrics: dict, key: str = "target_accuracy") -> float | None:
    """The test (or, ``dev_accuracy``, dev) accuracy of the model the run kept as its result."""
    final = metrics.get("final", {}).get("model")
    return metrics.get(key, {}).get(final)


def final_regret(metrics: dict, key: str = "target_accuracy") -> float | None:
    """The best candidate's accuracy minus the final model's: what the label-free choice among the
    run's own models gave up (0 where it kept the best)."""
    kept = final_accuracy(metrics, key)
    return None if kept is None else round(max(metrics[key].values()) - kept, 4)


def markdown(rows: list[dict], *more: list[dict]) -> str:
    """``rows`` as a markdown table; each of ``more`` (if not empty) as another, after a blank line."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n" + "".join("\n" + markdown(table) for table in more if table)


def write(rows: list[dict], out: Path, *more: list[dict]) -> tuple[Path, Path]:
    """``compare.csv`` (``rows``) and ``compare.md`` (``rows`` and the tables ``more``) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "compare.csv", out / "compare.md"
    write_csv(csv_path, list(rows[0]), ([row[c] for c in rows[0]] for row in rows))
    write_atomic(md_path, markdown(rows, *more))
    return csv_path, md_path
