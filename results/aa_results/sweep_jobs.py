"""A sweep as jobs with dependencies: the phases of `aa sweep` (``sweep.phases``) as a graph a
scheduler can run all at once, so that sharing works exactly as it does on one machine.

Phase by phase, as the local sweep goes, the first member of each distinct key gets a job:

* ``generate``: one per distinct generation (its prompts and images), up to ``generate``;
* ``source_only``: one per distinct source-only model, up to ``adapt`` (it adapts too);
* ``adapt``: one per distinct adaptation that no job above makes, up to ``adapt``;
* ``run``: one per member, to the end.

Each job is ``after`` (SLURM's ``afterok``) the job that makes what it reuses: the job owning its
member's key of the phase before. A job starts by taking, from the members under the root,
every leading stage they completed with its fingerprint (``sweep.take_shared``), then runs ``aa run``.

The keys are the fingerprints of each member's configuration in a folder where nothing ran yet
(a synthetic source counts as its generation's key), so the plan is the same however far the
folders got; whether a job's work is already done is read from its member's folder as it is.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from aa_core.runs import AAError, Run, RunFolder

from .sweep import Member, Sweep, donors_under, phases, run_member, take_shared

PHASE_NAMES = {"generate": "generate", "source_only": "source_only", "adapt": "adapt", None: "run"}
COVERS = {"generate": ("generate",), "adapt": ("source_only", "adapt"), None: ()}  # what a job up to a stage makes


@dataclass
class Job:
    name: str  # "<phase> <member folder>"
    member: Member
    until: str | None  # the stage it runs up to; None: to the end
    after: list[str]  # the jobs whose results it reuses


def keys_of(sweep: Sweep, member: Member) -> dict[str, str]:
    """The member's generation, source-only model and adaptation, as fingerprints of its settings."""
    run = Run(sweep.config_of(member), sweep.root / ".plan" / member.folder)  # never made: nothing ran there
    fps = run.fingerprints()
    generation = fps.get("generate", "")  # a synthetic source is its generation's; a real one is in its own digest
    return {"generate": generation, "source_only": f"{generation}:{run.source_only_fingerprint()}", "adapt": fps["adapt"]}


def plan(sweep: Sweep, members: list[Member]) -> tuple[list[Job], dict[str, str]]:
    """The jobs, each after the ones it depends on; and the members whose settings fail (folder -> error line)."""
    keys, failed = {}, {}
    for member in members:
        try:  # a member whose settings are wrong fails alone, as in the local sweep
            keys[member.folder] = keys_of(sweep, member)
        except AAError as exc:
            failed[member.folder] = f"error: {exc}"
    jobs: list[Job] = []
    owner: dict[tuple[str, str], str] = {}  # (kind, key) -> the job that makes it
    order = phases(sweep)
    for i, (until, kind) in enumerate(order):
        before = order[i - 1][1] if i else None
        for member in members:
            key = keys.get(member.folder)
            if key is None or (kind is not None and (kind, key[kind]) in owner):
                continue
            job = Job(f"{PHASE_NAMES[kind]} {member.folder}", member, until, [owner[(before, key[before])]] if before else [])
            jobs.append(job)
            for made in COVERS[until]:
                owner.setdefault((made, key[made]), job.name)
    return jobs, failed


def done(sweep: Sweep, job: Job) -> bool:
    """Whether the job's work is in its member's folder: its last stage complete with the current settings."""
    folder = RunFolder(sweep.run_dir(job.member))
    if not folder.state():
        return False
    run = Run(sweep.config_of(job.member), folder.root)
    stage = job.until or run.stages[-1]
    return folder.is_current(stage, run.fingerprints()[stage])


# --- in the job --------------------------------------------------------------------------------


def note(sweep: Sweep, member: Member, line: str) -> None:
    """A line in the member's ``sweep.log``: its run's log, where the job's start and end are read back."""
    with open(sweep.run_dir(member) / "sweep.log", "a") as log:
        log.write(line + "\n")


def run_job(sweep: Sweep, folder: str, until: str | None, processes: int) -> str:
    """The body of a job (run by submitit where the scheduler puts it): take what other members
    made, then ``aa run`` the member up to ``until``; raise on failure, so the job fails and the
    jobs after it are cancelled."""
    import submitit

    job_id = submitit.JobEnvironment().job_id
    member = next(m for m in sweep.members() if m.folder == folder)
    sweep.run_dir(member).mkdir(parents=True, exist_ok=True)
    note(sweep, member, f"[job {job_id}] on {socket.gethostname()}: running {f'up to {until}' if until else 'to the end'}")
    try:
        shared = take_shared(RunFolder(sweep.run_dir(member)), sweep.config_of(member), donors_under(sweep.root))
        if shared:
            note(sweep, member, f"[job {job_id}] shares {', '.join(shared)}")
        code, error = run_member(sweep, member, until, None, processes)
    except AAError as exc:
        code, error = 1, f"error: {exc}"
    if code != 0:
        note(sweep, member, f"[job {job_id}] failed: {error}")
        raise AAError(error)
    note(sweep, member, f"[job {job_id}] completed")
    return "completed"


def outcome(log: Path, job_id: str) -> str | None:
    """What the job wrote at its end in ``log``: ``completed``, ``failed: <error line>``, or None (it never ended there)."""
    if not log.is_file():
        return None
    ends = [line.split("] ", 1)[1] for line in log.read_text().splitlines()
            if line.startswith(f"[job {job_id}] ") and line.split("] ", 1)[1].startswith(("completed", "failed"))]  # fmt: skip
    return ends[-1] if ends else None
