"""The command line: help that teaches, status per shard, the reduction refusing an incomplete store."""

import subprocess
import sys

import pytest

from crossrep.cli import main
from crossrep.config import load_job
from crossrep.errors import StoreError
from crossrep.plan import create_store, shards
from crossrep.results import write as reduce_run
from crossrep.store import ActivationStore

pytestmark = pytest.mark.e2e


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
    import shutil

    synthetic = "lao" if shutil.which("espeak-ng") else "eng, lao"  # without espeak-ng every voice is synthetic
    assert f"Synthetic audio (not speech)** for: {synthetic}." in readme
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


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "crossrep", *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, **kw)


def test_version_and_status_of_an_output_folder(make_job):
    from crossrep import __version__

    proc = _cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"crossrep {__version__}"
    path = make_job("folder", **{"data.languages": ["eng", "deu"]})
    assert _cli("plan", path).returncode == 0
    out = load_job(path).out
    refused = _cli("status", out)
    assert refused.returncode == 2 and f"{out}: a folder without job.yaml" in refused.stderr
    from crossrep.plan import write_resolved

    write_resolved(load_job(path))
    proc = _cli("status", out)
    assert proc.returncode == 1 and "4 missing" in proc.stdout, proc.stderr


def test_status_into_a_closed_pipe_is_quiet(make_job):
    path = make_job("pipe", **{"data.languages": ["eng", "deu"]})
    assert _cli("plan", path).returncode == 0
    proc = subprocess.run(f"{sys.executable} -m crossrep status {path} --all | head -1", shell=True,
                          capture_output=True, text=True)
    assert proc.stdout.startswith(str(load_job(path).out / "activations.zarr"))
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_small_mistakes_are_named(make_job, tmp_path, demo_root):
    import yaml

    path = make_job("typo")
    raw = yaml.safe_load(path.read_text())
    raw["data"]["crossmodal_sentence"] = raw["data"].pop("crossmodal_sentences")
    path.write_text(yaml.safe_dump(raw))
    proc = _cli("plan", path)
    assert proc.returncode == 2
    assert "data.crossmodal_sentences: missing (required) (found 'crossmodal_sentence': a typo?)" in proc.stderr
    proc = _cli("plan", make_job("dup"), "--set", "data.languages=[eng, deu, eng]")
    assert proc.returncode == 2 and "data.languages: 'eng' is listed twice" in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nout: o\ndata:\n  root: r\n   split: test\n")
    proc = _cli("plan", bad)
    assert proc.returncode == 2 and f"{bad}, line 5, column 9: not valid YAML" in proc.stderr, proc.stderr
    import shutil

    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    tsv = root / "de_de" / "test.tsv"
    lines = tsv.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"e", b"\xe9", 1)  # Latin-1, not UTF-8
    tsv.write_bytes(b"\n".join(lines))
    proc = _cli("plan", make_job("latin1"), "--set", f"data.root={root}")
    assert proc.returncode == 2 and f"{tsv}:3: not UTF-8 (byte b'\\xe9' at column" in proc.stderr, proc.stderr


def test_extract_takes_a_shard_key(make_job):
    path = make_job("bykey", **{"data.languages": ["eng", "deu"]})
    assert _cli("plan", path).returncode == 0
    proc = _cli("extract", path, "--shard", "seamless/text/deu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    store = ActivationStore(load_job(path).out)
    from crossrep.store import ShardKey

    assert store.state(ShardKey("seamless", "text", "deu")).complete
    assert not store.state(ShardKey("seamless", "text", "eng")).chunks_done
    proc = _cli("extract", path, "--shard", "seamless/text/xxx")
    assert proc.returncode == 2 and "--shard 'seamless/text/xxx': neither an index 0..3 nor a shard" in proc.stderr


def test_help_lists_every_model_family():
    from crossrep.cli import parser
    from crossrep.models import families

    assert {"seamless_m4t_v2", "sonar", "salmonn", "qwen2_audio", "qwen2_5_omni", "audioflamingo3",
            "hf_encoders"} <= set(families())
    text = parser().format_help()
    for f in families().values():
        assert f"  {f.name:<16} {f.line}" in text
    from crossrep.measures import REGISTRY

    assert "  mknn             knn=10" in text and all(f"\n  {name} " in text for name in REGISTRY)
