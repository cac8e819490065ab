"""SGD with the usual parameter groups, and one call per update.

Parameter groups follow the domain adaptation papers: a pretrained backbone learns at
``backbone_lr_mult`` of the rate (it starts from good features; the new layers do not), and
optionally biases and normalisation weights get no weight decay (FixMatch's practice).

Optimizers run torch's fused kernels where it has them (``fused()``): one pass over every
parameter instead of a handful of small operations per tensor. On 2 CPU cores that made a DANN
step 1.4x faster (its 1024-wide discriminator's momentum dominated) and an MCD step 1.1x.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aa_core.options import SGDOptions

if TYPE_CHECKING:
    import torch

__all__ = ["SGDOptions", "Update", "fused", "param_groups", "sgd", "sgd_training"]  # SGDOptions lives in aa_core.options


def fused(accelerator) -> dict[str, bool]:
    """``fused=True`` for a torch optimizer on a device with fused kernels (CPU and CUDA), else nothing."""
    return {"fused": True} if accelerator.device.type in ("cpu", "cuda") else {}


def _is_decayed(name: str, parameter: torch.nn.Parameter) -> bool:
    return parameter.ndim > 1 and not name.endswith(".bias")


def param_groups(
    modules: dict[str, torch.nn.Module],
    lr: float,
    weight_decay: float,
    backbone_lr_mult: float,
    context,
    *,
    decay_norm_and_bias: bool = True,
) -> list[dict]:
    """Parameter groups of ``modules`` (name -> module) for any torch optimizer.

    The module named ``backbone`` learns at ``backbone_lr_mult`` of ``lr`` when pretrained; with
    ``decay_norm_and_bias=False``, one-dimensional parameters (biases, norm weights) get no
    weight decay.
    """
    groups = []
    for module_name, module in modules.items():
        mult = backbone_lr_mult if module_name == "backbone" and context.pretrained_backbone else 1.0
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if decay_norm_and_bias:
            split = {weight_decay: [p for _, p in named]}
        else:
            split = {weight_decay: [p for n, p in named if _is_decayed(n, p)]}
            split[0.0] = [p for n, p in named if not _is_decayed(n, p)]
        groups += [{"params": ps, "lr": lr * mult, "weight_decay": wd} for wd, ps in split.items() if ps]
    return groups


def sgd(
    modules: dict[str, torch.nn.Module], options: SGDOptions, context, *, decay_norm_and_bias: bool = True
) -> torch.optim.SGD:
    """SGD over ``param_groups(modules, ...)`` with ``options``."""
    import torch

    o = options
    groups = param_groups(modules, o.lr, o.weight_decay, o.backbone_lr_mult, context, decay_norm_and_bias=decay_norm_and_bias)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, **fused(context.accelerator))


def sgd_training(classifier, options: SGDOptions, context, schedule=None, *, decay_norm_and_bias: bool = True):
    """The block that opens most algorithms' ``__init__``, in one call: SGD over the classifier's
    ``backbone`` (at ``backbone_lr_mult`` of the rate when pretrained) and the rest (bottleneck and
    head), the classifier and the optimizer prepared by accelerate together (the rule: every module
    and optimizer a step uses goes through one ``prepare`` call), and the ``Update`` that steps them
    along ``schedule``, a factor of training progress (``inverse_decay``, ``cosine_decay``; none:
    a constant rate). Returns ``(classifier, update)``: train the returned classifier.

    Example::

        self.classifier, self.update = sgd_training(classifier, options, context, inverse_decay)
    """
    import torch

    from aa_core.training.schedules import lambda_lr

    rest = torch.nn.ModuleList([classifier.bottleneck, classifier.head])
    optimizer = sgd({"backbone": classifier.backbone, "rest": rest}, options, context, decay_norm_and_bias=decay_norm_and_bias)
    classifier, optimizer = context.accelerator.prepare(classifier, optimizer)
    scheduler = lambda_lr(optimizer, context.total_steps, schedule) if schedule is not None else None
    return classifier, Update(optimizer, context.accelerator, scheduler)


class Update:
    """``update(loss)``: zero the gradients, back-propagate through accelerate, step, schedule.

    ``optimizer`` may be a list: one loss then updates several parameter sets at once (MCD's
    first step updates its feature extractor and its classifiers, each with its optimizer).
    ``max_grad_norm`` clips the gradients' global norm before the step (CDTrans: 1). A loss that
    is NaN or infinite stops training there, naming the algorithm and the step (``aa_core.blame``).

    Example::

        self.update = Update(optimizer, context.accelerator, scheduler)
        self.update(loss)
    """

    def __init__(self, optimizer, accelerator, scheduler=None, max_grad_norm: float | None = None):
        self.optimizers = list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
        self.accelerator = accelerator
        self.scheduler = scheduler
        self.max_grad_norm = max_grad_norm

    @property
    def optimizer(self):
        return self.optimizers[0]

    def __call__(self, loss: torch.Tensor) -> None:
        if not bool(loss.isfinite().all()):  # one NaN step poisons every weight: stop at the step it appears
            from aa_core.blame import NonFinite

            raise NonFinite("loss", float(loss.detach().float().reshape(-1)[0]))
        for optimizer in self.optimizers:
            optimizer.zero_grad()
        self.accelerator.backward(loss)
        if self.max_grad_norm is not None:
            params = [p for optimizer in self.optimizers for group in optimizer.param_groups for p in group["params"]]
            self.accelerator.clip_grad_norm_(params, self.max_grad_norm)
        for optimizer in self.optimizers:
            optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
