"""CDTrans' weight-shared three-branch transformer, over any timm ``VisionTransformer``.

Each block runs three branches with the same weights (qkv, proj, MLP, both norms). With
:math:`Q_s, K_s, V_s` and :math:`Q_t, K_t, V_t` the projections of the normalised source and
target tokens:

.. math::
    z_s \\leftarrow z_s + \\mathrm{proj}\\,\\mathrm{softmax}(Q_s K_s^\\top / \\sqrt d)\\, V_s, \\qquad
    z_t \\leftarrow z_t + \\mathrm{proj}\\,\\mathrm{softmax}(Q_t K_t^\\top / \\sqrt d)\\, V_t, \\qquad
    z_{st} \\leftarrow z_{st} + \\mathrm{proj}\\,\\mathrm{softmax}(Q_s K_t^\\top / \\sqrt d)\\, V_t

each followed by the block's MLP on its own stream. The source and target branches are the ViT
itself; the source-target branch (cross-attention: queries from the source, keys and values from
the target) starts from the embedded target tokens and carries its own residual stream. Every
branch ends in the ViT's final norm and pooling (the class token), then the classifier's shared
bottleneck and head, each branch through them on its own (as batch norm statistics go).
Prediction uses the target branch: the classifier as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def projections(attn: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values of timm's ``Attention`` for tokens ``x``: (B, heads, N, head_dim) each."""
    b, n, _ = x.shape
    q, k, v = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    return attn.q_norm(q), attn.k_norm(k), v


def attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gate_from: torch.Tensor) -> torch.Tensor:
    """The rest of timm's ``Attention.forward``: scaled dot-product attention, norm, gate, projection."""
    x = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    b, _, n, _ = q.shape
    x = x.transpose(1, 2).reshape(b, n, attn.proj.in_features)  # the heads side by side (timm 1.0.3 has no attn_dim)
    norm = getattr(attn, "norm", None)  # timm's scale_norm, from 1.0.10 on
    if norm is not None:
        x = norm(x)
    if getattr(attn, "gate", None) is not None:
        x = x * attn.gate(gate_from).sigmoid()
    return attn.proj_drop(attn.proj(x))


def residual_mlp(block: nn.Module, z: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """A timm ``Block``'s two residual steps, given its attention's output for the stream ``z``."""
    z = z + block.drop_path1(block.ls1(attended))
    return z + block.drop_path2(block.ls2(block.mlp(block.norm2(z))))


def three_branch_block(block: nn.Module, z_s: torch.Tensor, z_t: torch.Tensor, z_st: torch.Tensor):
    """One timm ``Block`` over the source, target and source-target streams (shared weights)."""
    n_s, n_t = block.norm1(z_s), block.norm1(z_t)
    q_s, k_s, v_s = projections(block.attn, n_s)
    q_t, k_t, v_t = projections(block.attn, n_t)
    return (
        residual_mlp(block, z_s, attend(block.attn, q_s, k_s, v_s, n_s)),
        residual_mlp(block, z_t, attend(block.attn, q_t, k_t, v_t, n_t)),
        residual_mlp(block, z_st, attend(block.attn, q_s, k_t, v_t, n_s)),
    )


class ThreeBranches(nn.Module):
    """``forward(x_s, x_t)`` -> logits of the source, target and source-target branches.

    ``classifier`` is the core's ``ImageClassifier`` with a timm ``VisionTransformer`` backbone;
    its weights are the only weights, so training this trains the predictor.
    """

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.classifier.backbone
        return vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))

    def pooled(self, z: torch.Tensor) -> torch.Tensor:
        vit = self.classifier.backbone
        return vit.forward_head(vit.norm(z), pre_logits=True)

    def forward(self, x_s: torch.Tensor, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z_s, z_t = self.embed(x_s), self.embed(x_t)
        z_st = z_t  # the cross-attention stream starts from the target tokens
        for block in self.classifier.backbone.blocks:
            z_s, z_t, z_st = three_branch_block(block, z_s, z_t, z_st)
        c = self.classifier
        return tuple(c.head(c.bottleneck(self.pooled(z))) for z in (z_s, z_t, z_st))  # type: ignore[return-value]
