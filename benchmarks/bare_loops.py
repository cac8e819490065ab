"""Bare torch loops of aa's DANN, FixMatch, FreeMatch, SoftMatch and MixMatch, for benchmarks/peer.py.

Each is the algorithm's maths written straight onto torch: the same network, losses, optimizer
(torch's default, unfused kernels), schedule and EMA rule as aa's ``train_step``, without aa's
contracts, accelerator or ``Update``. A step takes the batch aa's loaders give (``UDABatch`` or
``SSLBatch``); ``predict`` is what the algorithm predicts with (the EMA for the SSL ones).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from aa_core.api import cosine_decay, inverse_decay, progress, sigmoid_ramp
from aa_uda.domain_discriminator import DomainDiscriminator
from aa_uda.gradient_reversal import reverse_gradient


def no_decay(name: str, p: torch.nn.Parameter) -> bool:
    return p.ndim <= 1  # biases and norms


def dann(classifier, o, steps: int, per_domain: bool):
    """``CE(C(f_s), y_s) + trade_off * (BCE(D(R(f_s)), 1) + BCE(D(R(f_t)), 0)) / 2``, R ramped."""
    disc = DomainDiscriminator(classifier.features_dim, o.hidden)
    params = [*classifier.parameters(), *disc.parameters()]
    opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: inverse_decay(progress(s, steps)))
    classifier.train(), disc.train()

    def step(batch, k: int) -> None:
        n = len(batch.x_s)
        if per_domain:
            logits_s, f_s = classifier(batch.x_s, with_features=True)
            f_t = classifier(batch.x_t, with_features=True)[1]
        else:
            logits, f = classifier(torch.cat([batch.x_s, batch.x_t]), with_features=True)
            logits_s, f_s, f_t = logits[:n], f[:n], f[n:]
        d = disc(reverse_gradient(torch.cat([f_s, f_t]), sigmoid_ramp(progress(k, steps))), (n, len(f_t))).squeeze(1)
        adversarial = 0.5 * (F.binary_cross_entropy_with_logits(d[:n], torch.ones_like(d[:n]))
                             + F.binary_cross_entropy_with_logits(d[n:], torch.zeros_like(d[n:])))
        loss = F.cross_entropy(logits_s, batch.y_s) + o.trade_off * adversarial
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()

    return step, classifier


class Ema:
    """``w_ema <- d_k * w_ema + (1 - d_k) * w`` for parameters, buffers copied; ``d_k = min(d, 1 - (1 + k)^(-2/3))``, aa's default."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.module, self.decay, self.updates = copy.deepcopy(model).eval(), decay, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = min(self.decay, 1 - (1 + self.updates) ** (-2 / 3))
        self.updates += 1
        for e, p in zip(self.module.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)


def groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
    ]


def fixmatch(classifier, o, steps: int, lr: float):
    """``CE(x_l) + lambda_u * mean(1[max q >= tau] CE(strong, argmax q))``; SGD, cosine 7/16, EMA."""
    opt = torch.optim.SGD(groups(classifier, o.weight_decay), lr=lr, momentum=o.momentum, nesterov=o.nesterov)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_decay(progress(s, steps)))
    ema = Ema(classifier, o.ema_decay)
    classifier.train()

    def step(batch, k: int) -> None:
        (x_l,), (x_w, x_s) = batch.x_l, batch.x_u
        logits = classifier(torch.cat([x_l, x_w, x_s]))
        n, m = len(x_l), len(x_w)
        confidence, pseudo = logits[n : n + m].detach().softmax(dim=1).max(dim=1)
        unlabelled = (F.cross_entropy(logits[n + m :], pseudo, reduction="none") * (confidence >= o.threshold)).mean()
        loss = F.cross_entropy(logits[:n], batch.y_l) + o.lambda_u * unlabelled
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        ema.update(classifier)

    return step, ema.module


