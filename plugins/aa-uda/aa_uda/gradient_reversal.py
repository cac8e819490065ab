"""Gradient reversal (Ganin & Lempitsky 2015).

.. math::
    R_\\lambda(x) = x, \\qquad \\frac{\\partial R_\\lambda}{\\partial x} = -\\lambda I

The identity going forward; going backward, the gradient is multiplied by :math:`-\\lambda`, so
the layers below it maximise the loss the layers above it minimise.
"""

from __future__ import annotations

import torch


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return -ctx.coefficient * grad_output, None


def reverse_gradient(x: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """:math:`R_\\lambda(x)` with :math:`\\lambda` = ``coefficient``."""
    return _ReverseGradient.apply(x, coefficient)
