"""Which model is the run's result, chosen among every model it produced, without target labels.

The candidates are every model the run produced, in ``run_folder.MODELS`` order: the zero-shot
row where a VLM is set, the user's classifier as it came (``init``, where source-only training
changed it), the start (``source_only``: the classifier trained on the source, or the user's
classifier as it came where ``source_only.steps`` is 0), the adapted and the refined model.
The user has no label to check them, and each later stage can make its start worse: adaptation
aligns the wrong classes (negative transfer), refinement trains on wrong pseudo-labels. So the
evaluation gathers label-free evidence of each candidate's target predictions ``p`` (N images x
K classes), every value higher-is-better:

* ``entropy``: ``-1/N sum_i H(p_i)``, confidence;
* ``infomax``: ``H(mean_i p_i) - 1/N sum_i H(p_i)``, confident and diverse;
* ``snd``: the soft neighbourhood density of the predictions (Saito et al. 2021);
* ``ensv``: the agreement of the candidate's hard predictions with the candidates' ensemble,
  ``1/N sum_i [argmax p_i = argmax_k sum_m p^m_ik]`` (EnsV, Hu et al. 2023); the ensemble's
  majority is what the candidates agree on, so a model that left it is the one to doubt;
* ``agreement``: the candidate's mean agreement with each other candidate's hard predictions
  (``selection.pairwise_agreement``): as EnsV, without the candidate in what it is compared with;

and, where the run refines, the confident split's reliability (docs/split.md). A *rule* ranks the
candidates from this evidence; the first is kept, the second is the runner-up. ``RULES`` holds
every rule benchmarks/final_model.py measures; ``AUTO`` is the one that measured best on the dev
halves of six real pairs (docs/protocol.md, "The final model, chosen without labels"), and
``refine.keep`` names a candidate to force it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the rules and the messages read without torch: ``aa_core.runs`` hands them to aa_results
    import torch

CRITERIA = ("entropy", "infomax", "snd")
EVIDENCE = (*CRITERIA, "ensv", "agreement")  # every criterion a candidate is scored by; the last two by the evaluate stage
START = "source_only"  # the model adaptation starts from: the source-only classifier, or the user's own
STARTS = ("zero_shot", "init", START)  # what a later stage must not be worse than: every model the run did not adapt
ADVICE = ("for a better one, try a stronger backbone (--set model.backbone=resnet50 --set model.pretrained=true), "
          "refining the start itself (--uda none), or a vision-language model (--vlm clip --set vlm.model=...)")  # fmt: skip


def label_free(probabilities: torch.Tensor) -> dict[str, float]:
    """Every criterion of ``selection`` for one model's target probabilities (higher is better);
    ``ensv``, which ranks the run's models together, is added by the evaluate stage."""
    from aa_core.selection import score

    return {name: round(score(probabilities, name), 6) for name in CRITERIA}


@dataclass(frozen=True)
class Evidence:
    """What a rule may read: each candidate's label-free values (``EVIDENCE``), in ``MODELS``
    order, and the confident split's reliability (None where the run does not refine)."""

    values: dict[str, dict[str, float]]
    reliable: bool | None = None

    @property
    def candidates(self) -> list[str]:
        return list(self.values)


@dataclass(frozen=True)
class Final:
    """The kept model, the runner-up, the rule that ranked them and why."""

    model: str
    runner_up: str | None
    rule: str
    reason: str

    def record(self) -> dict:
        return {"model": self.model, "runner_up": self.runner_up, "rule": self.rule, "reason": self.reason}


Ranking = tuple[list[str], str]  # the candidates best first, and the reason for the first


def by(criterion: str, candidates: list[str], evidence: Evidence) -> list[str]:
    """``candidates`` by ``criterion``, highest first; a tie keeps the later stage (the one trained on more)."""
    order = evidence.candidates
    return sorted(candidates, key=lambda name: (evidence.values[name][criterion], order.index(name)), reverse=True)


