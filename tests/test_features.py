"""Audio features in torch on the model's device against the transformers feature extractors they replace, on
real FLEURS speech and random signals; and each adapter with `features: device` against its CPU path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crossrep.models.features import KaldiFbank, WhisperLogMel, pad_waves

pytestmark = pytest.mark.model

SR = 16_000
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """The two real FLEURS clips (about 5 s) where present, and random signals of awkward lengths."""
    from crossrep.data.audio import decode_wav

    real = [decode_wav(p, str(p)) for p in sorted(SHARED.glob("audio_*.wav"))]
    rng = np.random.default_rng(5)
    return real + [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 30001, 23456, 801)]


def test_kaldi_fbank_equals_seamless_feature_extractor(clips):
    from transformers import SeamlessM4TFeatureExtractor

    ref = SeamlessM4TFeatureExtractor()(clips, sampling_rate=SR, padding=True, return_tensors="pt")
    ours = KaldiFbank().seamless(*pad_waves(clips))
    assert ours["input_features"].shape == ref["input_features"].shape
    assert torch.equal(ours["attention_mask"], ref["attention_mask"])
    assert float((ours["input_features"] - ref["input_features"]).abs().max()) < 1e-4


@pytest.mark.parametrize("bins", [80, 128])
def test_whisper_log_mel_equals_whisper_feature_extractor(clips, bins):
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=bins)
    ref = fe(clips, sampling_rate=SR, return_attention_mask=True, padding="max_length", return_tensors="pt")
    mel, mask = WhisperLogMel(fe)(*pad_waves(clips))
    assert mel.shape == ref["input_features"].shape == (len(clips), bins, 3000)
    assert torch.equal(mask, ref["attention_mask"])
    assert float((mel - ref["input_features"]).abs().max()) < 1e-4


def test_sonar_fbank_on_the_device_equals_its_cpu_path(clips, tiny_sonar):
    from crossrep.models.sonar import SonarAdapter

    cpu = SonarAdapter(tiny_sonar, {}, device="cpu")
    dev = SonarAdapter(tiny_sonar, {}, device="cpu", features="device")
    x, n = cpu.featurize("speech", "deu", clips[:-1])
    y, m = dev._device_fbank(*dev.featurize("speech", "deu", clips[:-1]))
    assert torch.equal(n, m) and x.shape == y.shape
    assert float((x - y).abs().max()) < 1e-4


def rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("family", ["seamless_m4t_v2", "sonar", "salmonn", "qwen2_audio"])
def test_adapters_with_device_features_match_their_cpu_path(family, clips, tmp_path_factory, tiny, tiny_sonar):
    from crossrep.models import adapter_class

    cls = adapter_class(family)
    checkpoint = {"seamless_m4t_v2": str(tiny), "sonar": tiny_sonar}.get(family) or cls.resolve(
        "tiny", tmp_path_factory.mktemp(family))
    spec = cls.spec(checkpoint, cls.check_options({}, "options"))
    points = tuple(p.name for p in spec.points["speech"])
    inputs = [(c, "the dog ran home") for c in clips[:-1]] if cls.joint_inputs else clips[:-1]
    a = cls(checkpoint, {}, device="cpu").embed("speech", "deu", inputs, points)
    b = cls(checkpoint, {}, device="cpu", features="device").embed("speech", "deu", inputs, points)
    for p in points:
        assert rel(b[p], a[p]) < 1e-4, p
