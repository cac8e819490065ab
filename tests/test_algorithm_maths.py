"""Each algorithm's real ``train_step`` against its paper's maths, written out here by hand.

The networks are tiny (a 4-pixel image, widths of 3 to 8) so that every test runs in well under
a second: ``benchmarks/mutation.sh`` runs this file once per mutant of the algorithm code. Each
test copies the networks before the step, computes the paper's loss on the copy with plain torch
operations (none of the code's loss helpers), and compares what the step left behind: the
logged values, and the gradient each parameter received (so a flipped sign, a moved or dropped
``detach``, a term on the wrong branch, a changed coefficient or reduction changes a gradient).
Where an algorithm updates several times per step (MCD), the updates are replayed with plain SGD.
"""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn

from aa_core.api import SSLBatch, TrainingContext, UDABatch, UDAData
from aa_core.data.loaders import Loaders
from aa_core.models.classifier import ImageClassifier


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: threads cost more than they give (and the machine is shared); the rest of the suite gets its own back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


K = 3  # classes
ACCELERATOR = Accelerator(cpu=True)


class TinyBackbone(nn.Sequential):
    """A (B, 1, 2, 2) image -> 3 features: flatten, linear, tanh."""

    num_features = 3

    def __init__(self):
        super().__init__(nn.Flatten(), nn.Linear(4, 3), nn.Tanh())


def tiny_classifier(seed: int = 0) -> ImageClassifier:
    torch.manual_seed(seed)
    return ImageClassifier(TinyBackbone(), K, bottleneck_dim=4)


def context(total_steps: int = 10, batch_size: int = 4, pretrained: bool = False) -> TrainingContext:
    return TrainingContext(ACCELERATOR, K, total_steps=total_steps, batch_size=batch_size, pretrained_backbone=pretrained, seed=0)


def images(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, 1, 2, 2, generator=torch.Generator().manual_seed(seed)) + shift


def uda_batch() -> UDABatch:
    return UDABatch(images(4, 1), torch.tensor([0, 1, 2, 0]), images(4, 2, shift=1.0))


