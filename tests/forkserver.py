"""Start ``python -m aa_cli.main`` without paying for its imports each time.

Every ``aa`` command imports torch, torchvision and timm before it does anything: about 6 s of CPU
on this machine's cores, more than most tests' own work, and the suite starts a couple of hundred
of them. A zygote process imports those three once; each ``aa`` call is then a fork of it that
sets its environment, path, working folder and standard streams as a fresh interpreter would, and
runs ``aa_cli.main`` as ``python -m`` does (``runpy``, ``__main__``). It exits as a process does
(thread joins, ``atexit``, buffered streams, the exit code of a ``SystemExit`` or a traceback), so
exit codes, files and logs are the command's own.

What a fork cannot give, a fresh interpreter still does (``conftest.aa`` decides): variables that
those three imports read (Hugging Face's, threads', CUDA's) and a ``PYTHONPATH`` that shadows
installed packages. Tests that kill processes or launch through ``accelerate``/SLURM start real
processes themselves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading

# The zygote: reads one request a line, forks, answers the child's pid and then its wait status.
ZYGOTE = r"""
import atexit, gc, json, os, runpy, sys, threading
import torch, torchvision, timm  # what every aa command imports first


def exit_code(exc):
    # what the interpreter makes of a SystemExit or an uncaught exception
    if not isinstance(exc, SystemExit):
        sys.excepthook(type(exc), exc, exc.__traceback__)
        return 1
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def run(request):
    os.setpgid(0, 0)  # its own group, as the caller's kill on a timeout needs
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.getcwd(), *extra, *base_path]  # what python -m with that PYTHONPATH has
    for fd, name in ((0, os.devnull), (1, request["stdout"]), (2, request["stderr"])):
        opened = os.open(name, os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_TRUNC)
        os.dup2(opened, fd)
        os.close(opened)
    sys.argv = ["-m", *request["args"]]
    try:
        runpy.run_module("aa_cli.main", run_name="__main__", alter_sys=True)
        code = 0
    except BaseException as exc:
        code = exit_code(exc)
    # The interpreter's exit, less the teardown of every module: that teardown touches each object
    # the zygote imported, copying its pages (about 2 s here), and has no effect a caller can see.
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


base_path = sys.path[1:]  # without the '' that -c puts first
gc.freeze()  # the imported objects stay out of the children's collections (fewer copied pages)
answers = os.fdopen(os.dup(1), "w", buffering=1)
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        answers.close()
        run(request)
    answers.write(f"{pid}\n")
    answers.write(f"{os.waitpid(pid, 0)[1]}\n")
"""

# variables read when torch, torchvision or timm (with huggingface_hub) are imported
READ_AT_IMPORT = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH", "CUDA", "OMP_", "MKL_", "PYTORCH_")


class Zygote:
    """One per test process; ``run`` is used by one thread at a time (else ``None``: start a process)."""

    def __init__(self, base_env: dict[str, str]) -> None:
        self.base_env = base_env
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None

    def can_run(self, env: dict[str, str]) -> bool:
        """A fork behaves as a fresh process when nothing read at import differs from the zygote's."""
        changed = {k for k in env.keys() | self.base_env.keys() if env.get(k) != self.base_env.get(k)}
        return not any(k.startswith(READ_AT_IMPORT) for k in changed) and not any(
            os.path.isdir(os.path.join(p, name)) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p
            for name in ("torch", "torchvision", "timm", "huggingface_hub")
        )

    def run(self, args: list[str], env: dict[str, str], cwd: str | None, timeout: float) -> subprocess.CompletedProcess | None:
        if not self.can_run(env) or not self.lock.acquire(blocking=False):
            return None
        try:
            return self._run(args, env, cwd or os.getcwd(), timeout)
        finally:
            self.lock.release()

    def _run(self, args, env, cwd, timeout):
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env={**self.base_env, "PYTHONPATH": ""}, start_new_session=True,
            )  # fmt: skip
        cmd = [sys.executable, "-m", "aa_cli.main", *args]  # what the fork stands for, as errors name it
        with tempfile.TemporaryDirectory(prefix="aa-fork-") as folder:
            streams = {name: os.path.join(folder, name) for name in ("stdout", "stderr")}
            for path in streams.values():
                open(path, "w").close()
            self.proc.stdin.write(json.dumps({"args": args, "env": env, "cwd": str(cwd), **streams}) + "\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
            if not answer:
                raise RuntimeError(f"the aa zygote exited with {self.proc.wait()}: run the test with -n 0 -s to see why")
            pid = int(answer)
            status = self._wait(pid, timeout, cmd)
            read = {name: open(path, errors="replace").read() for name, path in streams.items()}
        return subprocess.CompletedProcess(cmd, os.waitstatus_to_exitcode(status), read["stdout"], read["stderr"])

    def _wait(self, pid: int, timeout: float, cmd: list[str]) -> int:
        answer: list[str] = []
        reader = threading.Thread(target=lambda: answer.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not answer:
            os.killpg(pid, signal.SIGKILL)
            reader.join()
            raise subprocess.TimeoutExpired(cmd, timeout)
        return int(answer[0])
