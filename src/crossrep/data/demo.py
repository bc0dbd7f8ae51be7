"""Demo data: a FLEURS-layout copy written from crossrep's own parallel corpus (`corpus/<iso>.txt`).

Speech comes from espeak-ng where it is installed and has a voice for the language; elsewhere each clip is a
synthetic harmonic signal whose length follows the text, and `demo.json` and `README.md` at the root say so.
Like FLEURS, some sentences have two utterances (a second voice) and some languages lack a sentence, so the
selection code sees duplicates and gaps.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import os
import shutil
import subprocess
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from .. import languages as langs
from ..errors import DataError
from .audio import SAMPLE_RATE

FIRST_ID = 1660  # FLEURS test ids start near here
ESPEAK_VOICES = {
    "amh": "am", "arb": "ar", "asm": "as", "bul": "bg", "cat": "ca", "cmn": "cmn", "deu": "de", "ell": "el",
    "eng": "en-us", "est": "et", "fin": "fi", "fra": "fr-fr", "heb": "he", "hin": "hi", "hye": "hy", "ind": "id",
    "ita": "it", "jpn": "ja", "kat": "ka", "kor": "ko", "lit": "lt", "mal": "ml", "mar": "mr", "nld": "nl",
    "pes": "fa", "rus": "ru", "snd": "sd", "swh": "sw", "tam": "ta", "tel": "te", "tha": "th", "tur": "tr",
    "yue": "yue",
}
MARKER = "demo.json"


@lru_cache(maxsize=1)
def corpus() -> dict[str, list[str]]:
    """The parallel corpus of the study's 36 languages: ISO code -> sentences; line k of every language is the
    same sentence."""
    folder = importlib.resources.files("crossrep.data").joinpath("corpus")
    out = {}
    for iso in langs.STUDY:
        out[iso] = folder.joinpath(f"{iso}.txt").read_text(encoding="utf-8").splitlines()
    sizes = {len(v) for v in out.values()}
    if len(sizes) != 1:
        raise DataError(f"crossrep's demo corpus is not parallel: sentence counts {sorted(sizes)}")
    return out


def normalize(text: str) -> str:
    """Lower-case, punctuation removed, spaces collapsed: like FLEURS' normalized transcription."""
    kept = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text.lower())
    return " ".join(kept.split())