def gradients(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d params, zeros where the loss does not reach."""
    found = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(found, params)]


def grads_of(params) -> list[torch.Tensor]:
    """What an update left in ``.grad`` (zeros where none)."""
    return [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]


def assert_close(actual: list[torch.Tensor], expected: list[torch.Tensor], atol: float = 1e-6, rtol: float = 1e-4) -> None:
    """Tensor by tensor, :math:`\\lVert a - e \\rVert \\le rtol \\lVert e \\rVert + atol`."""
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert (a - e).norm() <= rtol * e.norm() + atol, (a, e)


def nonzero(tensors: list[torch.Tensor]) -> bool:
    return all(t.abs().sum() > 0 for t in tensors)


def extractor_params(classifier) -> list[torch.Tensor]:
    return [*classifier.backbone.parameters(), *classifier.bottleneck.parameters()]


def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy, written out: -log softmax(o)_y."""
    return -(logits - logits.logsumexp(dim=1, keepdim=True)).gather(1, y[:, None]).mean()


def ramp(p: float) -> float:
    return 2 / (1 + math.exp(-10 * p)) - 1


def torch_optimizer(optimizer):
    """The torch optimizer inside accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)


def lrs(update) -> list[float]:
    return [g["lr"] for g in update.optimizer.param_groups]


# --------------------------------------------------------------------------------------- DANN


def dann_reference(classifier, discriminator, batch, lam, trade_off):
    """Per parameter: d CE / d theta - lam * trade_off * d L_adv / d theta below the reversal; trade_off * d L_adv above."""
    n = len(batch.x_s)
    logits, f = classifier(torch.cat([batch.x_s, batch.x_t]), with_features=True)
    classification = ce(logits[:n], batch.y_s)
    d_s, d_t = discriminator(f[:n]), discriminator(f[n:])  # apart: each domain's own batch statistics
    adversarial = 0.5 * (F.softplus(-d_s).mean() + F.softplus(d_t).mean())  # BCE to 1 and to 0
    below = extractor_params(classifier)
    g_cls, g_adv = gradients(classification, below), gradients(adversarial, below)
    expected_below = [c - lam * trade_off * a for c, a in zip(g_cls, g_adv)]
    expected_head = gradients(classification, list(classifier.head.parameters()))
    expected_disc = [trade_off * g for g in gradients(adversarial, list(discriminator.parameters()))]
    return classification, adversarial, expected_below, expected_head, expected_disc


@pytest.mark.parametrize("step", [0, 3])
def test_dann_step_reverses_the_adversarial_gradient_by_lambda_of_progress(step):
    from aa_uda.dann import DANN

    classifier, batch = tiny_classifier(), uda_batch()
    dann = DANN(DANN.Options(trade_off=0.5, hidden=8), classifier, context(total_steps=10))
    reference, discriminator = copy.deepcopy(classifier), copy.deepcopy(dann.adversarial.discriminator)
    lam = ramp(step / 10)
    cls, adv, below, head, disc = dann_reference(reference, discriminator, batch, lam, trade_off=0.5)
    logs = dann.train_step(batch, step=step)
    assert logs["lambda"] == pytest.approx(lam, abs=1e-12)
    assert logs["cls"] == pytest.approx(cls.item(), rel=1e-5) and logs["adv"] == pytest.approx(adv.item(), rel=1e-5)
    assert logs["loss"] == pytest.approx(cls.item() + 0.5 * adv.item(), rel=1e-5)
    assert_close(grads_of(extractor_params(classifier)), below)
    assert_close(grads_of(classifier.head.parameters()), head)
    assert_close(grads_of(dann.adversarial.parameters()), disc)
    assert nonzero(disc) and nonzero(head)


def test_dann_discriminator_is_the_references_and_reversal_defaults_to_one():
    from aa_uda.dann import DANN, DomainAdversarialLoss
    from aa_uda.domain_discriminator import DomainDiscriminator
    from aa_uda.gradient_reversal import reverse_gradient

    layers = list(DomainDiscriminator(4))
    assert [type(m) for m in layers] == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear]
    assert [(m.in_features, m.out_features) for m in layers if isinstance(m, nn.Linear)] == [(4, 1024), (1024, 1024), (1024, 1)]
    dann = DANN(DANN.Options(hidden=8), tiny_classifier(), context())
    assert dann.adversarial.discriminator[0].out_features == 8
    x = torch.ones(2, requires_grad=True)
    reverse_gradient(x).sum().backward()
    assert x.grad.tolist() == [-1.0, -1.0]
    loss = DomainAdversarialLoss(DomainDiscriminator(4, hidden=8))
    f_s, f_t = images(3, 1).flatten(1).requires_grad_(), images(3, 2).flatten(1)
    by_default = torch.autograd.grad(loss(f_s, f_t), f_s)[0]
    assert torch.allclose(by_default, torch.autograd.grad(loss(f_s, f_t, coefficient=1.0), f_s)[0])


def test_dann_learning_rate_decays_and_a_pretrained_backbone_learns_at_a_tenth():
    from aa_uda.dann import DANN

    classifier = tiny_classifier()
    dann = DANN(DANN.Options(hidden=8), classifier, context(total_steps=10, pretrained=True))
    assert sorted(set(lrs(dann.update))) == pytest.approx([0.001, 0.01])
    dann.train_step(uda_batch(), step=0)
    assert sorted(set(lrs(dann.update))) == pytest.approx([0.001 * 2**-0.75, 0.01 * 2**-0.75])  # (1 + 10 p)^-0.75 at p = 0.1
    backbone = {id(p) for p in classifier.backbone.parameters()}
    for group in dann.update.optimizer.param_groups:  # the backbone's group is the slow one, everything else the fast one
        is_backbone = all(id(p) in backbone for p in group["params"])
        assert group["lr"] == pytest.approx((0.001 if is_backbone else 0.01) * 2**-0.75)
        assert group["momentum"] == 0.9 and group["nesterov"] and group["weight_decay"] == 1e-3
    trained = {id(p) for g in dann.update.optimizer.param_groups for p in g["params"]}
    assert trained == {id(p) for p in [*classifier.parameters(), *dann.adversarial.parameters()]}


# ---------------------------------------------------------------------------------------- MCD


def mcd_reference(classifier, batch, lr, trade_off, entropy_weight, num_k):
    """MCD's three updates replayed with plain SGD on a copy; returns the grads each update left."""
    g = nn.Sequential(classifier.backbone, classifier.bottleneck)
    c1, c2 = classifier.head.c1, classifier.head.c2
    g_params, c_params = list(g.parameters()), [*c1.parameters(), *c2.parameters()]

    def p(logits):
        return logits.softmax(dim=1)

    def d(f_t):
        return (p(c1(f_t)) - p(c2(f_t))).abs().mean()

    def h(logits):
        return -(p(logits) * p(logits).log()).sum(dim=1).mean()

    def source(f_s):
        return ce(c1(f_s), batch.y_s) + ce(c2(f_s), batch.y_s)

    def target_entropy(f_t):
        return entropy_weight * (h(c1(f_t)) + h(c2(f_t)))

    def descend(params, grads):
        with torch.no_grad():
            for q, gr in zip(params, grads):
                q -= lr * gr

    loss_a = source(g(batch.x_s)) + (target_entropy(g(batch.x_t)) if entropy_weight else 0)
    descend(g_params + c_params, gradients(loss_a, g_params + c_params))
    f_s, f_t = g(batch.x_s), g(batch.x_t)
    gap_b = d(f_t)
    loss_b = source(f_s) + target_entropy(f_t) - trade_off * gap_b
    grads_b = gradients(loss_b, c_params)
    assert nonzero(gradients(loss_b, g_params))  # the loss reaches the extractor: only the update must not move it
    descend(c_params, grads_b)
    gaps = []
    for _ in range(num_k):
        gap = d(g(batch.x_t))
        grads_c = gradients(trade_off * gap, g_params)
        descend(g_params, grads_c)
        gaps.append(gap.item())
    return loss_a.item(), gap_b.item(), grads_b, grads_c, gaps


@pytest.mark.parametrize(("trade_off", "entropy_weight", "num_k"), [(0.5, 0.0, 2), (2.0, 0.25, 1)])
def test_mcd_step_replays_updates_a_b_and_c(trade_off, entropy_weight, num_k):
    """A fits G, C1, C2 to the source; B moves only C1, C2 to *widen* the gap; C moves only G to narrow it."""
    from aa_uda.mcd import MCD

    options = MCD.Options(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, dropout=0.0, hidden=8,
                          trade_off=trade_off, entropy_weight=entropy_weight, num_k=num_k)  # fmt: skip
    classifier = MCD.build_network(tiny_classifier(), options)
    mcd = MCD(options, classifier, context())
    batch = uda_batch()
    reference = copy.deepcopy(classifier)
    loss_a, gap_b, grads_b, grads_c, gaps = mcd_reference(reference, batch, 0.1, trade_off, entropy_weight, num_k)
    logs = mcd.train_step(batch, step=0)
    assert logs["source"] == pytest.approx(loss_a, rel=1e-5)
    assert logs["discrepancy_max"] == pytest.approx(gap_b, rel=1e-4)
    assert logs["discrepancy_min"] == pytest.approx(gaps[-1], rel=1e-4)
    # the classifiers' grads are still step B's (step C froze them), the extractor's the last step C's
    # (float32 through several updates: a few parts in 10^4 apart, where a changed term moves them by far more)
    assert_close(grads_of(classifier.head.parameters()), grads_b, atol=1e-5, rtol=1e-3)
    assert_close(grads_of(extractor_params(classifier)), grads_c, atol=1e-5, rtol=1e-3)
    assert nonzero(grads_c)
    assert_close(list(classifier.parameters()), list(reference.parameters()), atol=1e-5, rtol=1e-3)


def test_mcd_classifiers_are_the_references_mlp():
    from aa_core.api import Dropout
    from aa_uda.mcd import MCDClassifier

    layers = list(MCDClassifier(4, K, hidden=8, dropout=0.3))
    assert [type(m) for m in layers] == [Dropout, nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [Dropout, nn.Linear]
    assert [(m.in_features, m.out_features) for m in layers if isinstance(m, nn.Linear)] == [(4, 8), (8, 8), (8, K)]
    assert {m.p for m in layers if isinstance(m, Dropout)} == {0.3}


def test_mcd_predictor_averages_both_classifiers_probabilities():
    from aa_uda.mcd import MCD

    head = MCD.build_network(tiny_classifier(), MCD.Options(hidden=8)).head.eval()
    f = torch.randn(5, 4)
    p1, p2 = head.c1(f).softmax(dim=1), head.c2(f).softmax(dim=1)
    assert torch.allclose(head(f), ((p1 + p2) / 2).log(), atol=1e-6)


def test_mcd_optimizers_are_the_references():
    from aa_uda.mcd import MCD

    for name, kind in (("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)):
        options = MCD.Options(optimizer=name, hidden=8, backbone_lr_mult=0.5)
        classifier = MCD.build_network(tiny_classifier(), options)
        mcd = MCD(options, classifier, context(pretrained=True))
        opt_g, opt_c = mcd.update_g.optimizer, mcd.update_c.optimizer
        assert type(torch_optimizer(opt_g)) is kind and type(torch_optimizer(opt_c)) is kind
        assert mcd.update_all.optimizers == [opt_g, opt_c]
        backbone = {id(p) for p in classifier.backbone.parameters()}
        for group in opt_g.param_groups:
            slow = all(id(p) in backbone for p in group["params"])
            assert group["lr"] == pytest.approx(2e-4 * (0.5 if slow else 1.0)) and group["weight_decay"] == 5e-4
        assert [group["lr"] for group in opt_c.param_groups] == [2e-4] and opt_c.param_groups[0]["weight_decay"] == 5e-4
        g_ids = {id(p) for group in opt_g.param_groups for p in group["params"]}
        assert g_ids == {id(p) for p in extractor_params(classifier)}
        assert {id(p) for p in opt_c.param_groups[0]["params"]} == {id(p) for p in classifier.head.parameters()}
        if name == "sgd":
            assert opt_c.param_groups[0]["momentum"] == 0.9 and opt_g.param_groups[0]["momentum"] == 0


# ------------------------------------------------------------------------------------ SymNets


def symnets_reference(classifier, batch, lam, with_entropy):
    """L_C's gradient on the 2K-wide fc alone, L_G's on the extractor alone; source and target apart."""
    fc = classifier.head.fc
    f_s, f_t = classifier.features(batch.x_s), classifier.features(batch.x_t)  # one domain per batch norm pass
    o_s, o_t = fc(f_s), fc(f_t)
    y = batch.y_s

    def mass(o, half):  # log of the softmax mass of a half: log sum_{k in half} p_k
        return o.softmax(dim=1)[:, half].sum(dim=1).log()

    s, t = slice(0, K), slice(K, 2 * K)
    loss_c = ce(o_s[:, s], y) + ce(o_s[:, t], y) - mass(o_s, s).mean() - mass(o_t, t).mean()
    category = 0.5 * ce(o_s, y) + 0.5 * ce(o_s, y + K)
    domain = -0.5 * mass(o_t, t).mean() - 0.5 * mass(o_t, s).mean()
    p = o_t.softmax(dim=1)
    q = p[:, s] + p[:, t]
    entropy = -(q * q.log()).sum(dim=1).mean() if with_entropy else torch.zeros(())
    loss_g = category + lam * (domain + entropy)
    expected_fc = gradients(loss_c, list(fc.parameters()))
    expected_g = gradients(loss_g, extractor_params(classifier))
    return loss_c, loss_g, domain, entropy, expected_fc, expected_g


@pytest.mark.parametrize("with_entropy", [True, False])
def test_symnets_step_trains_the_classifier_on_l_c_and_the_extractor_on_l_g(with_entropy):
    from aa_uda.symnets import SymNets

    options = SymNets.Options(entropy=with_entropy)
    classifier = SymNets.build_network(tiny_classifier(), options)
    symnets = SymNets(options, classifier, context(total_steps=10))
    batch = uda_batch()
    lam = ramp(0.4)
    loss_c, loss_g, domain, entropy, expected_fc, expected_g = symnets_reference(copy.deepcopy(classifier), batch, lam, with_entropy)
    logs = symnets.train_step(batch, step=4)
    assert logs["lambda"] == pytest.approx(lam, abs=1e-12)
    assert logs["classifier"] == pytest.approx(loss_c.item(), rel=1e-5)
    assert logs["features"] == pytest.approx(loss_g.item(), rel=1e-5)
    assert logs["domain_confusion"] == pytest.approx(domain.item(), rel=1e-5)
    assert logs["entropy"] == pytest.approx(entropy.item(), rel=1e-5, abs=1e-9)
    assert_close(grads_of(classifier.head.fc.parameters()), expected_fc)
    assert_close(grads_of(extractor_params(classifier)), expected_g)
    assert nonzero(expected_fc) and nonzero(expected_g[-2:])


def test_symnets_moves_batch_norm_statistics_once_per_domain_and_predicts_with_the_target_half():
    from aa_uda.symnets import SymNets

    options = SymNets.Options()
    classifier = SymNets.build_network(tiny_classifier(), options)
    symnets = SymNets(options, classifier, context(total_steps=10, pretrained=True))
    batch = uda_batch()
    with torch.no_grad():  # the bottleneck's batch norm input for each domain, before the step
        h_s, h_t = (classifier.bottleneck[0](classifier.backbone(x)) for x in (batch.x_s, batch.x_t))
    assert sorted(set(lrs(symnets.update))) == pytest.approx([0.001, 0.01])
    assert {id(p) for g in symnets.update.optimizer.param_groups for p in g["params"]} == {id(p) for p in classifier.parameters()}
    group = symnets.update.optimizer.param_groups[0]
    assert group["momentum"] == 0.9 and group["nesterov"] and group["weight_decay"] == 1e-4
    symnets.train_step(batch, step=0)
    norm = classifier.bottleneck[1]
    assert norm.num_batches_tracked.item() == 2  # the source's batch, then the target's
    assert torch.allclose(norm.running_mean, 0.9 * 0.1 * h_s.mean(dim=0) + 0.1 * h_t.mean(dim=0), atol=1e-6)
    assert sorted(set(lrs(symnets.update))) == pytest.approx([0.001 * 2**-0.75, 0.01 * 2**-0.75])  # (1 + 10 p)^-0.75, p = 0.1
    predictor = symnets.predictor().eval()
    x = images(3, 9)
    assert classifier.head.fc.out_features == 2 * K and predictor(x).shape == (3, K)
    assert torch.allclose(predictor(x), classifier.head.fc(classifier.features(x))[:, K:])


# ------------------------------------------------------------------------------------ CDTrans


def tiny_vit_classifier(seed: int = 0) -> ImageClassifier:
    """Two blocks (in the first, the class token's query is the same for every image), attention made peaked."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    vit = VisionTransformer(img_size=2, patch_size=1, in_chans=1, num_classes=0, embed_dim=8, depth=2, num_heads=2, mlp_ratio=1.0)
    with torch.no_grad():  # timm's initial qkv weights (std 0.02) attend almost uniformly: every branch would look alike
        for block in vit.blocks:
            block.attn.qkv.weight.normal_(0, 0.7)
    return ImageClassifier(vit, K, bottleneck_dim=4)


def cross_branch(classifier, x_s, x_t):
    """The source-to-target branch written out: queries from the source stream, keys and values from the target's."""
    vit = classifier.backbone

    def embed(x):
        return vit._pos_embed(vit.patch_embed(x))

    def qkv(block, z):  # (B, N, C) -> q, k, v of shape (B, heads, N, d)
        heads, d = block.attn.num_heads, block.attn.head_dim
        return block.attn.qkv(block.norm1(z)).reshape(z.shape[0], z.shape[1], 3, heads, d).permute(2, 0, 3, 1, 4)

    def attended(block, q, k, v, shape):
        mixed = ((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])).softmax(dim=-1) @ v
        return block.attn.proj(mixed.transpose(1, 2).reshape(shape))

    def mlp(block, z):
        return z + block.mlp(block.norm2(z))

    z_s, z_t = embed(x_s), embed(x_t)
    z_st = z_t  # the cross stream starts from the target tokens
    for block in vit.blocks:
        q_s, k_s, v_s = qkv(block, z_s)
        q_t, k_t, v_t = qkv(block, z_t)
        z_s, z_t, z_st = (
            mlp(block, z_s + attended(block, q_s, k_s, v_s, z_s.shape)),
            mlp(block, z_t + attended(block, q_t, k_t, v_t, z_t.shape)),
            mlp(block, z_st + attended(block, q_s, k_t, v_t, z_st.shape)),
        )
    return classifier.head(classifier.bottleneck(vit.norm(z_st)[:, 0]))


def cdtrans_reference(classifier, x_s, y_s, x_t, y_t, max_norm):
    """CE(o_s, y_s) + CE(o_t, pseudo y_t) + mean -sum softmax(o_st) log softmax(o_t): the gradients, clipped to max_norm."""
    o_s, o_t, o_st = classifier(x_s), classifier(x_t), cross_branch(classifier, x_s, x_t)
    source, target = ce(o_s, y_s), ce(o_t, y_t)
    distillation = -(o_st.softmax(dim=1) * o_t.log_softmax(dim=1)).sum(dim=1).mean()
    params = list(classifier.parameters())
    grads = gradients(source + target + distillation, params)
    norm = torch.cat([g.flatten() for g in grads]).norm()
    scale = min(1.0, max_norm / (norm.item() + 1e-6))
    return source, target, distillation, [g * scale for g in grads]


class Tensors(torch.utils.data.Dataset):
    def __init__(self, x, y=None):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] if self.y is None else (self.x[i], int(self.y[i]))


class Unread(torch.utils.data.Dataset):
    """An augmented view that labelling must not read."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        raise AssertionError("labelled or paired on an augmented view")


@pytest.mark.parametrize("max_norm", [1e6, 0.05])
def test_cdtrans_step_trains_the_target_branch_on_pseudo_labels_and_distils_the_cross_branch_into_it(max_norm):
    from aa_uda.cdtrans import CDTrans, PairBatch

    classifier = tiny_vit_classifier()
    cdtrans = CDTrans(CDTrans.Options(max_grad_norm=max_norm), classifier, context(total_steps=8))
    x_s, x_t = images(4, 1), images(4, 2, shift=1.0)
    y_s, y_t = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 2, 0, 0])  # pseudo-labels differ from y_s: a branch mix-up shows
    source, target, distillation, expected = cdtrans_reference(copy.deepcopy(classifier), x_s, y_s, x_t, y_t, max_norm)
    cdtrans.pairs = 7
    logs = cdtrans.train_step(PairBatch(x_s, y_s, x_t, y_t), step=0)
    assert logs == pytest.approx({"source": source.item(), "target": target.item(), "distillation": distillation.item(), "pairs": 7.0},
                                 rel=1e-5)  # fmt: skip
    # (torch's fused attention and the one written out differ by a few parts in 10^4 in float32)
    assert_close(grads_of(classifier.parameters()), expected, atol=1e-4, rtol=1e-3)
    assert nonzero(expected[-2:])


def test_cdtrans_labels_and_pairs_on_plain_views_with_the_current_model():
    from aa_uda.cdtrans import CDTrans
    from aa_uda.centre_aware_pairs import centre_aware_pairs, shot_labels

    classifier = tiny_vit_classifier()
    cdtrans = CDTrans(CDTrans.Options(), classifier, context(total_steps=8, batch_size=2))
    x_s, y_s, x_t = images(10, 3), torch.arange(10) % K, images(9, 4, shift=0.5)
    data = UDAData(Unread(10), Unread(9), Loaders(ACCELERATOR, seed=0), plain_source=Tensors(x_s, y_s), plain_target=Tensors(x_t))
    classifier.train()
    pseudo, pairs = cdtrans.label_and_pair(data)
    assert classifier.training  # back in training mode
    classifier.eval()  # labelled in eval mode: batch norm's running statistics, no batch effects
    with torch.no_grad():
        g_s, g_t = F.normalize(classifier.backbone(x_s), dim=1), F.normalize(classifier.backbone(x_t), dim=1)
        f_t = classifier.bottleneck(classifier.backbone(x_t))
        expected_pseudo = shot_labels(f_t, classifier.head(f_t))
    assert torch.equal(pseudo, expected_pseudo)
    assert torch.equal(pairs, centre_aware_pairs(g_s, y_s, g_t, expected_pseudo))
    assert len(pairs) > 0
    first = next(iter(CDTrans(CDTrans.Options(), classifier, context(8, 2)).batches(
        UDAData(Tensors(x_s, y_s), Tensors(x_t), Loaders(ACCELERATOR, seed=0)))))  # fmt: skip
    assert all(y == p for y, p in zip(first.y_s.tolist(), first.y_t.tolist()))  # filtered pairs agree


def test_cdtrans_schedule_warms_up_then_decays_and_a_pairless_target_is_a_clear_error():
    from aa_core.api import AAError
    from aa_uda.cdtrans import CDTrans, PairBatch

    classifier = tiny_vit_classifier()
    cdtrans = CDTrans(CDTrans.Options(warmup=0.5), classifier, context(total_steps=4))
    assert lrs(cdtrans.update) == pytest.approx([0.008 * 0.01] * 2)  # linear from 1% of the rate
    group = cdtrans.update.optimizer.param_groups[0]
    assert group["momentum"] == 0.9 and not group["nesterov"] and group["weight_decay"] == 1e-4
    assert cdtrans.update.max_grad_norm == 1.0
    assert {id(p) for g in cdtrans.update.optimizer.param_groups for p in g["params"]} == {id(p) for p in classifier.parameters()}
    slow = CDTrans(CDTrans.Options(backbone_lr_mult=0.5), tiny_vit_classifier(), context(total_steps=4, pretrained=True))
    backbone = {id(p) for p in slow.classifier.backbone.parameters()}
    for group in slow.update.optimizer.param_groups:
        assert group["lr"] == pytest.approx(0.008 * 0.01 * (0.5 if all(id(p) in backbone for p in group["params"]) else 1.0))
    x_s, y_s = images(6, 3), torch.zeros(6, dtype=torch.long)
    for step in range(2):
        cdtrans.train_step(PairBatch(x_s[:2], y_s[:2], x_s[2:4], y_s[:2]), step)
    assert lrs(cdtrans.update) == pytest.approx([0.008 * 1.0] * 2)  # p = 0.5: the end of the warm-up
    with torch.no_grad():  # the head calls every target class 1 and SHOT keeps it: no source image labelled 0 pairs up
        classifier.head.bias.copy_(torch.tensor([0.0, 100.0, 0.0]))
    data = UDAData(Tensors(x_s, y_s), Tensors(images(5, 4)), Loaders(ACCELERATOR, seed=0))
    with pytest.raises(AAError, match="no source-target pair whose labels agree.*uda.label_filter=false"):
        cdtrans.label_and_pair(data)
    cdtrans.options = CDTrans.Options(label_filter=False)
    assert len(cdtrans.label_and_pair(data)[1]) == 6 + 5  # both ways, unfiltered


def test_three_branches_follow_timms_attention_its_scale_norm_gate_and_dropout():
    from timm.models.vision_transformer import Attention, VisionTransformer

    from aa_uda.three_branches import ThreeBranches

    if "scale_attn_norm" not in inspect.signature(VisionTransformer).parameters or "gated" not in inspect.signature(Attention).parameters:
        pytest.skip("this timm has no attention scale norm or gate (timm 1.0.3: the floor); plain attention: test_cdtrans.py")

    class Gated(Attention):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, gated=True, **kwargs)

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=2, patch_size=1, in_chans=1, num_classes=0, embed_dim=8, depth=2, num_heads=2,
                            mlp_ratio=1.0, scale_attn_norm=True, attn_layer=Gated, attn_drop_rate=0.5)  # fmt: skip
    classifier = ImageClassifier(vit, K, bottleneck_dim=4).eval()
    network = ThreeBranches(classifier)
    x_s, x_t = images(3, 1), images(3, 2)
    o_s, o_t, o_st = network(x_s, x_t)
    assert torch.allclose(o_s, classifier(x_s), atol=1e-5) and torch.allclose(o_t, classifier(x_t), atol=1e-5)
    assert torch.equal(network(x_s, x_t)[2], o_st)  # no attention dropout in eval mode
    network.train()
    torch.manual_seed(1)
    first = network(x_s, x_t)[2]
    assert not torch.equal(first, network(x_s, x_t)[2])  # attention dropout in training


def test_cdtrans_rebuilds_pairs_every_total_over_refreshes_steps_and_resumes_mid_refresh():
    from itertools import islice

    from aa_uda.cdtrans import CDTrans

    drawn: list = []

    class Watched(CDTrans):
        """Notes how many batches were drawn whenever the pairs are rebuilt."""

        def label_and_pair(self, data):
            self.rebuilt_at.append(len(drawn))
            return super().label_and_pair(data)

    classifier = tiny_vit_classifier()
    options = CDTrans.Options(refreshes=2, label_filter=False)
    data = UDAData(Tensors(images(6, 3), torch.arange(6) % K), Tensors(images(5, 4)), Loaders(ACCELERATOR, seed=0))
    whole = Watched(options, classifier, context(total_steps=4, batch_size=2))
    whole.rebuilt_at = []
    for batch in islice(whole.batches(data), 6):
        drawn.append(batch)
    assert whole.rebuilt_at == [0, 2, 4]  # every ceil(4 / 2) steps
    first_refresh = [b.x_s for b in drawn[:2]]

    # resumed at step 3 with the checkpoint's pairs: no relabelling before the next refresh
    resumed = Watched(options, classifier, context(total_steps=4, batch_size=2))
    resumed.rebuilt_at = []
    resumed.load_extra_state(whole.extra_state())
    drawn.clear()
    for batch in islice(resumed.resume_batches(data, 3), 3):
        drawn.append(batch)
    assert resumed.rebuilt_at == [1]
    assert torch.equal(drawn[0].x_s, first_refresh[1])  # step 3 is the second batch of its refresh
    assert all(torch.equal(a.x_s, b) for a, b in zip(drawn[1:], first_refresh))  # a refresh starts its loader afresh
    fresh = Watched(options, classifier, context(total_steps=4, batch_size=2))
    fresh.rebuilt_at = []
    assert fresh.extra_state() == {"labelled": None}  # a checkpoint taken before any pairs
    fresh.load_extra_state({"labelled": None})
    drawn.clear()
    next(fresh.resume_batches(data, 3))  # resumed without pairs: it must make them
    assert fresh.rebuilt_at == [0]


def test_shot_labels_match_the_centroid_rule_written_out():
    """Softmax-weighted centres of [f; 1] / |[f; 1]|, nearest by cosine among predicted classes, then one hard round."""
    from aa_uda.centre_aware_pairs import shot_labels

    generator = torch.Generator().manual_seed(0)
    features, logits = torch.randn(40, 3, generator=generator), 2 * torch.randn(40, 4, generator=generator)
    logits[:, 3] -= 10  # class 3 is never predicted: it must never be a label
    f = torch.cat([features, torch.ones(40, 1)], dim=1)
    f = f / f.norm(dim=1, keepdim=True)
    present = torch.tensor([(logits.argmax(dim=1) == k).any().item() for k in range(4)])

    def nearest(weights):
        centres = weights.T @ f
        cosine = (centres / centres.norm(dim=1, keepdim=True)) @ f.T
        cosine[~present] = -float("inf")
        return cosine.argmax(dim=0)

    once = nearest(logits.softmax(dim=1))
    twice = nearest(F.one_hot(once, 4).float())
    assert not torch.equal(once, twice) and not torch.equal(once, logits.argmax(dim=1))  # each round matters here
    assert torch.equal(shot_labels(features, logits), twice)
    assert not torch.equal(shot_labels(features, logits, rounds=2), twice)  # a third would too: the default is one refinement


def test_nearest_both_ways_across_blocks_keeps_the_first_of_equals():
    from aa_uda.centre_aware_pairs import nearest_both_ways

    g_s = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.6, 0.8]]), dim=1)  # rows 2 and 3 are equal
    g_t = F.normalize(torch.tensor([[1.0, 0.1], [0.5, 0.7]]), dim=1)
    target_of, source_of = nearest_both_ways(g_s, g_t, block_entries=2)  # one source row per block
    assert target_of.tolist() == [0, 1, 1, 1]
    assert source_of.tolist() == [0, 2]  # found in the third block; its equal in the fourth does not replace it


# ----------------------------------------------------------------------------------- AdaMatch


def test_adamatch_step_interpolates_source_logits_aligns_the_target_and_thresholds_relative_to_the_source():
    """Three steps (warm-up weight 0, then 0.5, then 1 of 1 at total 4): every value and gradient by hand."""
    from aa_uda.adamatch import AdaMatch

    classifier = tiny_classifier()
    options = AdaMatch.Options(uratio=2, lambda_u=0.7, ema_p=0.5, window=2, ema_decay=0.99, ema_warmup=False)
    adamatch = AdaMatch(options, classifier, context(total_steps=4, batch_size=2))
    norm = classifier.bottleneck[1]
    p_source, window, masks = torch.full((K,), 1 / K), [torch.full((K,), 1 / K)] * 2, []
    draws = torch.Generator().manual_seed(0)
    for step in range(3):
        weak, strong, y = images(2, 10 + step), images(2, 20 + step), torch.tensor([0, 1])
        target_weak, target_strong = images(4, 30 + step, 1.0) * (1 + step), images(4, 40 + step, 1.0)
        batch = UDABatch((weak, strong), y, (target_weak, target_strong))
        reference = copy.deepcopy(classifier)
        ref_norm = reference.bottleneck[1]
        saved = [b.clone() for b in (ref_norm.running_mean, ref_norm.running_var, ref_norm.num_batches_tracked)]
        alone = reference(torch.cat([weak, strong]))  # batch norm over the source alone ...
        for b, v in zip((ref_norm.running_mean, ref_norm.running_var, ref_norm.num_batches_tracked), saved):
            b.data.copy_(v)  # ... its running statistics put back
        joint = reference(torch.cat([weak, strong, target_weak, target_strong]))
        mix = torch.rand(4, K, generator=draws)  # the algorithm's own generator, seeded with the run's seed
        z = mix * alone + (1 - mix) * joint[:4]
        p_s = z[:2].detach().softmax(dim=1)
        p_t = joint[4:8].detach().softmax(dim=1)
        p_source = 0.5 * p_source + 0.5 * p_s.mean(dim=0)
        window = [window[1], p_t.mean(dim=0)]
        aligned = p_t * (1e-6 + p_source) / (1e-6 + (window[0] + window[1]) / 2)
        aligned = aligned / aligned.sum(dim=1, keepdim=True)
        confidence, pseudo = aligned.max(dim=1)
        mean_source = p_s.max(dim=1).values.mean()
        tau = (confidence.sort().values[1] / mean_source).clamp(max=1.0).item()  # one image exactly at c_tau: >= keeps it
        adamatch.options = adamatch.options.model_copy(update={"tau": tau})
        threshold = tau * mean_source
        mask = (confidence >= threshold).float()
        source_loss = 0.5 * (ce(z[:2], y) + ce(z[2:], y))
        target_loss = (log_softmax_ce(joint[8:], pseudo) * mask).sum() / 4
        weight = 0.7 * (0.5 - 0.5 * math.cos(math.pi * min(1.0, 2 * step / 4)))
        loss = source_loss + weight * target_loss
        expected = gradients(loss, list(reference.parameters()))
        logs = adamatch.train_step(batch, step=step)
        assert logs == pytest.approx({"loss": loss.item(), "source": source_loss.item(), "target": target_loss.item(),
                                      "mask": mask.mean().item(), "threshold": threshold.item(), "weight": weight}, rel=1e-5)  # fmt: skip
        assert_close(grads_of(classifier.parameters()), expected)
        assert torch.allclose(norm.running_mean, ref_norm.running_mean, atol=1e-6)  # moved once, by the joint pass
        assert norm.num_batches_tracked.item() == step + 1
        assert lrs(adamatch.update) == pytest.approx([0.03 * math.cos(math.acos(0.25) * (step + 1) / 4)] * len(lrs(adamatch.update)))
        masks.append(mask)
    assert [0 < m.sum() < 4 for m in masks] == [True] * 3 and weight == pytest.approx(0.7)
    state = adamatch.extra_state()["alignment"]
    assert torch.allclose(state["p_source"], p_source) and state["seen"].item() == 3
    assert torch.allclose(state["p_target_window"].mean(dim=0), (window[0] + window[1]) / 2)


def test_adamatch_defaults_feed_and_resume():
    from aa_uda.adamatch import AdaMatch, DistributionAlignment, decay_to_a_quarter, warmup

    defaults = AdaMatch.Options()
    assert (defaults.tau, defaults.uratio, defaults.lambda_u, defaults.ema_p, defaults.window) == (0.9, 3, 1.0, 0.999, 128)
    assert (defaults.momentum, defaults.nesterov, defaults.weight_decay) == (0.9, False, 1e-3)
    assert AdaMatch.needs.views == ("weak", "strong")
    assert decay_to_a_quarter(0.0) == 1.0 and decay_to_a_quarter(1.0) == pytest.approx(0.25)
    assert (warmup(0.0), warmup(0.25), warmup(0.5), warmup(0.9)) == pytest.approx((0.0, 0.5, 1.0, 1.0))
    classifier = tiny_classifier()
    adamatch = AdaMatch(AdaMatch.Options(), classifier, context(pretrained=True))
    backbone = {id(p) for p in classifier.backbone.parameters()}
    for group in adamatch.update.optimizer.param_groups:
        slow = all(id(p) in backbone for p in group["params"])
        assert group["lr"] == pytest.approx(0.003 * (0.1 if slow else 1.0))
        assert group["weight_decay"] == (1e-3 if all(p.ndim > 1 for p in group["params"]) else 0.0)
        assert not group["nesterov"] and group["momentum"] == 0.9
    assert optimised(adamatch.update) == {id(p) for p in classifier.parameters()}

    class Pairs(torch.utils.data.Dataset):  # (weak, strong[, label]) as the core's Views give them
        def __init__(self, n, labelled):
            self.n, self.labelled = n, labelled

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            views = (torch.full((1, 2, 2), float(i)), torch.full((1, 2, 2), -float(i)))
            return (*views, i % K) if self.labelled else views

    data = UDAData(Pairs(6, True), Pairs(12, False), Loaders(ACCELERATOR, seed=0))
    batch = next(AdaMatch(AdaMatch.Options(uratio=3), tiny_classifier(), context(batch_size=2)).batches(data))
    (weak, strong), (t_weak, t_strong) = batch.x_s, batch.x_t
    assert (len(weak), len(strong), len(batch.y_s), len(t_weak), len(t_strong)) == (2, 2, 2, 6, 6)
    assert torch.equal(strong, -weak) and torch.equal(t_strong, -t_weak)  # each image's two views stay together
    align = DistributionAlignment(2, momentum=0.5, window=2)
    align.update(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.2, 0.8]]))
    fresh = DistributionAlignment(2, momentum=0.5, window=2)
    fresh.load_state_dict(align.state_dict())
    q = torch.tensor([[0.5, 0.5]])
    assert torch.equal(fresh.align(q), align.align(q))
    expected = q * (1e-6 + torch.tensor([0.75, 0.25])) / (1e-6 + torch.tensor([0.35, 0.65]))
    assert torch.allclose(align.align(q), expected / expected.sum(), atol=1e-6)


# --------------------------------------------------------------------------------------- SHOT


def test_shot_step_trains_the_extractor_on_information_maximisation_and_pseudo_labels_with_the_head_frozen():
    from aa_uda.shot import SHOT, TargetBatch

    classifier = tiny_classifier()
    head = [p.detach().clone() for p in classifier.head.parameters()]
    shot = SHOT(SHOT.Options(beta=0.4, im_weight=0.8), classifier, context(total_steps=10, batch_size=4))
    x, y = images(6, 3, 0.5), torch.tensor([0, 1, 2, 2, 1, 0])
    reference = copy.deepcopy(classifier)
    logits = reference(x)
    p = logits.softmax(dim=1)
    entropy = -(p * torch.log(p + 1e-5)).sum(dim=1).mean()
    mean = p.mean(dim=0)
    im = entropy + (mean * torch.log(mean + 1e-5)).sum()  # mean entropy minus the entropy of the mean
    loss = 0.4 * ce(logits, y) + 0.8 * im
    expected = gradients(loss, [*reference.backbone.parameters(), *reference.bottleneck.parameters()])
    logs = shot.train_step(TargetBatch(x, y), step=0)
    assert logs == pytest.approx({"loss": loss.item(), "pseudo_label": ce(logits, y).item(), "im": im.item()}, rel=1e-5)
    extractor = {id(q) for q in [*classifier.backbone.parameters(), *classifier.bottleneck.parameters()]}
    assert_close(grads_of([*classifier.backbone.parameters(), *classifier.bottleneck.parameters()]), expected)
    assert all(q.grad is None for q in classifier.head.parameters())  # the source hypothesis receives nothing ...
    assert all(torch.equal(a, b) for a, b in zip(head, classifier.head.parameters()))  # ... and does not move
    assert nonzero(grads_of(classifier.backbone.parameters())) and nonzero(grads_of(classifier.bottleneck.parameters()))
    assert optimised(shot.update) == extractor
    backbone = {id(q) for q in classifier.backbone.parameters()}
    for group in shot.update.optimizer.param_groups:  # the backbone at a tenth though not pretrained: the authors' rule
        slow = all(id(q) in backbone for q in group["params"])
        assert group["lr"] == pytest.approx(0.01 * (0.1 if slow else 1.0) * (1 + 10 * 0.1) ** -0.75)
        assert group["nesterov"] and group["momentum"] == 0.9 and group["weight_decay"] == 1e-3
    defaults = SHOT.Options()
    assert (defaults.beta, defaults.im_weight, defaults.refreshes, defaults.lr) == (0.3, 1.0, 15, 0.01)
    assert not SHOT.needs.source


def test_shot_labels_by_the_centroid_rule_refreshed_on_plain_views_and_resumed_from_the_checkpoint():
    from aa_uda.centre_aware_pairs import shot_labels
    from aa_uda.shot import SHOT

    classifier = tiny_classifier()
    plain = Tensors(images(10, 4, 0.2))
    marked = Tensors(torch.arange(10.0)[:, None, None, None].expand(10, 1, 2, 2).contiguous())  # image i's pixels read i
    data = UDAData(None, marked, Loaders(ACCELERATOR, seed=0), plain_target=plain)
    shot = SHOT(SHOT.Options(refreshes=3), classifier, context(total_steps=6, batch_size=4))
    labelled_at, drawn, made = [], [], shot.pseudo_labels

    def watched(data):
        labelled_at.append(step)
        return made(data)

    shot.pseudo_labels = watched
    batches = shot.batches(data)  # 6 steps, 3 refreshes: new labels before steps 0, 2 and 4
    for step in range(6):
        if step == 2:  # what the labels must be: the centroid rule on plain views, the model in evaluation mode
            classifier.eval()
            with torch.no_grad():
                f = classifier.bottleneck(classifier.backbone(plain.x))
                expected = shot_labels(f, classifier.head(f))
            classifier.train()
        batch = next(batches)
        index = batch.x_t[:, 0, 0, 0].long()
        drawn.append(index)
        assert len(index) == 4 and torch.equal(batch.y_t, shot.labels[index])
        if step == 2:
            assert torch.equal(shot.labels, expected) and classifier.training
        shot.train_step(batch, step)
    assert labelled_at == [0, 2, 4]
    resumed = SHOT(SHOT.Options(refreshes=3), tiny_classifier(1), context(total_steps=6, batch_size=4))
    resumed.load_extra_state(copy.deepcopy(shot.extra_state()))
    relabelled = []
    resumed.pseudo_labels = lambda data: relabelled.append(True) or torch.zeros(10, dtype=torch.long)
    batches = resumed.resume_batches(data, 3)  # step 3, inside the refresh of step 2: the checkpoint's labels
    batch = next(batches)
    assert torch.equal(batch.x_t[:, 0, 0, 0].long(), drawn[3]) and torch.equal(batch.y_t, shot.labels[drawn[3]]) and not relabelled
    batch = next(batches)  # step 4 starts a refresh
    assert relabelled == [True] and torch.equal(batch.x_t[:, 0, 0, 0].long(), drawn[4]) and not batch.y_t.any()


# ----------------------------------------------------------------------------------- FixMatch


def ssl_batch(n_l: int, n_u: int, views: int, labels=(0, 1, 2, 0)) -> SSLBatch:
    return SSLBatch(x_l=(images(n_l, 5),), y_l=torch.tensor(labels[:n_l]), x_u=tuple(images(n_u, 6 + v, 0.3) for v in range(views)))


def optimised_lrs(update) -> set[float]:
    return {group["lr"] for group in update.optimizer.param_groups}


def optimised(update) -> set[int]:
    return {id(p) for group in update.optimizer.param_groups for p in group["params"]}


def test_fixmatch_step_masks_the_strong_views_cross_entropy_by_weak_confidence():
    from aa_ssl.fixmatch import FixMatch

    classifier = tiny_classifier()
    batch = ssl_batch(2, 6, 2)
    (x_l,), (weak, strong) = batch.x_l, batch.x_u
    reference = copy.deepcopy(classifier)
    logits = reference(torch.cat([x_l, weak, strong]))  # one pass: batch norm over all three
    confidence, pseudo = logits[2:8].detach().softmax(dim=1).max(dim=1)
    threshold = confidence.sort().values[3].item()  # exactly one image's confidence: >= keeps it, > would not
    mask = (confidence >= threshold).float()
    assert 0 < mask.sum() < 6
    labelled = ce(logits[:2], batch.y_l)
    per_image = -(logits[8:] - logits[8:].logsumexp(dim=1, keepdim=True)).gather(1, pseudo[:, None]).squeeze(1)
    unlabelled = (per_image * mask).sum() / 6  # averaged over all mu B images, confident or not
    loss = labelled + 0.5 * unlabelled
    expected = gradients(loss, list(reference.parameters()))
    assert nonzero(expected[-2:])

    options = FixMatch.Options(threshold=threshold, lambda_u=0.5, mu=3, ema_decay=0.99, ema_warmup=False)
    fixmatch = FixMatch(options, classifier, context(total_steps=10, batch_size=2))
    before = [p.detach().clone() for p in classifier.parameters()]
    logs = fixmatch.train_step(batch, step=0)
    assert logs == pytest.approx({"loss": loss.item(), "labelled": labelled.item(), "unlabelled": unlabelled.item(),
                                  "mask": mask.mean().item()}, rel=1e-5)  # fmt: skip
    assert_close(grads_of(classifier.parameters()), expected)
    # the EMA (constant decay 0.99 here) moved a hundredth of the way to the stepped weights
    for average, old, new in zip(fixmatch.predictor().parameters(), before, classifier.parameters()):
        assert torch.allclose(average, 0.99 * old + 0.01 * new.detach(), atol=1e-7)
    for average, new in zip(fixmatch.predictor().buffers(), classifier.buffers()):
        assert torch.equal(average, new)  # buffers copied
    assert sorted(set(lrs(fixmatch.update))) == pytest.approx([0.03 * math.cos(7 * math.pi / 16 * 0.1)])


def test_fixmatch_feed_rates_and_no_decay_on_biases_and_norms():
    from aa_ssl.fixmatch import FixMatch, FixMatchLoss

    options = FixMatch.Options(mu=3, unlabelled="unconfident")
    feed = FixMatch.feed(options, context(batch_size=2))
    assert (feed.labelled_batch_size, feed.unlabelled_batch_size) == (2, 6)
    assert feed.labelled_views == ("weak",) and feed.unlabelled_views == ("weak", "strong") and feed.unlabelled == "unconfident"
    classifier = tiny_classifier()
    fixmatch = FixMatch(FixMatch.Options(), classifier, context(pretrained=True))
    backbone = {id(p) for p in classifier.backbone.parameters()}
    for group in fixmatch.update.optimizer.param_groups:
        slow = all(id(p) in backbone for p in group["params"])
        assert group["lr"] == pytest.approx(0.003 * (0.1 if slow else 1.0))
        assert group["weight_decay"] == (5e-4 if all(p.ndim > 1 for p in group["params"]) else 0.0)
        assert group["nesterov"] and group["momentum"] == 0.9
    assert fixmatch.ema.warmup and fixmatch.ema.decay == 0.999
    assert optimised(fixmatch.update) == {id(p) for p in classifier.parameters()}
    assert FixMatchLoss().threshold == 0.95
    assert FixMatch(FixMatch.Options(), tiny_classifier(), context()).update.optimizer.param_groups[0]["lr"] == 0.03


# ---------------------------------------------------------------------------- FreeMatch, SoftMatch


def log_softmax_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image cross-entropy, written out."""
    return -(logits - logits.logsumexp(dim=1, keepdim=True)).gather(1, y[:, None]).squeeze(1)


@pytest.mark.parametrize("steps", [1, 3])
def test_freematch_step_gates_by_self_adaptive_class_thresholds_and_adds_the_fairness_term(steps):
    """Each step: the averages move first (momentum 0.3 here: the gate moves within a few steps), then gate;
    fairness on what passed."""
    from aa_ssl.freematch import FreeMatch

    classifier = tiny_classifier()
    options = FreeMatch.Options(lambda_u=0.5, lambda_f=0.3, ema_p=0.3, mu=3, ema_decay=0.99, ema_warmup=False)
    freematch = FreeMatch(options, classifier, context(total_steps=10, batch_size=2))
    tau, p_model, hist = torch.tensor(1 / K), torch.full((K,), 1 / K), torch.full((K,), 1 / K)
    for step in range(steps):
        batch = ssl_batch(2, 6, 2)
        batch.x_u = tuple(x * (1 + 3 * step) for x in batch.x_u)  # sharper predictions each step: the gate opens and closes
        (x_l,), (weak, strong) = batch.x_l, batch.x_u
        reference = copy.deepcopy(classifier)
        logits = reference(torch.cat([x_l, weak, strong]))
        q = logits[2:8].detach().softmax(dim=1)
        confidence, pseudo = q.max(dim=1)
        tau = 0.3 * tau + 0.7 * confidence.mean()
        p_model = 0.3 * p_model + 0.7 * q.mean(dim=0)
        counts = torch.tensor([(pseudo == k).sum().item() for k in range(K)], dtype=torch.float)
        hist = 0.3 * hist + 0.7 * counts / 6
        mask = (confidence >= (tau * p_model / p_model.max())[pseudo]).float()  # the class's share of the global threshold
        unlabelled = (log_softmax_ce(logits[8:], pseudo) * mask).sum() / 6
        passed = logits[8:][mask.bool()].softmax(dim=1)
        if len(passed):
            own = torch.tensor([(passed.argmax(dim=1) == k).sum().item() for k in range(K)], dtype=torch.float) / len(passed)
            a = p_model / hist
            a = a / a.sum()
            b = passed.mean(dim=0) * torch.where(own > 0, 1 / own, torch.zeros(K))
            b = b / b.sum()
            fairness = (a * torch.log(b + 1e-12)).sum()
        else:
            fairness = torch.tensor(0.0)
        loss = ce(logits[:2], batch.y_l) + 0.5 * unlabelled + 0.3 * fairness
        expected = gradients(loss, list(reference.parameters()))
        logs = freematch.train_step(batch, step=step)
        expected_logs = {"loss": loss.item(), "labelled": ce(logits[:2], batch.y_l).item(), "unlabelled": unlabelled.item(),
                         "fairness": fairness.item(), "mask": mask.mean().item(), "tau": tau.item()}  # fmt: skip
        assert logs == pytest.approx(expected_logs, rel=1e-5, abs=1e-7)
        assert_close(grads_of(classifier.parameters()), expected)
    assert 0 < mask.sum() < 6 and fairness.item() != 0  # the last step's gate is neither shut nor open
    state = freematch.extra_state()["threshold"]
    assert torch.allclose(state["tau"], tau) and torch.allclose(state["p_model"], p_model) and torch.allclose(state["label_hist"], hist)


def test_freematch_fairness_only_moves_the_strong_views_and_resumes_its_averages():
    from aa_ssl.freematch import FreeMatch, SelfAdaptiveThreshold, fairness_loss, inverse

    assert inverse(torch.tensor([0.0, 0.5])).tolist() == [0.0, 2.0]
    weak = torch.zeros(2, K, requires_grad=True)
    strong = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    value = fairness_loss(strong, torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.5, 0.25, 0.25]))
    p = strong.detach().softmax(dim=1)
    a = torch.tensor([1.0, 1.2, 0.8]) / 3.0
    b = p.mean(dim=0) * torch.tensor([2.0, 2.0, 0.0])  # each predicted class holds half; class 2 none
    assert value.item() == pytest.approx((a * torch.log(b / b.sum() + 1e-12)).sum().item(), rel=1e-6)
    value.backward()
    assert weak.grad is None and torch.count_nonzero(strong.grad) > 0
    assert fairness_loss(strong, torch.zeros(2), torch.ones(K) / K, torch.ones(K) / K).item() == 0.0
    sat = SelfAdaptiveThreshold(4)
    assert sat.tau.item() == 0.25 and sat.momentum == 0.999
    defaults = FreeMatch.Options()
    assert (defaults.lambda_u, defaults.lambda_f, defaults.ema_p, defaults.mu, defaults.weight_decay) == (1.0, 0.001, 0.999, 7, 5e-4)
    first = FreeMatch(FreeMatch.Options(ema_p=0.5), tiny_classifier(), context(batch_size=2))
    first.train_step(ssl_batch(2, 4, 2), step=0)
    second = FreeMatch(FreeMatch.Options(ema_p=0.5), tiny_classifier(), context(batch_size=2))
    second.load_extra_state(first.extra_state())
    assert all(torch.equal(a, b) for a, b in zip(first.threshold.state_dict().values(), second.threshold.state_dict().values()))
    assert second.threshold.tau.item() != 1 / K


