"""One writer per output folder, interrupts that stop every worker, and failures printed where the user looks.

All on real processes: `crossrep` commands in subprocesses, submitit's local workers, real signals.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from conftest import job_dict
from crossrep.config import load_job
from crossrep.launch import launcher
from crossrep.lock import FOLDER_LOCK, Lock, LockedError, folder_lock, shard_lock
from crossrep.store import ShardKey
from helpers import tree_bytes

pytestmark = pytest.mark.e2e

# Slow enough to be caught mid-run: one sentence a batch, one a chunk, two workers
SETTINGS = {"extract.chunk_size": 1, "extract.batch_size": 1, "data.languages": ["eng", "deu"],
            "executor.workers": 2}


def crossrep(*args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "crossrep", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def start(*args) -> subprocess.Popen:
    """`crossrep ARGS` in its own process group (as a terminal runs it), output to files."""
    return subprocess.Popen([sys.executable, "-m", "crossrep", *map(str, args)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def write_job(tmp_path, name, demo_root, tiny, **changes) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job_dict(tmp_path / name, demo_root, tiny, **{**SETTINGS, **changes})))
    return path


def chunks_done(out: Path) -> int:
    total = 0
    for meta in (out / "activations.zarr").glob("*/*/*/zarr.json"):
        try:
            total += len(json.loads(meta.read_text())["attributes"]["chunks_done"])
        except (OSError, ValueError, KeyError):
            pass
    return total


def wait_for(predicate, timeout=300, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def workers_of(out: Path) -> list[int]:
    """Pids of processes running submitit tasks for this output folder."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "submitit" in cmd and str(out) in cmd:
                pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="module")
def reference(tmp_path_factory, demo_root, tiny):
    tmp = tmp_path_factory.mktemp("writers-ref")
    path = write_job(tmp, "ref", demo_root, tiny, **{"executor.kind": "debug"})
    launcher(load_job(path)).run()
    return tmp / "ref"


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupt_stops_every_worker_then_rerun_is_identical(how, reference, tmp_path, demo_root, tiny):
    path = write_job(tmp_path, "job", demo_root, tiny)
    out = tmp_path / "job"
    proc = start("run", path)
    wait_for(lambda: chunks_done(out) >= 3, what="three chunks")
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # a terminal sends Ctrl-C to the whole foreground group
    else:
        proc.send_signal(signal.SIGTERM)  # `kill PID` reaches the command only
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted; every worker has stopped; run the same command again to resume" in err
    left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:300] for pid in workers_of(out)}
    assert left == {}, "a worker outlived the command"
    snapshot = tree_bytes(out / "activations.zarr")
    time.sleep(1.5)
    assert tree_bytes(out / "activations.zarr") == snapshot, "something still writes after the command exited"
    assert not (out / FOLDER_LOCK).exists(), "the lock outlived the command"
    status = crossrep("status", path)
    assert "failed" not in status.stdout, status.stdout  # nothing that did not fail is marked failed
    rerun = crossrep("run", path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert tree_bytes(out / "activations.zarr") == tree_bytes(reference / "activations.zarr")


def test_second_writer_is_refused_naming_the_first(reference, tmp_path, demo_root, tiny):
    path = write_job(tmp_path, "job", demo_root, tiny)
    out = tmp_path / "job"
    first = start("run", path)
    wait_for(lambda: chunks_done(out) >= 1, what="the first run to write")
    second, third = start("run", path), start("reduce", path)  # both while the first still holds the folder
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    for proc in (second, third):
        proc.stderr = proc.communicate(timeout=120)[1]
        assert proc.returncode == 2
        assert re.search(rf"output folder {re.escape(str(out))} is in use by `crossrep run demo --executor local` "
                         rf"\(pid {first.pid} on {re.escape(socket.gethostname())}, since [\d\-T:]+\)",
                         proc.stderr), proc.stderr
    assert tree_bytes(out / "activations.zarr") == tree_bytes(reference / "activations.zarr")


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / FOLDER_LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid,
                                                    "command": "crossrep run old", "started": "2026-01-01T00:00:00",
                                                    "token": "x", "slurm_jobs": []}))
    with folder_lock(tmp_path, "crossrep run new") as lock:
        assert lock.read().command == "crossrep run new" and lock.read().pid == os.getpid()
    assert not (tmp_path / FOLDER_LOCK).exists()


def test_live_lock_elsewhere_is_refused_and_shard_locks_never_nest(tmp_path):
    other = {"host": "login2.cluster", "pid": 4242, "command": "crossrep run paper", "started": "2026-01-01T00:00:00",
             "token": "y", "slurm_jobs": []}
    (tmp_path / FOLDER_LOCK).write_text(json.dumps(other))
    with pytest.raises(LockedError, match=r"in use by `crossrep run paper` \(pid 4242 on login2.cluster, since "
                                          r"2026-01-01T00:00:00\) .*if that process is gone, delete"):
        folder_lock(tmp_path, "crossrep run paper")
    key = ShardKey("m", "text", "eng")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path = tmp_path / ".locks" / "m+text+eng.lock"
        path.parent.mkdir()
        path.write_text(json.dumps({**other, "host": socket.gethostname(), "pid": sleeper.pid, "token": "z"}))
        os.environ["CROSSREP_LOCK"] = "z"  # the same token as the holder: a folder lock would count it as ours
        with pytest.raises(LockedError, match=rf"shard m/text/eng is in use by .*pid {sleeper.pid}"):
            shard_lock(tmp_path, key)
    finally:
        os.environ.pop("CROSSREP_LOCK", None)
        sleeper.kill()
        sleeper.wait()
    with shard_lock(tmp_path, key):  # its holder is dead now: taken over
        assert Lock(path, "").read().pid == os.getpid()
    assert not path.exists()


