"""The FLEURS reader and the study's selection, on small copies written here in the official layout."""

import io
import shutil
import tarfile

import numpy as np
import pytest
import soundfile as sf

from conftest import SHARED
from crossrep.data.audio import decode_wav
from crossrep.data.fleurs import FleursLanguage, read_tsv, select
from crossrep.errors import ConfigError, DataError

pytestmark = pytest.mark.unit


def _wav(path, seconds=0.5, rate=16000, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    data = 0.1 * rng.standard_normal((int(rate * seconds), channels)).astype(np.float32)
    sf.write(path, data if channels > 1 else data[:, 0], rate, subtype="PCM_16")


def make_lang(root, config="en_us", ids=(1, 2, 3), takes=1, columns=7, layout="audio", split="test"):
    d = root / config
    audio = {"audio": d / "audio" / split, "flat": d / split, "tar": d / "tmp-audio"}[layout]
    audio.mkdir(parents=True, exist_ok=True)
    lines = []
    for sid in ids:
        for take in range(takes):
            name = f"{sid}{take}{config}.wav"
            _wav(audio / name, seconds=0.2 + 0.05 * sid, seed=sid * 10 + take)
            cols = [str(sid), name, f"Sentence {sid}.", f"sentence {sid}", "s e n t |", "3200"]
            cols += (["spk1"] if columns == 8 else []) + ["FEMALE"]
            lines.append("\t".join(cols))
    (d / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if layout == "tar":
        (d / "audio").mkdir(exist_ok=True)
        with tarfile.open(d / "audio" / f"{split}.tar.gz", "w:gz") as tar:
            for f in sorted(audio.iterdir()):
                tar.add(f, arcname=f"{split}/{f.name}")
        shutil.rmtree(audio)
    return d


def test_reads_seven_and_eight_column_tsvs(tmp_path):
    d7 = make_lang(tmp_path / "a", ids=(5, 1, 3))
    d8 = make_lang(tmp_path / "b", ids=(5, 1, 3), columns=8)
    r7, r8 = read_tsv(d7 / "test.tsv"), read_tsv(d8 / "test.tsv")
    assert [r.id for r in r7] == [5, 1, 3] and r7[0].text == "sentence 5" and r7[0].speaker is None
    assert r8[0].speaker == "spk1" and r8[0].gender == "FEMALE" and r8[0].n_samples == 3200


def test_one_utterance_per_id_fixed_by_seed(tmp_path):
    make_lang(tmp_path, ids=range(1, 21), takes=3)
    picks = lambda seed: [u.file for u in FleursLanguage(tmp_path, "eng", "test", seed).sentences.values()]
    a, b, c = picks(0), picks(0), picks(1)
    assert a == b and a != c
    assert list(FleursLanguage(tmp_path, "eng", "test", 0).sentences) == list(range(1, 21))
    assert len({f.split("en_us")[0][-1] for f in a}) > 1  # not always the first take


@pytest.mark.parametrize("layout", ["audio", "flat", "tar"])
def test_audio_layouts(tmp_path, layout):
    make_lang(tmp_path, ids=(1, 2, 3), layout=layout)
    lang = FleursLanguage(tmp_path, "eng", "test", 0)
    waves = lang.audio([3, 1])
    assert [len(w) for w in waves] == [int(16000 * 0.35), int(16000 * 0.25)]
    assert all(w.dtype == np.float32 for w in waves)


@pytest.mark.skipif(not (SHARED / "audio_1.wav").is_file(),
                    reason=f"the two real FLEURS clips are not in {SHARED} (they are not committed: public data)")
def test_real_fleurs_clips_from_a_packed_archive(tmp_path):
    d = tmp_path / "de_de"
    (d / "audio").mkdir(parents=True)
    with tarfile.open(d / "audio" / "test.tar.gz", "w:gz") as tar:
        for k, name in enumerate(["audio_1.wav", "audio_2.wav"]):
            tar.add(SHARED / name, arcname=f"test/{1000 + k}.wav")
    (d / "test.tsv").write_text("".join(f"{7 + k}\t{1000 + k}.wav\tX.\tx\tx |\t1\tMALE\n" for k in range(2)))
    waves = FleursLanguage(tmp_path, "deu", "test", 0).audio([7, 8])
    direct = [decode_wav(SHARED / n, n) for n in ("audio_1.wav", "audio_2.wav")]
    assert all(np.array_equal(a, b) for a, b in zip(waves, direct))
    assert 4 * 16000 < len(waves[0]) < 7 * 16000


def test_selection_first_n_and_first_m_shared(tmp_path):
    make_lang(tmp_path, "en_us", ids=[1, 2, 3, 4, 5, 6, 7])
    make_lang(tmp_path, "de_de", ids=[2, 3, 4, 5, 6, 7, 8])
    make_lang(tmp_path, "fr_fr", ids=[1, 3, 4, 6, 7, 8, 9])
    corpus = {iso: FleursLanguage(tmp_path, iso, "test", 0) for iso in ("eng", "deu", "fra")}
    sel = select(corpus, ("eng", "deu", "fra"), n=4, m=3, model="m")
    assert sel.crossmodal == {"eng": (1, 2, 3, 4), "deu": (2, 3, 4, 5), "fra": (1, 3, 4, 6)}
    assert sel.crosslingual == (3, 4, 6)
    assert sel.shard_ids("fra") == (1, 3, 4, 6)
    assert sel.shard_ids("deu") == (2, 3, 4, 5, 6)
    with pytest.raises(DataError, match=r"en_us/test.tsv: eng has 7 distinct sentence ids, fewer than .*= 8"):
        select(corpus, ("eng", "deu", "fra"), n=8, m=3, model="m")
    with pytest.raises(DataError, match=r"model m: its 3 languages share 4 sentence ids, fewer than "
                                        r"crosslingual_sentences = 5"):
        select(corpus, ("eng", "deu", "fra"), n=4, m=5, model="m")


def test_missing_tsv_and_folder(tmp_path):
    with pytest.raises(DataError, match=r"en_us: missing folder for eng"):
        FleursLanguage(tmp_path, "eng", "test", 0)
    (tmp_path / "en_us").mkdir()
    with pytest.raises(DataError, match=r"en_us/test.tsv: missing FLEURS TSV"):
        FleursLanguage(tmp_path, "eng", "test", 0).sentences


def test_malformed_rows_and_empty_transcript(tmp_path):
    d = make_lang(tmp_path, ids=(1, 2))
    (d / "test.tsv").write_text("1\ta.wav\tA.\ta\ta |\t10\tMALE\n2\tb.wav\tB.\t \tb |\t10\tMALE\n")
    with pytest.raises(DataError, match=r"test.tsv:2: empty normalized transcription \(sentence id 2\)"):
        read_tsv(d / "test.tsv")
    (d / "test.tsv").write_text("1\ta.wav\tA.\ta\n")
    with pytest.raises(DataError, match=r"test.tsv:1: expected 7 \(or 8\) tab-separated columns, found 4"):
        read_tsv(d / "test.tsv")
    (d / "test.tsv").write_text("x1\ta.wav\tA.\ta\ta |\t10\tMALE\n")
    with pytest.raises(DataError, match=r"test.tsv:1: sentence id 'x1'"):
        read_tsv(d / "test.tsv")


def test_missing_corrupt_and_wrong_rate_audio(tmp_path):
    d = make_lang(tmp_path, ids=(1, 2, 3))
    lang = FleursLanguage(tmp_path, "eng", "test", 0)
    (d / "audio" / "test" / "10en_us.wav").unlink()
    with pytest.raises(DataError, match=r"audio/test/10en_us.wav: missing audio file"):
        lang.audio([1])
    (d / "audio" / "test" / "20en_us.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(DataError, match=r"20en_us.wav: unreadable audio"):
        lang.audio([2])
    _wav(d / "audio" / "test" / "30en_us.wav", rate=22050)
    with pytest.raises(DataError, match=r"30en_us.wav: sample rate 22050 Hz; crossrep reads audio at 16000 Hz "
                                        r"\(set data.resample: true"):
        lang.audio([3])
    resampled = FleursLanguage(tmp_path, "eng", "test", 0, resample=True).audio([3])[0]
    assert resampled.dtype == np.float32 and resampled.size > 0  # the same clip, converted on request
    _wav(d / "audio" / "test" / "30en_us.wav", channels=2)
    with pytest.raises(DataError, match=r"30en_us.wav: 2 channels; crossrep reads mono audio \(set data.resample"):
        lang.audio([3])
    assert FleursLanguage(tmp_path, "eng", "test", 0, resample=True).audio([3])[0].ndim == 1


def test_corrupt_member_in_archive_names_archive_and_member(tmp_path):
    d = make_lang(tmp_path, ids=(1, 2), layout="tar")
    archive = d / "audio" / "test.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("test/10en_us.wav")
        payload = b"not a wav file at all"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataError, match=r"test.tar.gz:test/10en_us.wav: unreadable audio"):
        FleursLanguage(tmp_path, "eng", "test", 0).audio([1])
    with pytest.raises(DataError, match=r"test.tar.gz: missing audio 20en_us.wav"):
        FleursLanguage(tmp_path, "eng", "test", 0).audio([2])


def test_unknown_language():
    with pytest.raises(ConfigError, match=r"unknown language 'xyz'"):
        FleursLanguage(SHARED, "xyz", "test", 0)


def test_planning_refuses_a_corrupt_clip_before_any_store(demo_root, make_job, tmp_path, capsys):
    """A kept clip of the FLEURS layout whose header is unreadable: `crossrep plan` names it and its TSV, and
    writes no store; the same copy with the clip restored plans."""
    from crossrep.cli import main

    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    deu = FleursLanguage(root, "deu", "test", 0)
    sid = min(deu.sentences)
    bad = deu.dir / "audio" / "test" / deu.sentences[sid].file
    saved = bad.read_bytes()
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    job = make_job("corrupt", **{"data.root": str(root)})
    assert main(["plan", str(job)]) == 2
    line = next(x for x in capsys.readouterr().err.splitlines() if str(bad) in x)
    assert "unreadable audio" in line and f"sentence id {sid} in {deu.tsv}" in line
    assert not (tmp_path / "corrupt" / "activations.zarr").exists()
    bad.write_bytes(saved)
    assert main(["plan", str(job)]) == 0
