"""`aa sweep`: a grid of runs under one root, sharing every stage they have in common.

The members are the product of the grid (``--grid uda.name=dann,mcd``, or a YAML file of
``key: [values]``) and the seeds; each is a run folder ``ROOT/<key=value__key=value>/seed<N>``
made with the sweep's base settings (``--config``, ``--set``) plus its own.

Sharing. Before a member runs, each of its leading stages that a member under the root has
completed with the same fingerprint is shared (``Run.share_from``): the stage's outputs (``aa_core.runs.OUTPUTS``)
are hard-linked where the pipeline only ever replaces a file whole (images, weights) and
copied otherwise (small text files), and the stage's ``stages.json`` entry is copied. Nothing of
gigabytes is copied, and a later change in one folder never reaches another: a hard link is
replaced, not rewritten. The pipeline then reuses those stages as its own.

Order. Work goes in phases: the first member of each distinct generation runs up to
``generate``; then the first member of each distinct source-only model up to ``adapt``; then the
first of each remaining distinct adaptation up to ``adapt``; then every member to the end. One
generation serves every UDA/SSL pair and one adaptation every SSL algorithm, also when several
devices work at once (``--devices 0,1``: one run per device).

``ROOT/sweep.json`` records the sweep and each member's status (``done``, or ``failed`` with its
error line); a failed member is recorded and the others go on. Running ``aa sweep ROOT`` again
resumes: completed stages are reused, an interrupted one resumes.

On a cluster (``launcher: slurm``) the same phases become jobs with dependencies
(``sweep_jobs``, ``launchers``); the grid file's ``slurm:`` section holds the jobs' options.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Queue

import yaml

from aa_core.runs import AAError, Run, RunFolder, load_config, parse_set, write_atomic, writer_lock

logger = logging.getLogger("aa")

RECORD = "sweep.json"


@dataclass
class Member:
    name: str  # "uda.name=dann__ssl.name=fixmatch"; "base" for an empty grid
    seed: int
    sets: list[str]  # the member's own --set items

    @property
    def folder(self) -> str:
        # a value's "/" (a hub id, a path) would nest the folder a level deeper than ROOT/*/seed*
        return f"{self.name.replace('/', '%2F')}/seed{self.seed}"


@dataclass
class Sweep:
    root: Path
    config: str | None = None  # the base --config file
    sets: list[str] = field(default_factory=list)  # the base --set items
    grid: dict[str, list] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    status: dict[str, str] = field(default_factory=dict)  # member folder -> done | failed: <error line>
    launcher: str = "processes"  # or slurm, slurm-local: the phases as jobs (aa_results.launchers)
    slurm: dict = field(default_factory=dict)  # the jobs' options (aa_results.cluster_options)
    jobs: dict[str, dict] = field(default_factory=dict)  # job name -> its record, where jobs run the sweep

    # --- the grid --------------------------------------------------------------------------

    def members(self) -> list[Member]:
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            sets = [f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in zip(keys, values)]
            name = "__".join(member_label(k, v, self.grid[k]) for k, v in zip(keys, values)) or "base"
            out += [Member(name, seed, sets) for seed in self.seeds]
        return out

    def args(self, member: Member) -> list[str]:
        """`aa run` arguments of a member, less --out."""
        base = ["--config", self.config] if self.config else []
        sets = [a for item in [*self.sets, *member.sets] for a in ("--set", item)]
        return [*base, *sets, "--seed", str(member.seed)]

    def config_of(self, member: Member):
        return load_config(self.config, {"seed": member.seed}, [*self.sets, *member.sets])

    def run_dir(self, member: Member) -> Path:
        return self.root / member.folder

    # --- the record --------------------------------------------------------------------------

    def save(self) -> None:
        record = {k: v for k, v in asdict(self).items() if k != "root"}
        write_atomic(self.root / RECORD, json.dumps(record, indent=2, default=str))

    @classmethod
    def load(cls, root: Path) -> Sweep:
        path = root / RECORD
        if not path.is_file():
            raise AAError(f"{root} holds no sweep ({RECORD}); start one with `aa sweep {root} --grid KEY=V1,V2`")
        return cls(root=root, **json.loads(path.read_text()))


def member_label(key: str, value, values: list) -> str:
    """``key=value`` in a member's name; an implementation with its options (``generator:
    [{name: glyph}, {name: stable-diffusion, steps: 1}]``) by its name, and its options where
    another value of the key has the same name."""
    if not isinstance(value, dict):
        return f"{key}={value}"
    twins = sum(isinstance(v, dict) and v.get("name") == value.get("name") for v in values)
    options = [f"{k}={v}" for k, v in value.items() if k != "name"] if twins > 1 else []
    return f"{key}=" + ",".join([str(value.get("name")), *options])


def check_grid(grid: dict[str, list], sets: list[str]) -> None:
    """A section key takes implementations with their options; a base --set of an option cannot
    follow a grid that swaps the implementation (it belongs to one of them)."""
    from aa_core.runs import IMPLEMENTATION_SECTIONS, core_keys

    for key, values in grid.items():
        if "." not in key:
            if key not in IMPLEMENTATION_SECTIONS or not all(isinstance(v, dict) and v.get("name") for v in values):
                raise AAError(
                    f"grid key {key!r} must name a setting (section.key), or be one of {', '.join(sorted(IMPLEMENTATION_SECTIONS))} "
                    f"with implementations and their options ({key}: [{{name: a}}, {{name: b, option: 1}}])"
                )
    swapped = {k.split(".")[0] for k in grid if k.split(".")[0] in IMPLEMENTATION_SECTIONS and k.split(".")[-1] in ("name", k)}
    for item in sets:
        key = parse_set(item)[0]
        section, _, name = key.partition(".")
        if section in swapped and name and name not in core_keys(section):
            raise AAError(
                f"--set {key} is an option of one {section} implementation, and the grid swaps {section}.name; give each "
                f"implementation its options in the grid: --grid '{section}=[{{name: a}}, {{name: b, {name}: ...}}]'"
            )


def parse_grid(items: list[str], file: Path | None) -> dict[str, list]:
    """``key=v1,v2`` items (values read as YAML), and a YAML file of ``key: [values]``, as one grid."""
    grid: dict[str, list] = {}
    if file is not None:
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise AAError(f"cannot read grid file {file}: {exc}") from None
        if isinstance(loaded, dict):
            loaded.pop("slurm", None)  # the cluster's options, not a grid key (cluster_options.slurm_section)
        if not isinstance(loaded, dict) or not all(isinstance(v, list) and v for v in loaded.values()):
            raise AAError(f"grid file {file} must map each key to a list of values (uda.name: [dann, mcd])")
        grid |= {str(k): v for k, v in loaded.items()}
    for item in items:
        key, raw = parse_set(item)
        values = [yaml.safe_load(v) for v in str(raw).split(",")] if not isinstance(raw, list) else raw
        if not values or any(v is None or v == "" for v in values):
            raise AAError(f"invalid --grid '{item}': write it as section.key=value1,value2")
        grid[key] = values
    return grid


# --- sharing ---------------------------------------------------------------------------------


def take_shared(folder: RunFolder, config, donors: list[RunFolder]) -> list[str]:
    """Take every leading stage a donor completed with this run's fingerprint; return their names."""
    return Run(config, folder.root).share_from(donors)


