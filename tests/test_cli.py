"""The command line: help that teaches, status per shard, the reduction refusing an incomplete store."""

import subprocess
import sys

import pytest

from crossrep.cli import main
from crossrep.config import load_job
from crossrep.errors import StoreError
from crossrep.plan import create_store, shards
from crossrep.reduce import run as reduce_run
from crossrep.store import ActivationStore


def test_help_teaches():
    out = subprocess.run([sys.executable, "-m", "crossrep", "--help"], capture_output=True, text=True).stdout
    for word in ("run", "extract", "reduce", "aggregate", "status", "demo-data", "examples:", "--set",
                 "activations.zarr"):
        assert word in out
    run_help = subprocess.run([sys.executable, "-m", "crossrep", "run", "--help"], capture_output=True,
                              text=True).stdout
    assert "--executor" in run_help and "resumes" in run_help


def test_status_and_reduce_refusal(make_job, capsys):
    path = make_job("st", **{"data.languages": ["eng", "deu"]})
    job = load_job(path)
    assert main(["status", str(path)]) == 1
    assert "not created yet; all 4 shards missing" in capsys.readouterr().out
    store = create_store(job, progress=False)
    table = shards(job)
    import numpy as np

    plan = store.model("seamless")
    chunk = {p.name: np.zeros((8, p.width), np.float32) for p in plan.points["text"]}
    store.write_chunk(table[1], 0, chunk)
    store.mark(table[2], error="de_de/audio/test/x.wav: unreadable audio")
    store.mark(table[3], complete=True)
    assert main(["status", str(path), "--all"]) == 1
    out = capsys.readouterr().out
    assert "1 complete, 1 partial, 1 failed, 1 missing" in out
    assert "seamless/text/deu" in out and "partial   1/2" in out
    assert "failed    0/2" in out and "error: de_de/audio/test/x.wav: unreadable audio" in out
    with pytest.raises(StoreError, match=r"3 shards are not complete: 0:seamless/text/eng \(missing\), "
                                         r"1:seamless/text/deu \(partial\), 2:seamless/speech/eng \(failed\)"):
        reduce_run(job)
    assert main(["reduce", str(path)]) == 2
    assert "crossrep: error:" in capsys.readouterr().err


def test_demo_data_command(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "d"), "--languages", "eng,lao", "--sentences", "4"]) == 0
    readme = (tmp_path / "d" / "README.md").read_text()
    assert "Synthetic audio (not speech)** for: lao" in readme
    assert (tmp_path / "d" / "en_us" / "test.tsv").is_file() and (tmp_path / "d" / "lo_la" / "audio" / "test").is_dir()
    assert main(["demo-data", str(tmp_path / "e"), "--languages", "eng,xx"]) == 2
    assert "unknown language 'xx'" in capsys.readouterr().err


def test_offline_tasks_name_the_missing_model_and_prefetch_skips_local(make_job, monkeypatch, capsys):
    path = make_job("off", **{"data.languages": ["eng", "deu"]})
    assert main(["prefetch", str(path)]) == 0
    assert "nothing to download" in capsys.readouterr().out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["plan", str(path), "--set", "models.0.checkpoint=facebook/seamless-m4t-v2-large"]) == 2
    err = capsys.readouterr().err
    assert "'facebook/seamless-m4t-v2-large' is not in the local Hugging Face cache" in err
    assert "run `crossrep prefetch JOB` on a login node" in err
