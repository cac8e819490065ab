"""Forward passes that leave batch norm's running statistics as they were.

In training mode a batch norm layer normalises with the batch's own mean and variance and moves
its running estimates towards them: :math:`\\hat\\mu \\leftarrow (1 - m)\\,\\hat\\mu + m\\,\\mu_B`.
Inside ``kept_statistics(module)`` the layers still normalise with the batch's statistics, but
their running mean, variance and batch count are put back on leaving, so the extra passes
(MixMatch's label guessing, AdaMatch's source-only pass) do not count towards the estimates
that predictions use. This is what the MixMatch reference does (its guessing passes' update ops
are skipped), USB's ``bn_controller.freeze_bn`` and AdaMatch's authors' saved-variables pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def kept_statistics(module: nn.Module) -> Iterator[None]:
    """Batch statistics normalise as usual; the running ones are restored on leaving."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [{name: b.clone() for name, b in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved):
                for name, value in buffers.items():
                    # through .data: batch norm's backward holds these buffers, and a write that
                    # bumped their version would fail it where the passes inside kept a graph (AdaMatch)
                    getattr(m, name).data.copy_(value)