def highest(criterion: str) -> Callable[[Evidence], Ranking]:
    """Every candidate ranked by one criterion."""

    def rule(evidence: Evidence) -> Ranking:
        ranked = by(criterion, evidence.candidates, evidence)
        shown = ", ".join(f"{name} {evidence.values[name][criterion]:.4f}" for name in ranked)
        last = [name for name in evidence.candidates if name not in STARTS][-1]
        why = f"the highest {criterion}: {shown}"
        return ranked, why if ranked[0] == last else f"{why}, so {negative(last, ranked[0])}"

    return rule


def split(evidence: Evidence) -> Ranking:
    """Release 0.2's rule: the refined model after a reliable split, else the adapted one; the
    start and the zero-shot row are never kept."""
    first = "refine" if evidence.reliable else "adapt"
    rest = [name for name in reversed(evidence.candidates) if name != first]
    if evidence.reliable is None:
        return [first, *rest], "the run does not refine"
    why = ("the confident split was reliable" if evidence.reliable
           else "the confident split was unreliable, so refining trained on doubtful pseudo-labels")  # fmt: skip
    return [first, *rest], why


def split_then(criterion: str) -> Callable[[Evidence], Ranking]:
    """The split's choice between refine and adapt, then that model against the start and the
    zero-shot row by ``criterion``: a later stage is kept only where it did not make its start worse."""

    def rule(evidence: Evidence) -> Ranking:
        trained, why = split(evidence)
        pick = trained[0]
        rivals = [name for name in evidence.candidates if name == pick or name in STARTS]
        ranked = by(criterion, rivals, evidence)
        rest = [name for name in trained if name not in ranked]
        if ranked[0] == pick:
            return [*ranked, *rest], f"{why}, and its {criterion} is above {' and '.join(ranked[1:]) or 'no other'}'s"
        return [*ranked, *rest], f"{pick}'s {criterion} is below {ranked[0]}'s: {negative(pick, ranked[0])}"

    return rule


def negative(worse: str, kept: str) -> str:
    """Why the later model ``worse`` was not kept: a stage after ``kept`` made it worse (negative
    transfer), or the zero-shot row is better."""
    if kept in ("init", START):
        what = "adaptation" if worse == "adapt" or kept == "init" else "adaptation and refinement"
        return f"{what} left the model worse than its start by the label-free evidence"
    if kept == "adapt":
        return "refinement left the model worse than the adapted one by the label-free evidence"
    return f"the {kept} model is better than the {worse} one by the label-free evidence"


RULES: dict[str, Callable[[Evidence], Ranking]] = {
    "split": split,
    **{name: highest(name) for name in EVIDENCE},
    **{f"split+{name}": split_then(name) for name in EVIDENCE},
}
AUTO = "ensv"


def choose(keep: str, evidence: Evidence, rule: str = AUTO) -> Final:
    """The final model: ``keep`` where it names a candidate (``refine.keep``), else ``rule``'s first."""
    candidates = evidence.candidates
    if keep != "auto":
        runner_up = next((name for name in reversed(candidates) if name != keep), None)
        return Final(keep, runner_up, "refine.keep", f"refine.keep is {keep}")
    ranked, reason = RULES[rule](evidence)
    return Final(ranked[0], ranked[1] if len(ranked) > 1 else None, rule, reason)


def told(metrics: dict) -> list[str]:
    """What ``aa run`` and ``aa report`` say of a run's ``metrics.json``: which model was kept and
    why, and where it is not the last one trained and no option forced it, what the user can do."""
    record = metrics["final"]
    last, done = ("refine", "refined") if "split" in metrics else ("adapt", "adapted")
    runner_up = f"; runner-up {record['runner_up']}" if record.get("runner_up") else ""
    lines = [f"final model: {record['model']} ({record['reason']}{runner_up})"]
    if record["model"] != last and record.get("rule") != "refine.keep":
        lines.append(f"the final model is not the {done} one: {ADVICE}")
    return lines
