"""`aa sweep --launcher slurm`: the sweep's jobs (``sweep_jobs.plan``) submitted through submitit.

* ``slurm``: every job is submitted at once, each ``afterok`` on the jobs it reuses; the command
  returns, and the scheduler runs them. A job whose dependency failed is cancelled by SLURM (with
  ``DependencyParameters=kill_invalid_depend``) or left pending with ``DependencyNeverSatisfied``.
* ``slurm-local``: the same jobs through submitit's local executor, on this machine: a job starts
  once the jobs it depends on have completed (and never, if one failed); the command waits for them.

``ROOT/sweep.json`` records each job (its id, member, last stage and dependencies); its output
goes to the member's ``sweep.log``, submitit's own files to ``ROOT/jobs/``. ``aa sweep ROOT``
again shows every job's state (the scheduler's while it knows the job, then what the job wrote at
its end in ``sweep.log``) and resumes: a job whose work is in its folder is left alone, one that
is queued or running is kept, and every other one (failed, cancelled, out of time, or after one
of those) is submitted again, ``afterok`` on the jobs kept or submitted.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
from dataclasses import dataclass

from aa_core.runs import AAError, writer_lock

from .cluster_options import SlurmOptions
from .sweep import Sweep
from .sweep_jobs import Job, done, outcome, plan, run_job

LAUNCHERS = ("processes", "slurm", "slurm-local")
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
         "REVOKED", "SPECIAL_EXIT", "ENDED"}  # fmt: skip
NEVER = "DependencyNeverSatisfied"  # a pending job whose dependency failed, where SLURM does not cancel it


@dataclass
class State:
    name: str  # SLURM's state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ...); ENDED: gone, unfinished
    detail: str = ""  # the pending reason, or the error line the job wrote

    @property
    def alive(self) -> bool:
        return self.name not in ENDED and self.detail != NEVER


class Slurm:
    """Jobs on SLURM, through submitit's SLURM executor."""

    def __init__(self, sweep: Sweep, options: SlurmOptions):
        import submitit

        if shutil.which("sbatch") is None:
            raise AAError("no SLURM here: sbatch is not on the PATH; run `aa sweep --launcher slurm` on a machine that submits jobs")
        self.executor = submitit.SlurmExecutor(folder=sweep.root / "jobs")
        self.executor.update_parameters(
            time=options.minutes(),
            gpus_per_node=options.gpus_per_run or None,
            cpus_per_task=options.cpus_per_run,
            partition=options.partition,
            account=options.account,
            additional_parameters=options.additional(),
        )

    def submit(self, job: Job, after: list[str], *args) -> str:
        from submitit.core.utils import FailedJobError

        self.executor.update_parameters(job_name=f"aa {job.name}", dependency=f"afterok:{':'.join(after)}" if after else None)
        try:
            return self.executor.submit(run_job, *args).job_id
        except FailedJobError as exc:  # sbatch refused it: a partition or account that does not exist, a time over the limit
            lines = str(exc).strip().splitlines()
            raise AAError(f"sbatch refused the job '{job.name}': {lines[-1] if lines else exc}; fix the slurm options") from None

    def states(self, ids: list[str]) -> dict[str, State]:
        """What the scheduler says of the jobs it still knows (ended ones for a while, ``MinJobAge``)."""
        if not ids:
            return {}
        cmd = ["squeue", "--noheader", "--states=all", f"--user={getpass.getuser()}", "--format=%i|%T|%r"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AAError(f"cannot ask SLURM for the jobs' states ({exc}); is the cluster up?") from None
        if proc.returncode != 0:
            raise AAError(f"cannot ask SLURM for the jobs' states: {proc.stderr.strip() or proc.returncode}")
        rows = (line.split("|") for line in proc.stdout.splitlines() if line.count("|") == 2)
        return {i: State(state, "" if reason == "None" else reason) for i, state, reason in rows if i in ids}

    def cancel(self, job_id: str) -> None:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=60)

    def finish(self) -> bool:
        return False  # the scheduler runs them


class Local:
    """The same jobs through submitit's local executor: each starts when its dependencies have completed."""

    def __init__(self, sweep: Sweep, options: SlurmOptions):
        import submitit

        self.sweep = sweep
        self.executor = submitit.LocalExecutor(folder=sweep.root / "jobs")
        self.executor.update_parameters(timeout_min=options.minutes(), gpus_per_node=options.gpus_per_run)
        self.started: dict[str, tuple] = {}  # job id -> (submitit's job, its member)

    def submit(self, job: Job, after: list[str], *args) -> str | None:
        for job_id in after:  # SLURM's afterok, here: wait, and start nothing after a failure
            started, member = self.started[job_id]
            started.wait()
            if outcome(self.sweep.run_dir(member) / "sweep.log", job_id) != "completed":
                return None
        submitted = self.executor.submit(run_job, *args)
        self.started[submitted.job_id] = (submitted, job.member)
        return submitted.job_id

    def states(self, ids: list[str]) -> dict[str, State]:
        return {}  # no job outlives the command that started it

    def cancel(self, job_id: str) -> None:
        pass

    def finish(self) -> bool:
        for started, _ in self.started.values():
            started.wait()
        return True


BACKENDS = {"slurm": Slurm, "slurm-local": Local}