@pytest.fixture
def bad_wav_data(tmp_path, demo_root):
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    from crossrep.data.fleurs import FleursLanguage

    deu = FleursLanguage(root, "deu", "test", 0)
    bad = deu.dir / "audio" / "test" / deu.sentences[min(deu.sentences)].file
    data, _ = sf.read(bad)  # a sound header (planning passes it) over samples that are not numbers
    sf.write(bad, np.full(len(data), np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    return root, bad


@pytest.mark.parametrize("executor", ["debug", "local"])
def test_a_failed_shard_prints_its_own_message_and_log(executor, bad_wav_data, tmp_path, tiny):
    root, bad = bad_wav_data
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job_dict(tmp_path / "job", root, tiny, **{
        "data.languages": ["eng", "deu"], "executor.kind": executor})))
    began = time.time()
    proc = crossrep("run", path, timeout=300)
    took = time.time() - began
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "(Pdb)" not in proc.stdout + proc.stderr
    assert re.search(r"crossrep: error: extract: 1 of 4 shards failed:\n  shard 3 seamless/speech/deu: "
                     rf"{re.escape(str(bad))}: samples contain NaN or infinity", proc.stderr), proc.stderr[-3000:]
    log = re.search(r"\n    log: (\S+)", proc.stderr).group(1)
    if executor == "local":
        assert Path(log).is_file() and str(bad) in Path(log).read_text()
    assert "fix the cause, then run the same command again" in proc.stderr
    print(f"{executor}: failed in {took:.1f} s")
    assert took < 120


def test_refused_job_changes_no_file_and_names_every_key(reference, tmp_path, demo_root, tiny):
    out = tmp_path / "ref"
    shutil.copytree(reference, out)
    path = write_job(tmp_path, "ref", demo_root, tiny, **{"executor.kind": "debug"})
    before = tree_bytes(out)
    proc = crossrep("run", path, "--set", "data.crossmodal_sentences=15", "--set", "extract.batch_size=2")
    assert proc.returncode == 2
    assert "made by a different job; nothing was changed. It differs in:" in proc.stderr
    assert "data.crossmodal_sentences: stored 16, requested 15" in proc.stderr
    assert "extract.batch_size: stored 1, requested 2" in proc.stderr
    assert tree_bytes(out) == before
    for command in ("reduce", "aggregate", "extract"):
        proc = crossrep(command, path, "--set", "extract.threads=2")
        assert proc.returncode == 2, (command, proc.stderr)
        assert "extract.threads: stored 1, requested 2" in proc.stderr, (command, proc.stderr)
        assert tree_bytes(out) == before, command


def test_figures_folder_holds_exactly_the_current_jobs_figures(reference, tmp_path, demo_root, tiny):
    out = tmp_path / "ref"
    shutil.copytree(reference, out)
    path = write_job(tmp_path, "ref", demo_root, tiny, **{"executor.kind": "debug",
                                                           "similarity.measures": ["svcca", "cka"]})
    assert crossrep("run", path).returncode == 0
    assert (out / "figures" / "fig2_crossmodal_cka.png").is_file()
    (out / "figures" / "notes.txt").write_text("mine")
    proc = crossrep("run", path, "--set", "similarity.measures=[svcca]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert not [n for n in names if "_cka" in n], names
    assert "fig2_crossmodal.png" in names and "notes.txt" in names
    stale = crossrep("aggregate", path, "--set", "similarity.measures=[svcca,cka]")
    assert stale.returncode == 2
    assert "similarity.measures: stored ['svcca'], requested ['svcca', 'cka']" in stale.stderr


def test_full_disk_fails_in_one_line_then_resumes_identically(reference, tmp_path, demo_root, tiny):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    pages = {True: 0, False: 0}  # tmpfs counts whole 4 KiB pages: metadata, chunk data
    for p in (reference / "activations.zarr").rglob("*"):
        if p.is_file():
            pages[p.name == "zarr.json"] += -(-p.stat().st_size // 4096)
    size = 4096 * (pages[True] + 16 + pages[False] // 2)  # the hierarchy, job.yaml and half the chunks fit
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump(job_dict(mnt / "job", demo_root, tiny, **{**SETTINGS,
                                                                                   "executor.kind": "debug"})))
        proc = crossrep("run", path)
        assert proc.returncode == 2, proc.stderr[-3000:]
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("crossrep: error:")]
        assert len(errors) == 1, proc.stderr[-3000:]
        assert "no space left on device" in proc.stderr and str(mnt) in proc.stderr, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        assert chunks_done(mnt / "job") > 0, "the disk filled before any chunk was written"
        subprocess.run(["mount", "-o", f"remount,size={size * 8}", str(mnt)], check=True)
        again = crossrep("run", path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert tree_bytes(mnt / "job" / "activations.zarr") == tree_bytes(reference / "activations.zarr")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
