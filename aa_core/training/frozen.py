"""``with frozen(*modules):`` their parameters take no gradient, and get back what they had after.

An update that moves only some networks still back-propagates *through* the others (MCD's step C
moves the extractor through both classifiers); freezing those spares autograd their weight
gradients, which the update would throw away.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def frozen(*modules: torch.nn.Module) -> Iterator[None]:
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