@pytest.mark.parametrize("steps", [1, 3])
def test_softmatch_step_weighs_by_a_gaussian_of_the_uniformly_aligned_confidence(steps):
    from aa_ssl.softmatch import SoftMatch

    classifier = tiny_classifier()
    options = SoftMatch.Options(lambda_u=0.5, ema_p=0.3, n_sigma=2.0, mu=3, ema_decay=0.99, ema_warmup=False)
    softmatch = SoftMatch(options, classifier, context(total_steps=10, batch_size=2))
    p_hat, mu, var = None, torch.tensor(1 / K), torch.tensor(1.0)
    for step in range(steps):
        batch = ssl_batch(2, 6, 2)
        batch.x_u = tuple(x * (1 + 3 * step) for x in batch.x_u)
        (x_l,), (weak, strong) = batch.x_l, batch.x_u
        reference = copy.deepcopy(classifier)
        logits = reference(torch.cat([x_l, weak, strong]))
        q = logits[2:8].detach().softmax(dim=1)
        p_hat = q.mean(dim=0) if p_hat is None else 0.3 * p_hat + 0.7 * q.mean(dim=0)  # the first batch starts it
        aligned = q * (1 / K + 1e-6) / (p_hat + 1e-6)
        c = (aligned / aligned.sum(dim=1, keepdim=True)).max(dim=1).values
        mu = 0.3 * mu + 0.7 * c.mean()
        var = 0.3 * var + 0.7 * ((c - c.mean()) ** 2).sum() / 5  # unbiased
        weight = torch.where(c < mu, torch.exp(-((c - mu) ** 2) / (2 * var / 4)), torch.ones(6))
        unlabelled = (log_softmax_ce(logits[8:], q.argmax(dim=1)) * weight).sum() / 6  # pseudo-label before alignment
        loss = ce(logits[:2], batch.y_l) + 0.5 * unlabelled
        expected = gradients(loss, list(reference.parameters()))
        logs = softmatch.train_step(batch, step=step)
        assert logs == pytest.approx({"loss": loss.item(), "labelled": ce(logits[:2], batch.y_l).item(), "unlabelled": unlabelled.item(),
                                      "mask": weight.mean().item(), "mu": mu.item()}, rel=1e-5)  # fmt: skip
        assert_close(grads_of(classifier.parameters()), expected)
    assert (weight < 1).any() and (weight == 1).any()  # some below the mean are down-weighted, those above are not
    state = softmatch.extra_state()
    assert torch.allclose(state["alignment"]["p_model"], p_hat) and torch.allclose(state["weighting"]["var"], var)


