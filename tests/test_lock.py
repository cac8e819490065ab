"""One writer per run folder: a second command ends in one line naming the holder; a killed holder's lock is recovered."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from conftest import aa

from aa_core.lock import writer_lock


def test_a_second_command_on_a_folder_in_use_is_one_line_naming_the_holder(tmp_path, tiny_config):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--out", out, "--until", "prompts", check=0)
    with writer_lock(out):
        for args in (["run", "--config", tiny_config, "--out", out, "--until", "prompts"], ["generate", out]):
            proc = aa(*args, check=1)
            assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
            holder = f"another aa process (pid {os.getpid()} on {socket.gethostname()}"
            assert proc.stderr.startswith(f"error: run folder {out} is in use by {holder}")
            assert proc.stderr.rstrip().endswith("; wait for it to end, or stop it")
        assert not (out / "source").exists()  # the second command did nothing
    aa("run", "--config", tiny_config, "--out", out, "--until", "prompts", check=0)  # free again


def test_the_lock_of_a_killed_process_is_recovered(tmp_path, tiny_config):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--out", out, "--until", "prompts", check=0)
    code = "import time\nfrom aa_core.lock import writer_lock\n"
    code += f"with writer_lock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(120)\n"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    aa("run", "--config", tiny_config, "--out", out, "--until", "prompts", check=1)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    aa("run", "--config", tiny_config, "--out", out, "--until", "prompts", check=0)