def state_of(sweep: Sweep, record: dict | None, live: dict[str, State]) -> State | None:
    """A recorded job's state: the scheduler's while it knows the job, else what the job wrote at its end."""
    if record is None:
        return None
    if record.get("id") is None:
        return State("CANCELLED", "a job it depends on failed")
    end = outcome(sweep.root / record["member"] / "sweep.log", record["id"])
    if record["id"] in live:
        state = live[record["id"]]  # a failed job's own error line says more than SLURM's reason (NonZeroExitCode)
        return State(state.name, end.removeprefix("failed: ")) if state.name == "FAILED" and end and end != "completed" else state
    if end is None:
        return State("ENDED", "it ended without finishing: cancelled, out of time, or lost with its node")
    return State("COMPLETED") if end == "completed" else State("FAILED", end.removeprefix("failed: "))


def launch(sweep: Sweep, say=print) -> dict[str, State | None]:
    """Show the state of the sweep's jobs, and submit what it still needs: new jobs, and the jobs
    that failed, were cancelled or ran out of time, with the jobs after them; return each job's
    state (None: no job, its work was done), after the jobs when the launcher waits for them."""
    options = SlurmOptions.from_dict(sweep.slurm)
    backend = BACKENDS[sweep.launcher](sweep, options)
    members = sweep.members()
    sweep.root.mkdir(parents=True, exist_ok=True)
    with writer_lock(sweep.root):  # one submitter at a time: they share sweep.json
        sweep.save()
        jobs, failed = plan(sweep, members)
        for folder, error in failed.items():
            sweep.status[folder] = f"failed: {error}"
            say(f"[sweep] {folder}: failed ({error})")
        states = job_states(sweep, jobs, backend)
        show(sweep, states, say)
        record_status(sweep, jobs, states, set(failed))  # the last attempts' outcomes, kept while they are tried again
        sweep.save()
        submit(sweep, jobs, states, backend, options, say)
        if backend.finish():  # it waited for them: their outcomes are known
            states = job_states(sweep, jobs, backend)
            record_status(sweep, jobs, states, set(failed))
            sweep.save()
    return states


def show(sweep: Sweep, states: dict[str, State | None], say) -> None:
    """A line for each recorded job that has not completed, then how many jobs are in each state."""
    counts: dict[str, int] = {}
    for name, state in states.items():
        if state is None:
            continue
        counts[state.name] = counts.get(state.name, 0) + 1
        if state.name != "COMPLETED":
            say(f"[sweep] job {sweep.jobs[name]['id'] or '-'} {name}: {state.name}" + (f" ({state.detail})" if state.detail else ""))
    if counts:
        say("[sweep] jobs: " + ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())))


def job_states(sweep: Sweep, jobs: list[Job], backend) -> dict[str, State | None]:
    live = backend.states([r["id"] for r in sweep.jobs.values() if r.get("id")])
    return {job.name: state_of(sweep, sweep.jobs.get(job.name), live) for job in jobs}


def submit(sweep: Sweep, jobs: list[Job], states: dict, backend, options: SlurmOptions, say) -> None:
    """Keep the jobs queued or running after jobs that stand, skip those whose work is done, submit the rest."""
    kept: dict[str, str | None] = {}  # job name -> the id a job after it waits for (None: nothing to wait for)
    processes = options.gpus_per_run if options.gpus_per_run > 1 else 1
    for job in jobs:
        record, state = sweep.jobs.get(job.name), states[job.name]
        if state is not None and state.alive and all(n in kept for n in job.after):
            kept[job.name] = record["id"]
            continue
        if done(sweep, job):
            kept[job.name] = None
            continue
        if state is not None and state.name not in ENDED:
            backend.cancel(record["id"])  # waiting for a job that failed: it would never start
        after = [kept[n] for n in job.after if kept.get(n)]
        job_id = backend.submit(job, after, strip(sweep), job.member.folder, job.until, processes)
        sweep.jobs[job.name] = {"id": job_id, "member": job.member.folder, "until": job.until, "after": job.after}
        sweep.save()
        if job_id is None:
            say(f"[sweep] job - {job.name}: not started, a job it depends on failed")
            continue
        say(f"[sweep] job {job_id} {job.name}: submitted" + (f" after {', '.join(after)}" if after else ""))
        kept[job.name] = job_id


def strip(sweep: Sweep) -> Sweep:
    """What a job needs of the sweep: its settings, not its records."""
    return Sweep(sweep.root, sweep.config, sweep.sets, sweep.grid, sweep.seeds, launcher=sweep.launcher, slurm=sweep.slurm)


def record_status(sweep: Sweep, jobs: list[Job], states: dict[str, State | None], failed: set[str]) -> None:
    """Each member's status: done (its last job's work is in its folder); failed (a job it waits for,
    or its own, failed, was cancelled or ended unfinished: the first such job and its error); or queued."""
    by_name = {job.name: job for job in jobs}
    for job in jobs:
        if job.until is not None or job.member.folder in failed:
            continue
        if done(sweep, job):
            sweep.status[job.member.folder] = "done"
            continue
        chain, name = [], job.name
        while name:  # the member's last job, the one it waits for, and so on back to its generation
            chain.append(by_name[name])
            name = by_name[name].after[0] if by_name[name].after else None
        ended = [j for j in reversed(chain) if states[j.name] and states[j.name].name in ENDED - {"COMPLETED"} and not done(sweep, j)]
        if ended:
            state = states[ended[0].name]
            where = "" if ended[0] is job else f"{ended[0].name}: "
            sweep.status[job.member.folder] = f"failed: {where}{state.detail or state.name}"
        else:
            sweep.status[job.member.folder] = "queued"
