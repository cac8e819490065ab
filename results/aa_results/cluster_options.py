"""What each job of a sweep on SLURM asks for: the grid file's ``slurm:`` section and ``--slurm KEY=VALUE``.

::

    slurm:
      partition: gpu
      gpus_per_run: 1          # GPUs of one node per run; more than 1 runs it under accelerate launch
      cpus_per_run: 8
      time: "12:00:00"         # a job's time limit, as sbatch writes it (minutes, H:M:S, D-H:M:S)
      account: my-project
      sbatch: ["--qos=normal", "--constraint=a100", "--exclusive"]   # more #SBATCH lines

Unset, SLURM's defaults hold (the default partition, the account's default, one CPU).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from aa_core.runs import AAError

EXAMPLE = "slurm: {partition: gpu, gpus_per_run: 1, time: '12:00:00'}"


class Loader(yaml.SafeLoader):
    """YAML without base-60 integers: YAML 1.1 reads ``time: 12:00:00`` as 43200; here it stays text."""


INT = "tag:yaml.org,2002:int"
Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != INT] for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(INT, re.compile(r"^[-+]?(0|[1-9][0-9_]*)$"), list("-+0123456789"))


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus_per_run: int = 1
    cpus_per_run: int | None = None
    time: str = "24:00:00"
    account: str | None = None
    sbatch: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, values: dict) -> SlurmOptions:
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise AAError(f"unknown SLURM option {', '.join(unknown)}; choose from {', '.join(cls.__dataclass_fields__)} ({EXAMPLE})")
        options = cls(**values)
        for name in ("gpus_per_run", "cpus_per_run"):
            value = getattr(options, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise AAError(f"SLURM option {name} must be a whole number of at least 0, not {value!r}")
        if isinstance(options.sbatch, str):
            options.sbatch = [options.sbatch]
        options.time = str(options.time)
        options.minutes()  # a bad time or #SBATCH line is found before anything is submitted
        options.additional()
        return options

    def as_dict(self) -> dict:
        return asdict(self)

    def minutes(self) -> int:
        """``time`` in whole minutes: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S`` (sbatch's forms)."""
        text = self.time.strip()
        try:
            days, dash, rest = text.rpartition("-")
            parts = [int(p) for p in rest.split(":")]
            if dash:  # D-H[:M[:S]]
                hours, minutes, seconds = (parts + [0, 0])[:3] if len(parts) <= 3 else (None, None, None)
                total = int(days) * 24 * 60 + hours * 60 + minutes + seconds / 60
            else:  # M, M:S or H:M:S
                hours, minutes, seconds = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
                total = hours * 60 + minutes + seconds / 60
        except (ValueError, KeyError, TypeError):
            raise AAError(f"SLURM option time '{self.time}' is not a time limit sbatch reads; write minutes, H:M:S or D-H:M:S") from None
        if total <= 0:
            raise AAError(f"SLURM option time '{self.time}' must be longer than zero")
        return math.ceil(total)

    def additional(self) -> dict:
        """The extra ``#SBATCH`` lines as submitit's additional parameters: ``--qos=high`` -> {"qos": "high"}."""
        out = {}
        for line in self.sbatch:
            flag = str(line).removeprefix("#SBATCH").strip()
            if not flag.startswith("--") or " " in flag.split("=")[0]:
                raise AAError(f"SLURM option sbatch: '{line}' is not an sbatch flag; write it as --name=value or --name")
            name, sep, value = flag[2:].partition("=")
            out[name] = value if sep else True
        return out


def slurm_section(file: Path | None) -> dict:
    """The ``slurm:`` mapping of a grid file (empty without one)."""
    if file is None:
        return {}
    try:
        loaded = yaml.load(file.read_text(), Loader=Loader) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AAError(f"cannot read grid file {file}: {exc}") from None
    section = loaded.get("slurm", {}) if isinstance(loaded, dict) else {}
    if not isinstance(section, dict):
        raise AAError(f"the slurm section of {file} must map options to values ({EXAMPLE})")
    return section


def parse_options(items: list[str]) -> dict:
    """``--slurm KEY=VALUE`` items (values read as YAML; ``sbatch`` repeatable) as a mapping."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise AAError(f"invalid --slurm '{item}': write it as KEY=VALUE, e.g. --slurm partition=gpu")
        key = key.strip()
        try:
            value = yaml.load(raw, Loader=Loader) if key != "sbatch" else raw
        except yaml.YAMLError:
            value = raw
        if key == "sbatch":
            out.setdefault("sbatch", []).extend(value if isinstance(value, list) else [str(value)])
        else:
            out[key] = value
    return out
