"""The Slurm path on a real single-node cluster (slurm/dev-cluster), started here when it is not running.

Skipped, with the reason, where the cluster cannot be started (no root, no apt-get).
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr
import yaml

from conftest import REPO, job_dict
from crossrep.config import load_job
from crossrep.launch import launcher
from crossrep.launch.slurm import max_array_size, sacct_states
from crossrep.plan import shards
from crossrep.store import ActivationStore
from helpers import tree_bytes

pytestmark = pytest.mark.slurm

SCRIPTS = REPO / "slurm" / "dev-cluster"
SETTINGS = {"extract.chunk_size": 2, "extract.batch_size": 1, "extract.feature_workers": 1}  # as real jobs: a worker


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the development Slurm cluster needs root: it starts munge, MariaDB, slurmdbd, slurmctld, slurmd")
    inst = subprocess.run(["bash", str(SCRIPTS / "install.sh")], capture_output=True, text=True)
    if inst.returncode == 3:
        pytest.skip(inst.stderr.strip())
    assert inst.returncode == 0, inst.stderr
    env = dict(os.environ, CROSSREP_SLURM_MAX_ARRAY_SIZE="5")
    start = subprocess.run(["bash", str(SCRIPTS / "start.sh")], capture_output=True, text=True, env=env, timeout=300)
    assert start.returncode == 0, start.stderr
    was_running = "# already running" in start.stdout
    conf = re.search(r"export SLURM_CONF=(\S+)", start.stdout).group(1)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if not was_running:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh")], capture_output=True)
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


@pytest.fixture(scope="module")
def reference(tmp_path_factory, demo_root, tiny):
    """The same job run locally in process: what every Slurm run must reproduce byte for byte."""
    tmp = tmp_path_factory.mktemp("slurm-ref")
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job_dict(tmp / "ref", demo_root, tiny, **SETTINGS, **{"executor.kind": "debug"})))
    job = load_job(path)
    launcher(job).run()
    return job.out


@pytest.fixture(scope="module")
def slow(tmp_path_factory, demo_root):
    """A larger random model and two languages: speech shards take long enough (~10 s) to be interrupted."""
    from crossrep.models.seamless import build_tiny

    tmp = tmp_path_factory.mktemp("slurm-slow")
    ckpt = build_tiny(tmp / "ckpt", hidden=512, layers=12)
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job_dict(tmp / "ref", demo_root, ckpt, **SETTINGS, **SLOW,
                                            **{"executor.kind": "debug"})))
    job = load_job(path)
    launcher(job).run()
    return ckpt, job.out


SLOW = {"data.languages": ["eng", "deu"]}


def slurm_job(tmp_path, root, tiny, name="job", profile="dev", **changes) -> Path:
    d = job_dict(tmp_path / name, root, tiny, **SETTINGS, **changes)
    d["executor"].update(kind="slurm", cluster=str(profile))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def crossrep(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "crossrep", *map(str, args)], capture_output=True, text=True,
                          timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def wait_for(predicate, timeout=300, interval=0.2, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def chunks_done(out: Path, key: str) -> list[int]:
    try:
        return json.loads((out / "activations.zarr" / key / "zarr.json").read_text())["attributes"]["chunks_done"]
    except (OSError, ValueError, KeyError):
        return []


def n_chunks(out: Path, key: str) -> int:
    return json.loads((out / "activations.zarr" / key / "zarr.json").read_text())["attributes"]["n_chunks"]


def chunk_files(out: Path, key: str, chunks) -> dict:
    group = out / "activations.zarr" / key
    return {p: p.stat().st_mtime_ns for c in chunks for p in group.glob(f"*/c/{c}/0")}


def sacct_rows(ids: list[str]) -> list[dict]:
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-o", "JobID,JobName,State,Start,End", "-j", ",".join(ids)],
                         capture_output=True, text=True).stdout
    return [dict(zip(("id", "name", "state", "start", "end"), line.split("|"))) for line in out.splitlines()]


def submission(out: Path) -> dict:
    return json.loads((out / "slurm.json").read_text())["submissions"][-1]


def idle(out: Path) -> bool:
    sub = submission(out)
    ids = [t["id"] for t in sub["extract"]] + [sub[s]["id"] for s in ("reduce", "aggregate") if sub[s]]
    states = sacct_states(ids)
    return bool(states) and not any(states.get(i, "PENDING") in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING")
                                    for i in ids)


def assert_same_results(out: Path, ref: Path, similarity: bool = True) -> None:
    assert tree_bytes(out / "activations.zarr") == tree_bytes(ref / "activations.zarr")
    if not similarity:
        return
    a = xr.open_zarr(out / "similarity.zarr", group="seamless", consolidated=False).load()
    b = xr.open_zarr(ref / "similarity.zarr", group="seamless", consolidated=False).load()
    xr.testing.assert_identical(a, b)


def test_dry_run_matches_the_recorded_sbatch_scripts(monkeypatch):
    """On a laptop: no Slurm command on PATH (whatever an earlier test installed)."""
    path = [d for d in os.environ["PATH"].split(os.pathsep)
            if not any(Path(d, tool).exists() for tool in ("srun", "sbatch", "scontrol", "sacct"))]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    assert shutil.which("srun") is None
    monkeypatch.setenv("FLEURS_ROOT", "/data/fleurs")
    monkeypatch.setenv("CROSSREP_OUT", "/work/ws")
    monkeypatch.setenv("SONAR_DIR", "/sonar")
    monkeypatch.setenv("SALMONN_DIR", "/salmonn")
    proc = crossrep("run", "paper", "--executor", "slurm", "--cluster", "horeka", "--dry-run")
    text = proc.stdout.replace(sys.executable, "PYTHON")
    text = re.sub(r"\S*/python3?(?= -u -m submitit)", "PYTHON", text)
    assert text == (REPO / "tests" / "data" / "horeka-paper.sbatch").read_text()


def test_demo_job_through_slurm_equals_local_run(cluster, reference, tmp_path, demo_root, tiny):
    path = slurm_job(tmp_path, demo_root, tiny)
    proc = crossrep("run", path, "--wait")
    assert "extract: array job" in proc.stderr and "reduce: job" in proc.stderr
    out = tmp_path / "job"
    assert_same_results(out, reference)
    sub = submission(out)
    limit = max_array_size()
    arrays = sorted({t["id"].split("_")[0] for t in sub["extract"]})
    assert len(sub["extract"]) == 8 and sorted(i for t in sub["extract"] for i in t["shards"]) == list(range(8))
    assert len(arrays) == math.ceil(8 / limit)
    ids = arrays + [sub["reduce"]["id"], sub["aggregate"]["id"]]
    # --wait returns once the last stage's result is written; its Slurm job ends a moment later
    wait_for(lambda: all(r["state"] not in ("PENDING", "RUNNING", "COMPLETING") for r in sacct_rows(ids)),
             timeout=120, what="the Slurm jobs to end")
    rows = {r["id"]: r for r in sacct_rows(ids)}
    tasks = [rows[t["id"]] for t in sub["extract"]]
    assert all(r["state"] == "COMPLETED" and r["name"] == "crossrep-demo-extract" for r in tasks)
    assert rows[sub["reduce"]["id"]]["state"] == rows[sub["aggregate"]["id"]]["state"] == "COMPLETED"
    assert rows[sub["reduce"]["id"]]["start"] >= max(r["end"] for r in tasks)
    assert rows[sub["aggregate"]["id"]]["start"] >= rows[sub["reduce"]["id"]]["end"]
    script = next((out / "logs" / sub["reduce"]["id"]).glob("*_submission.sh")).read_text()
    assert f"#SBATCH --dependency=afterok:{':'.join(arrays)}" in script
    script = next((out / "logs" / sub["aggregate"]["id"]).glob("*_submission.sh")).read_text()
    assert f"#SBATCH --dependency=afterok:{sub['reduce']['id']}" in script


def test_packed_allocation_runs_one_shard_per_gpu(cluster, reference, tmp_path, demo_root, tiny):
    profile = yaml.safe_load((REPO / "slurm" / "dev.yaml").read_text())
    profile["extract"]["shards_per_node"] = 2
    (tmp_path / "packed.yaml").write_text(yaml.safe_dump(profile))
    path = slurm_job(tmp_path, demo_root, tiny, profile=tmp_path / "packed.yaml")
    crossrep("run", path, "--wait", "--stages", "extract")  # the downstream jobs: test_demo_job_through_slurm...
    sub = submission(tmp_path / "job")
    assert [len(t["shards"]) for t in sub["extract"]] == [2, 2, 2, 2]
    array = sub["extract"][0]["id"].split("_")[0]
    script = (tmp_path / "job" / "logs" / array / f"{array}_submission.sh").read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "#SBATCH --gpus-per-node=2" in script
    assert_same_results(tmp_path / "job", reference, similarity=False)


def test_shards_per_task_share_one_model_load(cluster, reference, tmp_path, demo_root, tiny):
    """2 tasks (GPUs) per allocation x 2 shards per task: 8 shards in 2 array tasks; each task loads the model
    once for its two shards (the load time is charged to the first of them)."""
    profile = yaml.safe_load((REPO / "slurm" / "dev.yaml").read_text())
    profile["extract"]["shards_per_node"] = 2
    (tmp_path / "packed.yaml").write_text(yaml.safe_dump(profile))
    path = slurm_job(tmp_path, demo_root, tiny, profile=tmp_path / "packed.yaml", **{"extract.shards_per_task": 2})
    crossrep("run", path, "--wait", "--stages", "extract")
    sub = submission(tmp_path / "job")
    assert [len(t["shards"]) for t in sub["extract"]] == [4, 4]
    store = ActivationStore(tmp_path / "job")
    loads = [store.state(k).timing["seconds"]["load"] > 0 for k in shards(load_job(path))]
    assert sum(loads) == 4 and len(loads) == 8
    assert_same_results(tmp_path / "job", reference, similarity=False)


def test_dry_run_counts_units_per_task(monkeypatch):
    for name, value in (("FLEURS_ROOT", "/data/fleurs"), ("CROSSREP_OUT", "/work/ws"), ("SONAR_DIR", "/sonar"),
                        ("SALMONN_DIR", "/salmonn")):
        monkeypatch.setenv(name, value)
    text = crossrep("run", "paper", "--executor", "slurm", "--cluster", "horeka", "--dry-run",
                    "--set", "extract.shards_per_task=3").stdout
    # 180 shards, SALMONN's 60 in 30 joint units: 150 units / (4 GPUs x 3 units) = 13 allocations
    assert "# --- extract: 13 array tasks for 180 shards (150 units" in text and "3 units per task" in text
    assert "#SBATCH --array=0-12%13" in text  # parallelism capped at the array size


def submit_and_catch(tmp_path, root, ckpt, index: int, key: str):
    """Submit the slow job and return once shard `index` (`key`) has two chunks done: (path, out, task)."""
    path = slurm_job(tmp_path, root, ckpt, **SLOW)
    out = tmp_path / "job"
    crossrep("run", path)
    task = next(t["id"] for t in submission(out)["extract"] if t["shards"] == [index])
    wait_for(lambda: len(chunks_done(out, key)) >= 2, interval=0.05, what=f"two chunks of {key}")
    return path, out, task


def test_scancel_then_resume_completes_without_recomputing(cluster, slow, tmp_path, demo_root):
    ckpt, reference = slow
    key = "seamless/speech/eng"
    path, out, task = submit_and_catch(tmp_path, demo_root, ckpt, 2, key)
    # submitit ignores SIGTERM: the task runs on for KillWait (2 s on the dev cluster), then is killed
    subprocess.run(["scancel", task], check=True)
    wait_for(lambda: idle(out), what="the submitted jobs to end")
    state = sacct_states([task])[task]
    assert state == "CANCELLED"
    done, total = chunks_done(out, key), n_chunks(out, key)
    assert 2 <= len(done) < total
    before = chunk_files(out, key, done)
    status = crossrep("status", path, check=False)
    assert status.returncode == 1
    assert re.search(rf"2  {key}\s+partial\s+{len(done)}/{total}\s+{task} {state}", status.stdout), status.stdout
    assert sacct_states([submission(out)["reduce"]["id"]]).get(submission(out)["reduce"]["id"]) != "COMPLETED"
    proc = crossrep("resume", path, "--wait")
    assert "1 of 4 shards to extract" in proc.stderr
    assert chunk_files(out, key, done) == before, "complete chunks were recomputed"
    assert_same_results(out, reference)


def test_preemption_signal_requeues_and_continues(cluster, slow, tmp_path, demo_root):
    ckpt, reference = slow
    key = "seamless/speech/deu"
    path, out, task = submit_and_catch(tmp_path, demo_root, ckpt, 3, key)
    subprocess.run(["scancel", "--signal=USR2", task], check=True)
    wait_for(lambda: "Restarts=1" in subprocess.run(["scontrol", "show", "job", task], capture_output=True,
                                                    text=True).stdout, what="the task to be requeued")
    wait_for(lambda: "JobState=PENDING" in subprocess.run(["scontrol", "show", "job", task], capture_output=True,
                                                          text=True).stdout, what="the requeued task to be pending")
    done = chunks_done(out, key)
    assert len(done) < n_chunks(out, key), "the task finished before the signal reached it"
    before = chunk_files(out, key, done)
    # Skip Slurm's requeue delay, but not within the second of the requeue: slurmd refuses a job credential
    # issued in the same second as the revocation of the old one ("Job credential revoked").
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], capture_output=True)
    wait_for(lambda: idle(out), timeout=600, what="the requeued task and the downstream jobs")
    assert any(r["state"] == "REQUEUED" for r in sacct_rows([task]))
    states = sacct_states([task, submission(out)["aggregate"]["id"]])
    assert set(states.values()) == {"COMPLETED"}
    assert chunk_files(out, key, done) == before, "chunks done before the signal were recomputed"
    assert_same_results(out, reference)


def test_bad_input_fails_its_shard_only(cluster, tmp_path, demo_root, tiny):
    """A clip whose header is sound (so planning passes it) but whose samples are NaN fails its shard only."""
    import numpy as np
    import soundfile as sf

    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    from crossrep.data.fleurs import FleursLanguage

    deu = FleursLanguage(root, "deu", "test", 0)
    bad = deu.dir / "audio" / "test" / deu.sentences[min(deu.sentences)].file
    sf.write(bad, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    path = slurm_job(tmp_path, root, tiny)
    proc = crossrep("run", path, "--wait", check=False)
    assert proc.returncode != 0
    status = crossrep("status", path, check=False).stdout
    assert "7 complete, 1 failed" in status
    assert re.search(r"5  seamless/speech/deu\s+failed", status)
    assert f"error: {bad}: samples contain NaN or infinity" in status
    refused = crossrep("reduce", path, check=False)
    assert refused.returncode == 2
    assert "1 shards are not complete: 5:seamless/speech/deu (failed)" in refused.stderr
    sub = submission(tmp_path / "job")
    assert sacct_states([sub["reduce"]["id"]]).get(sub["reduce"]["id"]) != "COMPLETED"


def test_plain_sbatch_templates(cluster, reference, tmp_path, demo_root, tiny):
    path = slurm_job(tmp_path, demo_root, tiny)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", PARALLEL="4")
    options = ["--partition=debug", "--cpus-per-task=1", "--mem=2G"]  # the templates ask for more than this node has
    proc = subprocess.run(["bash", str(REPO / "slurm" / "sbatch" / "submit.sh"), str(path), *options],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    arrays = re.findall(r"extract: array job (\d+)", proc.stdout)
    assert len(arrays) == math.ceil(8 / max_array_size())
    agg = re.search(r"aggregate: job (\d+)", proc.stdout).group(1)
    wait_for(lambda: sacct_states([agg]).get(agg) not in (None, "PENDING", "RUNNING"), timeout=300,
             what="the aggregation job")
    assert sacct_states([agg])[agg] == "COMPLETED", (tmp_path / f"crossrep-aggregate-{agg}.log").read_text()
    assert_same_results(tmp_path / "job", reference)


def test_reduction_on_dask_workers_submitted_to_slurm(cluster, reference):
    from crossrep.results import model_dataset
    from crossrep.store import ActivationStore

    job = load_job(reference / "job.yaml", ["similarity.scheduler=slurm", "similarity.workers=1",
                                             "executor.kind=slurm", "executor.cluster=dev"])
    ds = model_dataset(job, ActivationStore(reference), "seamless")
    ref = xr.open_zarr(reference / "similarity.zarr", group="seamless", consolidated=False).load()
    xr.testing.assert_identical(ds, ref)
    logs = list((reference / "logs" / "dask").glob("*.err"))
    assert logs, "the Dask workers ran as Slurm jobs and logged under <out>/logs/dask"