def test_softmatch_alignment_changes_the_weight_not_the_pseudo_label_and_resumes():
    from aa_ssl.softmatch import SoftMatch, TruncatedGaussianWeight, UniformAlignment

    align = UniformAlignment(2, momentum=0.5)
    q = torch.tensor([[0.6, 0.4], [0.8, 0.2]])
    align.update(q)
    assert align.p_model.tolist() == pytest.approx([0.7, 0.3]) and bool(align.started)
    aligned = align.align(q)  # class 0 over-predicted: divided down, so image 0's argmax flips
    expected = q * 0.5 / torch.tensor([0.7, 0.3])
    assert torch.allclose(aligned, expected / expected.sum(dim=1, keepdim=True), atol=1e-5) and aligned[0].argmax() == 1
    align.update(torch.tensor([[0.2, 0.8], [0.2, 0.8]]))
    assert align.p_model.tolist() == pytest.approx([0.45, 0.55])
    gaussian = TruncatedGaussianWeight(4)
    assert (gaussian.mu.item(), gaussian.var.item(), gaussian.n_sigma) == (0.25, 1.0, 2.0)
    assert gaussian.weight(torch.tensor([0.25, 0.9])).tolist() == [1.0, 1.0]
    assert gaussian.weight(torch.tensor([0.05])).item() == pytest.approx(math.exp(-(0.2**2) / (2 * 1.0 / 4)))
    defaults = SoftMatch.Options()
    assert (defaults.lambda_u, defaults.ema_p, defaults.n_sigma, defaults.mu) == (1.0, 0.999, 2.0, 7)
    first = SoftMatch(SoftMatch.Options(ema_p=0.5), tiny_classifier(), context(batch_size=2))
    first.train_step(ssl_batch(2, 4, 2), step=0)
    second = SoftMatch(SoftMatch.Options(ema_p=0.5), tiny_classifier(), context(batch_size=2))
    second.load_extra_state(first.extra_state())
    assert bool(second.alignment.started) and torch.equal(second.weighting.mu, first.weighting.mu)
    assert torch.equal(second.alignment.p_model, first.alignment.p_model)


