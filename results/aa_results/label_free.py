"""`aa compare --select CRITERION`: choosing a configuration of a sweep without target labels.

Each run records, for every model it trained, label-free criteria of that model's predictions on
the target (``metrics.json``'s ``label_free``: ``entropy``, ``infomax``, ``snd``; higher is better,
``aa_core.selection``) and which model it kept (``final``). A configuration :math:`c` with seeds
:math:`S_c` scores

.. math:: v_c = \\frac{1}{|S_c|} \\sum_{s \\in S_c} \\mathrm{crit}(p^{final}_{c,s}),

the criterion of each run's final model, averaged over seeds; the configurations are ranked by
:math:`v_c` and the first is the pick. Where the target has labels, the dev half (the one choices
may be made on) measures the choice: with :math:`d_c` the final model's dev accuracy averaged over
seeds, the regret of a pick :math:`\\hat c` is :math:`\\max_c d_c - d_{\\hat c} \\ge 0`, how much
dev accuracy choosing by the criterion gives up against choosing by labels.

``ensv`` (EnsV, ``aa_core.selection``) ranks the runs together: the pseudo-target is the
ensemble of every run's final predictions, and :math:`\\mathrm{crit}` a run's agreement with it.
``predictions.csv`` keeps each image's top class and its probability, so the ensemble sums those
(:math:`\\hat y_i = \\arg\\max_k \\sum_r c_{ri} \\mathbb{1}[k_{ri} = k]`; the rest of each
prediction's mass is not kept); images are matched by name, read a run at a time.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from aa_core.runs import AAError, read_csv

from .compare import Run, final_accuracy, mean_std

CRITERIA = ("entropy", "infomax", "snd", "ensv")


@dataclass
class Choice:
    criterion: str
    ranking: list[tuple[str, float]]  # (configuration, v_c), best first
    dev: dict[str, float]  # configuration -> d_c; empty where the target has no dev labels

    @property
    def pick(self) -> str:
        return self.ranking[0][0]

    @property
    def best_by_dev(self) -> str | None:
        return max(self.dev, key=self.dev.get) if self.dev else None

    @property
    def regret(self) -> float | None:
        return self.dev[self.best_by_dev] - self.dev[self.pick] if self.dev else None


def criterion_of(run: Run, criterion: str) -> float:
    """The criterion of the model ``run`` kept as its result."""
    final = run.metrics.get("final", {}).get("model")
    values = run.metrics.get("label_free", {}).get(final)
    if values is None or criterion not in values:
        raise AAError(f"{run.path} records no label-free criteria of its final model (metrics.json from an older aa); "
                      f"rerun its evaluate stage with `aa evaluate {run.path}`")  # fmt: skip
    return values[criterion]


def final_predictions(run: Run) -> dict[str, tuple[str, float]]:
    """image -> (predicted category, its probability), from the run's ``predictions.csv``."""
    path = run.path / "predictions.csv"
    if not path.is_file():
        raise AAError(f"{path} is missing; run `aa evaluate {run.path}` to write it again, or leave the run out")
    try:
        return {row["image"]: (row["predicted"], float(row["confidence"])) for row in read_csv(path)}
    except (KeyError, ValueError):
        raise AAError(f"{path} is not the predictions aa wrote (image, predicted, confidence); "
                      f"run `aa evaluate {run.path}` to write it again") from None  # fmt: skip


def ensemble_agreements(runs: list[Run]) -> dict[Path, float]:
    """``ensv`` of each run: its final predictions' agreement with the ensemble of all ``runs``'."""
    votes: dict[str, dict[str, float]] = {}
    for run in runs:  # first pass: the ensemble
        for image, (category, confidence) in final_predictions(run).items():
            votes.setdefault(image, {})
            votes[image][category] = votes[image].get(category, 0.0) + confidence
    pseudo = {image: max(sorted(v), key=v.get) for image, v in votes.items()}  # ties: the first category by name
    out = {}
    for run in runs:  # second pass: each run against it
        predicted = final_predictions(run)
        if predicted.keys() != pseudo.keys():
            raise AAError(f"{run.path} predicted other images than the other runs; --select ensv compares runs on one target")
        out[run.path] = sum(category == pseudo[image] for image, (category, _) in predicted.items()) / len(predicted)
    return out


def run_scores(groups: dict[str, list[Run]], criterion: str) -> dict[str, list[float]]:
    """Each configuration's runs' values of ``criterion``."""
    if criterion not in CRITERIA:
        raise AAError(f"unknown criterion '{criterion}' for --select; choose one of: {', '.join(CRITERIA)}")
    if criterion == "ensv":
        agreement = ensemble_agreements([r for runs in groups.values() for r in runs])
        return {name: [agreement[r.path] for r in runs] for name, runs in groups.items()}
    return {name: [criterion_of(r, criterion) for r in runs] for name, runs in groups.items()}


def choose(groups: dict[str, list[Run]], criterion: str) -> Choice:
    """Rank the configurations ``groups`` (name -> its runs, one per seed) by ``criterion``."""
    scores = {name: statistics.mean(values) for name, values in run_scores(groups, criterion).items()}
    ranking = sorted(scores.items(), key=lambda item: -item[1])  # stable: ties keep the table's order
    devs = {name: [final_accuracy(r.metrics, "dev_accuracy") for r in runs] for name, runs in groups.items()}
    labelled = all(None not in values for values in devs.values())
    return Choice(criterion, ranking, {name: statistics.mean(v) for name, v in devs.items()} if labelled else {})


def ranked(rows: list[dict], choice: Choice, groups: dict[str, list[Run]]) -> list[dict]:
    """The comparison's rows in the order of ``choice``, with the criterion (mean ± std) and the pick marked."""
    by_name = {row["configuration"]: row for row in rows}
    values = run_scores(groups, choice.criterion)
    out = []
    for rank, (name, _) in enumerate(choice.ranking, 1):
        mark = {"rank": rank, "pick": "*" if name == choice.pick else "", "configuration": name}
        out.append(mark | {choice.criterion: mean_std(values[name])} | by_name[name])
    return out


def regret_rows(groups: dict[str, list[Run]]) -> list[dict]:
    """For each criterion: its pick, the pick's dev and test accuracy (final model, mean over seeds) and
    its regret; last, the configuration labels would pick. Empty where the target has no dev labels."""
    choices = [choose(groups, criterion) for criterion in CRITERIA]
    dev = choices[0].dev
    if not dev:
        return []

    def row(criterion: str, pick: str, regret: float) -> dict:
        tests = [a for a in map(final_accuracy, (r.metrics for r in groups[pick])) if a is not None]
        test = f"{statistics.mean(tests):.4f}" if tests else ""
        return {"criterion": criterion, "pick": pick, "dev final": f"{dev[pick]:.4f}", "regret": f"{regret:.4f}", "final": test}

    rows = [row(c.criterion, c.pick, c.regret) for c in choices]
    return rows + [row("dev accuracy (labels)", choices[0].best_by_dev, 0.0)]
