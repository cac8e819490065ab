"""CDTrans: the distillation loss, SHOT labels and two-way pairs by hand, and the shared-weight branches."""

import math

import pytest
import torch
import torch.nn.functional as F

from aa_core.api import TrainingContext, UDAData
from aa_core.config import ModelConfig
from aa_core.models.classifier import build_classifier
from aa_uda.cdtrans import CDTrans, PairBatch, distillation
from aa_uda.centre_aware_pairs import centre_aware_pairs, nearest_both_ways, shot_labels
from aa_uda.three_branches import ThreeBranches


def softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def test_distillation_is_the_cross_entropy_of_the_target_branch_to_the_cross_branch():
    teacher, student = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    q, p = softmax([2.0, 0.0, 0.0]), softmax([0.0, 1.0, 0.0])
    assert distillation(teacher, student).item() == pytest.approx(-sum(qk * math.log(pk) for qk, pk in zip(q, p)))
    # its gradient reaches the student and, undetached as in the reference, the teacher
    teacher.requires_grad_(), student.requires_grad_()
    distillation(teacher, student).backward()
    assert teacher.grad.abs().sum() > 0 and student.grad.abs().sum() > 0


def test_shot_labels_follow_the_nearest_class_centre_not_the_classifier():
    # images 0-1 sit at direction (1, 0), image 2 at (0, 1); the classifier calls image 1 class 1
    features = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0]])
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.2], [0.0, 4.0]])
    assert logits.argmax(dim=1).tolist() == [0, 1, 1]
    # [f; 1] normalised: centres weighted by the softmax; image 1 is far nearer class 0's centre
    assert shot_labels(features, logits).tolist() == [0, 0, 1]


def test_shot_labels_never_use_a_class_nothing_is_predicted_as():
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    logits = torch.tensor([[3.0, 0.0, 2.9], [3.0, 0.0, 2.9], [0.0, 3.0, 2.9]])  # class 2 never wins
    assert 2 not in shot_labels(features, logits).tolist()


def test_pairs_go_both_ways_and_the_filter_keeps_agreeing_labels():
    g_s = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]), dim=1)
    g_t = F.normalize(torch.tensor([[0.9, 0.1], [0.1, 0.9]]), dim=1)
    target_of, source_of = nearest_both_ways(g_s, g_t, block_entries=4)  # two blocks of two source rows (x 2 targets)
    assert target_of.tolist() == [0, 1, 0] and source_of.tolist() == [0, 1]
    y_s, y_t = torch.tensor([0, 1, 1]), torch.tensor([0, 1])
    # target-side pairs (0,0), (1,1); source-side (0,0), (1,1), (2,0): source 2 is labelled 1, target 0 is 0
    unfiltered = centre_aware_pairs(g_s, y_s, g_t, y_t, label_filter=False)
    assert unfiltered.tolist() == [[0, 0], [1, 1], [0, 0], [1, 1], [2, 0]]
    assert centre_aware_pairs(g_s, y_s, g_t, y_t).tolist() == [[0, 0], [1, 1], [0, 0], [1, 1]]


def vit_classifier(num_classes=3):
    torch.manual_seed(0)
    return build_classifier(ModelConfig(backbone="aa_vit_tiny"), num_classes=num_classes, channels=1)


def test_the_source_and_target_branches_are_the_classifier_and_the_weights_are_shared():
    classifier = vit_classifier().eval()
    network = ThreeBranches(classifier)
    assert list(network.parameters()) == list(classifier.parameters())  # no weights of its own
    x_s, x_t = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    o_s, o_t, o_st = network(x_s, x_t)
    assert torch.allclose(o_s, classifier(x_s), atol=1e-5) and torch.allclose(o_t, classifier(x_t), atol=1e-5)
    # the target branch ignores the source; the cross-attention branch does not (from the second
    # block on: the first block's source class token, whose query it is, has seen no image yet)
    x_s.requires_grad_()
    _, o_t, o_st = network(x_s, x_t)
    assert torch.autograd.grad(o_t.sum(), x_s, allow_unused=True)[0] is None
    assert torch.autograd.grad(o_st.sum(), x_s)[0].abs().sum() > 0


def test_the_cross_attention_branch_takes_queries_from_the_source_and_keys_values_from_the_target():
    classifier = vit_classifier().eval()
    vit = classifier.backbone
    vit.blocks = vit.blocks[:1]  # one block, checked against the attention written out
    network = ThreeBranches(classifier)
    x_s, x_t = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    z_s, z_t = network.embed(x_s), network.embed(x_t)
    block = vit.blocks[0]
    heads, d = block.attn.num_heads, block.attn.head_dim

    def split(x):  # (B, N, 3C) -> q, k, v of shape (B, heads, N, d)
        return x.reshape(x.shape[0], x.shape[1], 3, heads, d).permute(2, 0, 3, 1, 4)

    q_s, _, _ = split(block.attn.qkv(block.norm1(z_s)))
    _, k_t, v_t = split(block.attn.qkv(block.norm1(z_t)))
    mixed = ((q_s @ k_t.transpose(-2, -1)) / math.sqrt(d)).softmax(dim=-1) @ v_t
    z = z_t + block.attn.proj(mixed.transpose(1, 2).reshape(z_t.shape))  # the residual starts at the target
    z = z + block.mlp(block.norm2(z))
    c = classifier
    expected = c.head(c.bottleneck(vit.forward_head(vit.norm(z), pre_logits=True)))
    assert torch.allclose(network(x_s, x_t)[2], expected, atol=1e-5)


class Tensors(torch.utils.data.Dataset):
    def __init__(self, x, y=None):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] if self.y is None else (self.x[i], int(self.y[i]))


def test_batches_are_label_consistent_pairs_and_a_step_trains_every_shared_weight():
    from accelerate import Accelerator

    from aa_core.data.loaders import Loaders

    classifier = vit_classifier()
    accelerator = Accelerator(cpu=True)
    context = TrainingContext(accelerator, 3, total_steps=4, batch_size=4, pretrained_backbone=False, seed=0)
    cdtrans = CDTrans(CDTrans.Options(refreshes=2), classifier, context)
    x_s, y_s = torch.randn(12, 1, 8, 8), torch.arange(12) % 3
    data = UDAData(Tensors(x_s, y_s), Tensors(torch.randn(9, 1, 8, 8)), Loaders(accelerator, seed=0))
    pseudo, pairs = cdtrans.label_and_pair(data)
    assert len(pairs) and all(y_s[s] == pseudo[t] for s, t in pairs.tolist())
    batch = next(iter(cdtrans.batches(data)))
    assert isinstance(batch, PairBatch) and len(batch.x_s) == len(batch.x_t) == len(batch.y_t) == 4
    before = {n: p.clone() for n, p in classifier.named_parameters()}
    logs = cdtrans.train_step(batch, step=0)
    assert set(logs) == {"source", "target", "distillation", "pairs"} and logs["pairs"] == len(pairs)
    shared = ("backbone.blocks.0.attn.qkv.weight", "backbone.blocks.1.mlp.fc1.weight", "backbone.patch_embed.backbone.0.weight")
    for name in (*shared, "bottleneck.0.weight", "head.weight"):
        assert not torch.equal(before[name], dict(classifier.named_parameters())[name]), name
    assert cdtrans.predictor() is classifier  # prediction goes through the target branch alone