# ----------------------------------------------------------------------------------- MixMatch


def test_mixmatch_step_guesses_sharpened_means_mixes_and_weighs_the_squared_error():
    from aa_ssl.mixmatch import MixMatch

    classifier = tiny_classifier()
    batch = ssl_batch(4, 4, 2, labels=(0, 1, 0, 1))  # no image of the last class: one-hot still has K columns
    (x,), views = batch.x_l, batch.x_u
    options = MixMatch.Options(k=2, temperature=0.5, alpha=0.75, lambda_u=3.0, rampup=0.5, ema_decay=0.99, ema_warmup=False)
    mixmatch = MixMatch(options, classifier, context(total_steps=10))
    reference = copy.deepcopy(classifier)
    before = [p.detach().clone() for p in classifier.parameters()]
    norm, ref_norm = classifier.bottleneck[1], reference.bottleneck[1]

    torch.manual_seed(123)
    logs = mixmatch.train_step(batch, step=2)
    torch.manual_seed(123)
    lam = float(torch.distributions.Beta(0.75, 0.75).sample())  # the step's own draw
    lam = max(lam, 1 - lam)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))

    with torch.no_grad():  # the guess: batch statistics per view, running statistics kept
        saved = (ref_norm.running_mean.clone(), ref_norm.running_var.clone())
        mean = (reference(views[0]).softmax(dim=1) + reference(views[1]).softmax(dim=1)) / 2
        ref_norm.running_mean.copy_(saved[0]), ref_norm.running_var.copy_(saved[1]), ref_norm.num_batches_tracked.zero_()
    q = mean**2 / (mean**2).sum(dim=1, keepdim=True)  # sharpened at T = 0.5 *after* averaging
    inputs = torch.cat([x, *views])
    targets = torch.cat([F.one_hot(batch.y_l, K).float(), q, q])
    mixed_x, mixed_p = lam * inputs + (1 - lam) * inputs[order], lam * targets + (1 - lam) * targets[order]
    logits = reference(mixed_x)
    l_x = -(mixed_p[:4] * logits[:4].log_softmax(dim=1)).sum(dim=1).mean()
    l_u = ((logits[4:].softmax(dim=1) - mixed_p[4:]) ** 2).sum() / (8 * K)  # mean over images and classes
    weight = 3.0 * (0.2 / 0.5)  # ramped: p = 2/10 of the first half
    expected = gradients(l_x + weight * l_u, list(reference.parameters()))

    assert logs == pytest.approx({"loss": (l_x + weight * l_u).item(), "labelled": l_x.item(), "unlabelled": l_u.item(),
                                  "lambda_u": weight}, rel=1e-5)  # fmt: skip
    assert_close(grads_of(classifier.parameters()), expected)
    assert nonzero(expected[-2:])
    # batch norm's running statistics moved once, by the mixed batch, not by the guessing passes
    assert norm.num_batches_tracked.item() == 1
    assert torch.allclose(norm.running_mean, ref_norm.running_mean, atol=1e-6)
    assert torch.allclose(norm.running_var, ref_norm.running_var, atol=1e-6)
    for average, old, new in zip(mixmatch.predictor().parameters(), before, classifier.parameters()):
        assert torch.allclose(average, 0.99 * old + 0.01 * new.detach(), atol=1e-7)


