"""An implementation's options: one pydantic model, whose fields are the only keys it takes.

Every implementation declares its options and their defaults in one ``Options`` model; the user
sets them in the kind's config section (``--set uda.trade_off=0.3``). A key that no field names is
a typo, and a typo read as "use the default" trains the wrong thing for hours: ``Options``
forbids unknown keys, and the core refuses them before validating even where a plugin's model
allows extras (``check_keys``).
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Options(BaseModel):
    """The base of every implementation's options: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class NoOptions(Options):
    """Options model of an implementation that takes none."""


class SGDOptions(Options):
    """SGD's options; an algorithm's ``Options`` may extend it and change the defaults."""

    lr: float = Field(0.01, gt=0, description="learning rate of the new layers")
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(1e-3, ge=0)
    nesterov: bool = True
    backbone_lr_mult: float = Field(0.1, ge=0, description="backbone rate multiplier, pretrained backbones only")


def keys(model: type[BaseModel]) -> list[str]:
    """The keys ``model`` takes: its fields' names and their aliases."""
    out = []
    for name, info in model.model_fields.items():
        out += [name] + [a for a in (info.alias, info.validation_alias) if isinstance(a, str)]
    return sorted(set(out))


def unknown_key(given: dict[str, Any], model: type[BaseModel], also: set[str] = frozenset()) -> tuple[str, str | None] | None:
    """The first key of ``given`` that ``model`` has no field for, and the closest key it has or
    ``also`` names (the section's own keys; None if none is close); None when every key is known."""
    known = keys(model)
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(set(known) | set(also)), n=1)
            return key, close[0] if close else None
    return None