def missing_id(iso: str, n: int) -> int:
    """The one sentence index each demo language lacks, in the last quarter, like FLEURS' uneven coverage."""
    quarter = max(1, n // 4)
    return n - quarter + int(hashlib.sha256(iso.encode()).hexdigest(), 16) % quarter


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def write_demo(root: Path, languages: tuple[str, ...] | None = None, sentences: int = 48,
               split: str = "test", use_espeak: bool | None = None, progress: bool = True) -> Path:
    """Write the demo copy at `root` (FLEURS layout); the folder appears only when complete."""
    languages = languages or langs.STUDY
    text = corpus()
    outside = [iso for iso in languages if iso not in text]
    if outside:
        raise DataError(f"demo data: crossrep's demo corpus has the study's 36 languages; not {', '.join(outside)} "
                        f"(use a FLEURS copy or a manifest for them: docs/jobs.md, Data)")
    if not 2 <= sentences <= len(text["eng"]):
        raise DataError(f"demo data: sentences must be between 2 and {len(text['eng'])}, got {sentences}")
    use_espeak = espeak_available() if use_espeak is None else use_espeak
    root = Path(root)
    if (root / MARKER).is_file():
        return root
    if root.exists() and any(root.iterdir()):
        raise DataError(f"{root}: exists, is not empty and is not crossrep demo data (no {MARKER})")
    tmp = root.with_name(root.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    jobs, rows, speech = [], {}, {}
    for iso in languages:
        lang = langs.get(iso)
        voice = ESPEAK_VOICES.get(iso) if use_espeak else None
        speech[iso] = f"espeak-ng voice {voice}" if voice else "synthetic signal (no espeak-ng voice): not speech"
        folder = tmp / lang.fleurs / "audio" / split
        folder.mkdir(parents=True)
        rows[iso] = []
        skip = missing_id(iso, sentences)
        for k in range(sentences):
            if k == skip:
                continue
            takes = 2 if k % 5 == 0 else 1
            for take in range(takes):
                sid = FIRST_ID + k
                name = str(int(hashlib.sha256(f"{iso}/{sid}/{take}".encode()).hexdigest()[:15], 16)) + ".wav"
                jobs.append((folder / name, text[iso][k], voice, take, f"{iso}/{sid}/{take}"))
                rows[iso].append((sid, name, text[iso][k], "FEMALE" if take else "MALE"))
    n_samples = _synthesize_all(jobs, progress)
    for iso in languages:
        lang_dir = tmp / langs.get(iso).fleurs
        with open(lang_dir / f"{split}.tsv", "w", encoding="utf-8") as f:
            for sid, name, raw, gender in rows[iso]:
                norm = normalize(raw)
                chars = " ".join("|".join(norm.split())) + " |"
                f.write(f"{sid}\t{name}\t{raw}\t{norm}\t{chars}\t{n_samples[name]}\t{gender}\n")
    synthetic = sorted(iso for iso, how in speech.items() if how.startswith("synthetic"))
    (tmp / "README.md").write_text(
        "# crossrep demo data\n\nWritten by `crossrep demo-data` from crossrep's own parallel corpus, in FLEURS' "
        "layout. Not FLEURS.\n\n"
        + (f"**Synthetic audio (not speech)** for: {', '.join(synthetic)}.\n\n" if synthetic else "")
        + "Speech per language:\n\n" + "".join(f"- {iso}: {how}\n" for iso, how in speech.items()),
        encoding="utf-8")
    (tmp / MARKER).write_text(json.dumps(
        {"what": "crossrep demo data (not FLEURS)", "split": split, "sentences": sentences,
         "languages": list(languages), "speech": speech}, indent=1, ensure_ascii=False), encoding="utf-8")
    if root.exists():
        root.rmdir()
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(root)
    return root


def _synthesize_all(jobs: list, progress: bool) -> dict[str, int]:
    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        results = list(tqdm(pool.map(lambda j: _synthesize(*j), jobs), total=len(jobs), desc="demo audio",
                            unit="clip", disable=not progress))
    return dict(results)


def _synthesize(path: Path, sentence: str, voice: str | None, take: int, key: str) -> tuple[str, int]:
    if voice:
        wave = _espeak(sentence, voice, take, key)
    else:
        wave = _synthetic(sentence, key)
    sf.write(path, wave, SAMPLE_RATE, subtype="PCM_16")
    return path.name, len(wave)


def _espeak(sentence: str, voice: str, take: int, key: str) -> np.ndarray:
    cmd = ["espeak-ng", "-v", voice, "-s", str(150 + 25 * take), "-p", str(50 + 20 * take), "--stdout", sentence]
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    if proc.returncode != 0 or not proc.stdout:
        raise DataError(f"demo data {key}: espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
    data, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    if data.ndim > 1:
        data = data.mean(axis=1)
    g = np.gcd(SAMPLE_RATE, rate)
    return resample_poly(data, SAMPLE_RATE // g, rate // g).astype(np.float32)


def _synthetic(sentence: str, key: str) -> np.ndarray:
    """A deterministic harmonic signal with a syllable-rate envelope; length ~ 60 ms per character."""
    rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))
    n = int(SAMPLE_RATE * (0.3 + 0.06 * len(sentence)))
    t = np.arange(n) / SAMPLE_RATE
    f0 = 110 + 40 * rng.random() + 15 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * (3 + rng.random()) * t))
    wave = 0.2 * wave * envelope + 0.005 * rng.standard_normal(n)
    return wave.astype(np.float32)