def test_mixmatch_ramp_rates_and_feed():
    from aa_ssl.mixmatch import MixMatch, default_lr, linear_rampup

    assert linear_rampup(3, 10, 0.6) == pytest.approx(0.5) and linear_rampup(9, 10, 0.6) == 1.0 and linear_rampup(0, 10, 0.0) == 1.0
    options = MixMatch.Options(k=3)
    feed = MixMatch.feed(options, context(batch_size=4))
    assert (feed.labelled_batch_size, feed.unlabelled_batch_size, feed.labelled_views, feed.unlabelled_views) == (
        4, 4, ("weak",), ("weak",) * 3)  # fmt: skip
    classifier = tiny_classifier()
    mixmatch = MixMatch(MixMatch.Options(), classifier, context(pretrained=True))
    optimizer = mixmatch.update.optimizer
    assert type(torch_optimizer(optimizer)) is torch.optim.AdamW
    backbone = {id(p) for p in classifier.backbone.parameters()}
    for group in optimizer.param_groups:
        slow = all(id(p) in backbone for p in group["params"])
        assert group["lr"] == pytest.approx(0.002 * (0.1 if slow else 1.0))
        assert group["weight_decay"] == (0.02 if all(p.ndim > 1 for p in group["params"]) else 0.0)
    assert mixmatch.ema.warmup and mixmatch.ema.decay == 0.999
    assert optimised(mixmatch.update) == {id(p) for p in classifier.parameters()}
    vit = tiny_vit_classifier()
    assert optimised_lrs(MixMatch(MixMatch.Options(), vit, context()).update) == {0.0002}  # a transformer's default
    assert default_lr(classifier.backbone) == 0.002 and default_lr(tiny_vit_classifier().backbone) == 0.0002


def test_kept_statistics_normalises_by_the_batch_and_restores_the_running_statistics():
    from aa_core.api import kept_statistics

    norm = nn.BatchNorm1d(2, momentum=0.5)
    net = nn.Sequential(nn.Identity(), norm)
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    with kept_statistics(net):
        y = net(x)
        assert norm.num_batches_tracked.item() == 1  # inside, batch norm behaves as in training
    assert torch.allclose(y, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), atol=1e-4)  # the batch's own mean and variance
    assert torch.equal(norm.running_mean, torch.zeros(2)) and torch.equal(norm.running_var, torch.ones(2))
    assert norm.num_batches_tracked.item() == 0
    net(x)
    assert torch.allclose(norm.running_mean, torch.tensor([1.0, 2.0]))  # outside, statistics move as usual