def donors_under(root: Path) -> list[RunFolder]:
    return [RunFolder(p.parent) for p in sorted(root.glob("*/seed*/stages.json"))]


# --- running ---------------------------------------------------------------------------------


def run_member(sweep: Sweep, member: Member, until: str | None, device: str | None, processes: int = 1) -> tuple[int, str]:
    """`aa run` of one member in its own process (on ``device``), or under ``accelerate launch`` in
    ``processes`` processes (one per GPU); (exit status, last error line)."""
    out = sweep.run_dir(member)
    out.mkdir(parents=True, exist_ok=True)
    args = ["run", "--out", str(out), *sweep.args(member), *(["--until", until] if until else [])]
    launch = ["accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes), "-m"] if processes > 1 else []
    cmd = [sys.executable, "-m", *launch, "aa_cli.main", *args]
    env = dict(os.environ)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    with open(out / "sweep.log", "a") as log:
        on = f"CUDA_VISIBLE_DEVICES={device} " if device is not None else ""
        shown = f"accelerate launch {' '.join(launch[1:])} aa_cli.main" if launch else "aa"
        log.write(f"$ {on}{shown} {' '.join(args)}\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    errors = [line for line in (out / "sweep.log").read_text().splitlines() if line.startswith("error:")]
    return proc.returncode, (errors[-1] if errors else f"exit status {proc.returncode}")


def phases(sweep: Sweep) -> list[tuple[str | None, str | None]]:
    """(stage to run up to, what members are grouped by) of each phase; the last runs everyone to the end."""
    config = load_config(sweep.config, {}, sweep.sets)  # the base settings: a real --source skips generation
    first = [("generate", "generate")] if config.data.source is None else []
    # one source-only model per source and its settings, then one adaptation per algorithm
    return [*first, ("adapt", "source_only"), ("adapt", "adapt"), (None, None)]


def run_sweep(sweep: Sweep, devices: list[str] | None, say=print) -> dict[str, str]:
    """Run every member, phase by phase, sharing stages; return the status of each member."""
    members = sweep.members()
    sweep.root.mkdir(parents=True, exist_ok=True)
    with writer_lock(sweep.root):  # one sweep at a time under a root: they share sweep.json and donors
        return sweep_phases(sweep, members, devices, say)


def sweep_phases(sweep: Sweep, members: list[Member], devices: list[str] | None, say) -> dict[str, str]:
    sweep.save()
    failed: set[str] = set()
    for until, key in phases(sweep):
        jobs, seen = [], set()
        for member in members:
            if member.folder in failed:
                continue
            folder = RunFolder(sweep.run_dir(member))
            try:  # a member whose settings are wrong fails alone
                config = sweep.config_of(member)
                shared = take_shared(folder, config, donors_under(sweep.root))
                run = Run(config, folder.root)
                fp = run.source_only_fingerprint() if key == "source_only" else run.fingerprints()[key] if key else ""
            except AAError as exc:
                failed.add(member.folder)
                sweep.status[member.folder] = f"failed: error: {exc}"
                say(f"[sweep] {member.folder}: failed (error: {exc})")
                sweep.save()
                continue
            if shared:
                say(f"[sweep] {member.folder}: shares {', '.join(shared)}")
            if until is None:
                jobs.append(member)
                continue
            if not folder.is_current(key, fp) and fp not in seen:
                seen.add(fp)
                jobs.append(member)
        for member, (code, error) in zip(jobs, run_jobs(sweep, jobs, until, devices, say)):
            if code != 0:
                failed.add(member.folder)
                sweep.status[member.folder] = f"failed: {error}"
                say(f"[sweep] {member.folder}: failed ({error})")
            elif until is None:
                sweep.status[member.folder] = "done"
            sweep.save()
    return sweep.status


def run_jobs(sweep: Sweep, jobs: list[Member], until: str | None, devices: list[str] | None, say) -> list[tuple[int, str]]:
    """Run the jobs one after another, or one per device at a time; results in the jobs' order."""
    what = f"up to {until}" if until else "to the end"

    def one(member: Member, device: str | None) -> tuple[int, str]:
        say(f"[sweep] {member.folder}: running {what}" + (f" on device {device}" if device is not None else ""))
        return run_member(sweep, member, until, device)

    if not devices:
        return [one(member, None) for member in jobs]
    free: Queue = Queue()
    for device in devices:
        free.put(device)

    def on_a_device(member: Member) -> tuple[int, str]:
        device = free.get()
        try:
            return one(member, device)
        finally:
            free.put(device)

    with ThreadPoolExecutor(len(devices)) as pool:
        return list(pool.map(on_a_device, jobs))
