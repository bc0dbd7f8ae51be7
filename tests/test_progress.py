"""Progress on a terminal: the reduce and aggregate stages of a local run draw bars on the user's terminal
(through the stage's report, crossrep.progress) and print one line per stage with its time; their logs keep
the lines and no bars; --quiet draws none."""

import fcntl
import os
import pty
import struct
import termios
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def on_a_terminal(*args: str, cwd: Path) -> tuple[int, str]:
    """Run `crossrep ARGS` with stdout and stderr on a pseudo-terminal; its exit status and everything shown."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 rows, 120 columns
    proc = subprocess.Popen([sys.executable, "-m", "crossrep", *args], stdout=slave, stderr=slave,
                            stdin=subprocess.DEVNULL, cwd=cwd)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=600), b"".join(chunks).decode(errors="replace")


def test_reduce_and_aggregate_show_progress_on_a_terminal_and_stay_quiet_in_logs(reference_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference_run.out, run)  # a run folder is relocatable
    code, shown = on_a_terminal("run", str(run), "--executor", "local", "--stages", "reduce,aggregate", cwd=tmp_path)
    assert code == 0, shown[-3000:]
    assert "crossrep: reduce seamless:" in shown and "task/s" in shown  # the relayed bar
    assert "crossrep: aggregate:" in shown and "step" in shown
    for line in ("crossrep: verify activations.zarr done in", "crossrep: aggregate: figures done in",
                 "crossrep: aggregate: t-SNE done in", "crossrep: aggregate: report done in"):
        assert line in shown, line
    assert "tasks done in" in shown
    logs = "".join(p.read_text() for p in (run / "logs").rglob("*_log.err"))
    assert "crossrep: aggregate: findings done in" in logs and "tasks done in" in logs
    assert "task/s" not in logs and "%|" not in logs  # no bars where nobody watches
    code, shown = on_a_terminal("status", str(run), "--verify", "--quiet", cwd=tmp_path)
    assert code == 0 and "0 damaged" in shown and "%|" not in shown
    code, shown = on_a_terminal("status", str(run), "--verify", cwd=tmp_path)
    assert code == 0 and "crossrep: verify" in shown and "shard" in shown
