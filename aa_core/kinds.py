"""The six kinds of named implementation, each described once.

A kind's entry-point group, config section, command-line flag and contract class live in one
row of ``KINDS``; the plugin manager, the config, the stage context and the CLI all read it.
Adding a seventh kind is one more row (and its contract class in ``aa_core.contracts``).

Contracts are named, not imported: the command line reads this table to build its options,
and ``aa --help`` should not pay for the contracts' pydantic models.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

NONE = "none"  # an optional kind set to this is skipped: --uda none trains on the source only


@dataclass(frozen=True)
class Kind:
    name: str  # "uda": what messages and `aa plugins` call it
    group: str  # entry-point group that registers implementations
    section: str  # config section: ``name`` (one) or the names turned on (several) and their options
    flag: str | None  # `aa run` option that sets ``<section>.name``; none for a kind chosen several at once
    contract_name: str  # the class in ``aa_core.contracts`` implementations derive from
    help: str
    optional: bool = False  # may be ``none``
    several: bool = False  # several at once: the section maps each name turned on to its options

    @property
    def contract(self) -> type:
        return getattr(importlib.import_module("aa_core.contracts"), self.contract_name)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("prompter", "aa.prompters", "prompts", "--prompter", "Prompter", "Prompt generator"),
        Kind("generator", "aa.generators", "generator", "--generator", "ImageGenerator", "Image generator"),
        Kind("filter", "aa.filters", "filters", None, "ImageFilter", "Image filters", optional=True, several=True),
        Kind("uda", "aa.uda", "uda", "--uda", "UDAAlgorithm", "UDA algorithm, or 'none' for source only", True),
        Kind("ssl", "aa.ssl", "ssl", "--ssl", "SSLAlgorithm", "SSL algorithm, or 'none' to skip refining", True),
        Kind("vlm", "aa.vlms", "vlm", "--vlm", "VisionLanguageModel", "Vision-language model (the zero-shot row), or 'none'", True),
    )
}


def chosen(config, kind: str) -> list[str]:
    """The implementation names ``config`` (an ``aa_core.config.Config``) turns on for ``kind``:
    one, or none where an optional kind is ``none``; for a kind chosen several at once, each one."""
    section = getattr(config, KINDS[kind].section)
    if KINDS[kind].several:
        return [name for name, options in section.items() if options is not None]
    return [] if section.name == NONE else [section.name]
