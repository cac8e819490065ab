"""USB's (semilearn 0.3.2) FixMatch, FreeMatch, SoftMatch and MixMatch on aa's network and batches, for benchmarks/peer.py.

Runs in the environment ``benchmarks/peer_venvs.sh`` makes. USB is installed there without its
dependencies (they would pull another torch); ``import_usb`` imports its algorithm classes
without its package ``__init__``, which loads every data set builder (audio ones need
torchaudio), and with empty ``wandb`` and ``aim`` modules for the logging hooks it imports but
that these runs do not register. The training step is USB's own loop body
(``AlgorithmBase.train``): ``before_train_step`` hooks, ``train_step``, ``after_train_step``
hooks, with the hooks that do the maths (``ParamUpdateHook``: backward, optimizer and scheduler
steps; ``EMAHook``; FixMatch's pseudo-labelling and thresholding hooks). The evaluation,
checkpoint, logging and timer hooks are left out: they read USB's own data loaders, write files
or time with CUDA events. USB's EMA decay is set before each step to aa's default warm-up rule
(USB keeps 0.999 from the first step; over a few hundred steps that predicts with mostly the
starting weights under the trained model's batch-norm statistics, see docs/ssl-fixmatch.md).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
from argparse import Namespace

from torch import nn

KEPT_HOOKS = {"ParamUpdateHook", "EMAHook", "PseudoLabelingHook", "MaskingHook", "DistAlignHook"}


@functools.cache
def import_usb():
    """USB's algorithm classes by name (see the module's docstring for what is left out)."""
    import accelerate.tracking  # noqa: F401  before the empty wandb module exists: accelerate looks for the real one
    import transformers  # noqa: F401

    root = importlib.util.find_spec("semilearn").submodule_search_locations[0]
    placeholders = {name: types.ModuleType(name) for name in ("wandb", "aim")}
    sys.modules.update(placeholders)
    try:
        for name in ("semilearn", "semilearn.datasets"):
            package = types.ModuleType(name)
            package.__path__ = [root + name[len("semilearn") :].replace(".", "/")]
            sys.modules[name] = package
        datasets = sys.modules["semilearn.datasets"]
        for part in ("utils", "samplers"):  # what USB's core imports from semilearn.datasets
            module = importlib.import_module(f"semilearn.datasets.{part}")
            vars(datasets).update({k: v for k, v in vars(module).items() if not k.startswith("_")})
        from semilearn.algorithms.fixmatch import FixMatch
        from semilearn.algorithms.freematch import FreeMatch
        from semilearn.algorithms.mixmatch import MixMatch
        from semilearn.algorithms.softmatch import SoftMatch
    finally:
        for name in placeholders:
            sys.modules.pop(name)
    return {"fixmatch": FixMatch, "mixmatch": MixMatch, "freematch": FreeMatch, "softmatch": SoftMatch}


def warmed_up(decay: float, updates: int) -> float:
    """timm's warm-up of the EMA decay, aa's default (``ema_warmup``): ``min(decay, 1 - (1 + k)^(-2/3))``."""
    return min(decay, 1 - (1 + updates) ** (-2 / 3))


class USBNet(nn.Module):
    """aa's classifier as USB's networks answer: ``{"logits", "feat"}``."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x, only_fc: bool = False, **_):
        logits, features = self.classifier(x, with_features=True)
        return {"logits": logits, "feat": features}


def usb_algorithm(name: str, classifier, steps: int, batch_size: int, options, lr: float):
    """USB's ``name`` over a copy of ``classifier`` with aa's hyper-parameters, and a step on aa's ``SSLBatch``."""
    import copy

    classes = import_usb()

    def net_builder(num_classes, pretrained=False, pretrained_path=None):
        return USBNet(copy.deepcopy(classifier))

    common = dict(
        num_classes=classifier.num_classes, ema_m=options.ema_decay, epoch=1, num_train_iter=steps, num_eval_iter=steps,
        num_log_iter=steps, use_cat=True, amp=False, clip_grad=0, save_name="peer", save_dir="/nonexistent", resume=False,
        gpu=None, rank=0, distributed=False, world_size=1, layer_decay=1.0, num_warmup_iter=0, use_pretrain=False,
        pretrain_path=None, use_wandb=False, use_aim=False, momentum=0.9, algorithm=name,
    )  # fmt: skip
    sgd = dict(optim="SGD", lr=lr, weight_decay=options.weight_decay, ulb_loss_ratio=options.lambda_u, uratio=getattr(options, "mu", 1))
    if name == "fixmatch":
        args = Namespace(**common, **sgd, T=1.0, p_cutoff=options.threshold, hard_label=True)
    elif name == "freematch":  # USB's defaults for the rest: no quantile, no clipping
        args = Namespace(**common, **sgd, T=0.5, hard_label=True, ema_p=options.ema_p, ent_loss_ratio=options.lambda_f,
                         use_quantile=False, clip_thresh=False)  # fmt: skip
    elif name == "softmatch":
        args = Namespace(**common, **sgd, T=0.5, hard_label=True, dist_align=True, dist_uniform=True, ema_p=options.ema_p,
                         n_sigma=options.n_sigma, per_class=False)  # fmt: skip
    else:
        args = Namespace(**common, optim="AdamW", lr=lr, weight_decay=options.weight_decay, ulb_loss_ratio=options.lambda_u,
                         uratio=1, T=options.temperature, unsup_warm_up=options.rampup, mixup_alpha=options.alpha,
                         mixup_manifold=False)  # fmt: skip
    base = classes[name]

    class OnAAData(base):
        def set_dataset(self):  # aa's batches are fed step by step
            return None

        def process_batch(self, input_args=None, **kwargs):  # on the CPU: no .cuda()
            return kwargs

    algorithm = OnAAData(args, net_builder)
    if name == "mixmatch":
        algorithm.scheduler = None  # aa's MixMatch and the paper keep Adam's rate constant; USB's cosine would not
    for hook in list(algorithm.hooks_dict):
        if hook not in KEPT_HOOKS:
            del algorithm.hooks_dict[hook]
    algorithm.model.train()
    algorithm.call_hook("before_run")

    def step(batch, _k: int) -> None:
        (x_lb,), (x_w, x_s) = batch.x_l, batch.x_u  # MixMatch's "strong" is USB's second weak view
        algorithm.ema.decay = warmed_up(options.ema_decay, algorithm.it)  # aa's default EMA rule on every side
        algorithm.call_hook("before_train_step")
        algorithm.out_dict, algorithm.log_dict = algorithm.train_step(x_lb=x_lb, y_lb=batch.y_l, x_ulb_w=x_w, x_ulb_s=x_s)
        algorithm.call_hook("after_train_step")
        algorithm.it += 1

    def predict(x):
        return algorithm.ema_model.eval()(x)["logits"]

    return step, predict


if __name__ == "__main__":  # peer_venvs.sh: do the imports resolve?
    import_usb()
    print("USB imports resolve")
