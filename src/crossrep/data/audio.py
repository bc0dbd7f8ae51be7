"""Audio decoding: any format libsndfile reads (WAV, FLAC, OGG/Vorbis and Opus, MP3), from a file, bytes or a
packed .tar.gz, as float32 mono at 16 kHz.

By default crossrep refuses, rather than resamples, audio at another rate or with several channels: FLEURS is
16 kHz mono, and anything else means the copy is not what the job says it is. With `data.resample: true` a clip
at another rate is resampled with soxr (its "HQ" quality; one clip at a time, so the samples never depend on
which clips share a batch) and several channels are averaged to one.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import DataError

SAMPLE_RATE = 16_000


def decode_wav(data: bytes | Path, where: str, resample: bool = False) -> np.ndarray:
    """float32 samples of one clip, mono at 16 kHz; `where` names the file in errors; `resample`: convert another
    rate (soxr) and several channels (their mean) instead of refusing them."""
    try:
        with sf.SoundFile(io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else str(data)) as f:
            rate, channels = f.samplerate, f.channels
            samples = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError, TypeError) as exc:
        raise DataError(f"{where}: unreadable audio ({exc})") from None
    _check_format(rate, channels, where, resample)
    samples = samples.mean(axis=1, dtype=np.float64).astype(np.float32) if channels != 1 else samples[:, 0]
    if rate != SAMPLE_RATE and samples.size:
        import soxr

        samples = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    if samples.size == 0:
        raise DataError(f"{where}: no samples")
    if not np.all(np.isfinite(samples)):
        raise DataError(f"{where}: samples contain NaN or infinity")
    return samples


def check_header(data: bytes | Path, where: str, resample: bool = False) -> None:
    """What `decode_wav` would refuse that a header shows (an unreadable file, another rate or several channels
    without `resample`), without decoding the samples: planning checks every clip this way before a store is
    made."""
    try:
        info = sf.info(io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else str(data))
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError, TypeError) as exc:
        raise DataError(f"{where}: unreadable audio ({exc})") from None
    _check_format(info.samplerate, info.channels, where, resample)


def _check_format(rate: int, channels: int, where: str, resample: bool) -> None:
    if rate != SAMPLE_RATE and not resample:
        raise DataError(
            f"{where}: sample rate {rate} Hz; crossrep reads audio at {SAMPLE_RATE} Hz (set data.resample: true "
            f"to resample it, or convert it, e.g. `sox IN.wav -r {SAMPLE_RATE} OUT.wav`)"
        )
    if channels != 1 and not resample:
        raise DataError(f"{where}: {channels} channels; crossrep reads mono audio (set data.resample: true to "
                        f"average the channels)")


class AudioSource:
    """Where a language's clips live: an extracted folder, or the packed `audio/<split>.tar.gz`."""

    def __init__(self, lang_dir: Path, split: str, resample: bool = False):
        self.resample = resample
        self.candidates = [lang_dir / "audio" / split, lang_dir / split]
        self.folder = next((c for c in self.candidates if c.is_dir()), None)
        self.archive = lang_dir / "audio" / f"{split}.tar.gz"
        if self.folder is None and not self.archive.is_file():
            raise DataError(
                f"{lang_dir}: no audio: looked for the folders {self.candidates[0]} and {self.candidates[1]} "
                f"and the archive {self.archive}"
            )

    def read(self, names: list[str]) -> dict[str, np.ndarray]:
        """Decode the named clips (file names as in the TSV); every one must exist."""
        if self.folder is not None:
            out = {}
            for name in names:
                path = self.folder / name
                if not path.is_file():
                    raise DataError(f"{path}: missing audio file (listed in the TSV)")
                out[name] = decode_wav(path, str(path), self.resample)
            return out
        return self._read_archive(names)

    def _read_archive(self, names: list[str]) -> dict[str, np.ndarray]:
        wanted, out = set(names), {}
        try:
            with tarfile.open(self.archive, "r:gz") as tar:
                for member in tar:
                    base = member.name.rsplit("/", 1)[-1]
                    if base in wanted and member.isfile() and base not in out:
                        data = tar.extractfile(member).read()
                        out[base] = decode_wav(data, f"{self.archive}:{member.name}", self.resample)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"{self.archive}: unreadable archive ({exc})") from None
        missing = sorted(wanted - set(out))
        if missing:
            raise DataError(f"{self.archive}: missing audio {', '.join(missing[:5])}"
                            + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        return out