def gated(classifier, o, steps: int, lr: float, num_classes: int, kind: str):
    """FixMatch's loop with FreeMatch's (``kind="freematch"``) or SoftMatch's gate written inline."""
    opt = torch.optim.SGD(groups(classifier, o.weight_decay), lr=lr, momentum=o.momentum, nesterov=o.nesterov)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_decay(progress(s, steps)))
    ema = Ema(classifier, o.ema_decay)
    m, k = o.ema_p, num_classes
    state = {"tau": torch.tensor(1 / k), "p": torch.full((k,), 1 / k), "h": torch.full((k,), 1 / k),
             "mu": torch.tensor(1 / k), "var": torch.tensor(1.0), "p_hat": None}  # fmt: skip
    classifier.train()

    def step(batch, _k: int) -> None:
        (x_l,), (x_w, x_s) = batch.x_l, batch.x_u
        logits = classifier(torch.cat([x_l, x_w, x_s]))
        n, u = len(x_l), len(x_w)
        q = logits[n : n + u].detach().softmax(dim=1)
        confidence, pseudo = q.max(dim=1)
        strong = logits[n + u :]
        ce = F.cross_entropy(strong, pseudo, reduction="none")
        if kind == "freematch":
            state["tau"] = m * state["tau"] + (1 - m) * confidence.mean()
            state["p"] = m * state["p"] + (1 - m) * q.mean(dim=0)
            state["h"] = m * state["h"] + (1 - m) * torch.bincount(pseudo, minlength=k).float() / u
            mask = (confidence >= state["tau"] * (state["p"] / state["p"].max())[pseudo]).float()
            extra = torch.zeros(())
            if mask.any():
                passed = strong[mask.bool()].softmax(dim=1)
                hist = torch.bincount(passed.argmax(dim=1), minlength=k).float() / len(passed)
                a = state["p"] / state["h"]
                b = passed.mean(dim=0) * torch.where(hist > 0, 1 / hist, torch.zeros_like(hist))
                extra = o.lambda_f * ((a / a.sum()) * torch.log(b / b.sum() + 1e-12)).sum()
        else:
            mean = q.mean(dim=0)
            state["p_hat"] = mean if state["p_hat"] is None else m * state["p_hat"] + (1 - m) * mean
            aligned = q * (1 / k + 1e-6) / (state["p_hat"] + 1e-6)
            c = (aligned / aligned.sum(dim=1, keepdim=True)).max(dim=1).values
            state["mu"] = m * state["mu"] + (1 - m) * c.mean()
            state["var"] = m * state["var"] + (1 - m) * c.var()
            mask = torch.exp(-torch.clamp(c - state["mu"], max=0) ** 2 / (2 * state["var"] / o.n_sigma**2))
            extra = torch.zeros(())
        loss = F.cross_entropy(logits[:n], batch.y_l) + o.lambda_u * (ce * mask).mean() + extra
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        ema.update(classifier)

    return step, ema.module


def mixmatch(classifier, o, steps: int, lr: float, num_classes: int, seed: int):
    """Sharpened K-view guesses (running statistics kept), MixUp, CE + lambda_u(t) * MSE; AdamW, EMA."""
    opt = torch.optim.AdamW(groups(classifier, o.weight_decay), lr=lr)
    ema = Ema(classifier, o.ema_decay)
    norms = [m for m in classifier.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    generator = torch.Generator().manual_seed(seed)
    classifier.train()

    def step(batch, k: int) -> None:
        (x,), views = batch.x_l, batch.x_u
        n = len(x)
        with torch.no_grad():
            saved = [[b.clone() for b in m.buffers()] for m in norms]
            p = torch.stack([classifier(u).softmax(dim=1) for u in views]).mean(dim=0).pow(1 / o.temperature)
            q = p / p.sum(dim=1, keepdim=True)
            for m, buffers in zip(norms, saved):
                for b, s in zip(m.buffers(), buffers):
                    b.copy_(s)
        inputs = torch.cat([x, *views])
        targets = torch.cat([F.one_hot(batch.y_l, num_classes).float(), *([q] * len(views))])
        lam = float(torch.distributions.Beta(o.alpha, o.alpha).sample())
        lam = max(lam, 1 - lam)
        order = torch.randperm(len(inputs), generator=generator)
        mixed_x, mixed_p = lam * inputs + (1 - lam) * inputs[order], lam * targets + (1 - lam) * targets[order]
        logits = classifier(mixed_x)
        l_x = -(mixed_p[:n] * F.log_softmax(logits[:n], dim=1)).sum(dim=1).mean()
        l_u = F.mse_loss(logits[n:].softmax(dim=1), mixed_p[n:])
        loss = l_x + o.lambda_u * min(1.0, progress(k, steps) / o.rampup) * l_u
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(classifier)

    return step, ema.module
