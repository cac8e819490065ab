"""The four kinds of named implementation, each described once.

A kind's entry-point group, config section, command-line flag and contract class live in one
row of ``KINDS``; the plugin manager, the config, the stage context and the CLI all read it.
Adding a fifth kind is one more row (and its contract class).
"""

from __future__ import annotations

from dataclasses import dataclass

from aa_core.contracts import ImageGenerator, Implementation, Prompter, SSLAlgorithm, UDAAlgorithm

NONE = "none"  # an optional kind set to this is skipped: --uda none trains on the source only


@dataclass(frozen=True)
class Kind:
    name: str  # "uda": what messages and `aa plugins` call it
    group: str  # entry-point group that registers implementations
    section: str  # config section whose ``name`` picks one and whose other keys are its options
    flag: str  # `aa run` option that sets ``<section>.name``
    contract: type[Implementation]  # the base class implementations derive from
    help: str
    optional: bool = False  # may be ``none``


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("prompter", "aa.prompters", "prompts", "--prompter", Prompter, "Prompt generator"),
        Kind("generator", "aa.generators", "generator", "--generator", ImageGenerator, "Image generator"),
        Kind("uda", "aa.uda", "uda", "--uda", UDAAlgorithm, "UDA algorithm, or 'none' for source only", True),
        Kind("ssl", "aa.ssl", "ssl", "--ssl", SSLAlgorithm, "SSL algorithm, or 'none' to skip refining", True),
    )
}


def chosen(config, kind: str) -> str:
    """The implementation name ``config`` (an ``aa_core.config.Config``) gives ``kind``; maybe ``none``."""
    return getattr(config, KINDS[kind].section).name
