"""Audio features computed in torch on the model's device (`extract.features: device`), for when the task's
CPUs cannot featurize as fast as a GPU runs the model. Each equals the transformers feature extractor it
replaces within 1e-4 (tests/test_features.py); the CPU path stays the default.

`KaldiFbank`: the 80-bin Kaldi filterbank of SeamlessM4T's feature extractor (and so of SONAR's speech
pipeline): 25 ms frames every 10 ms, 16-bit scale, DC offset removed, pre-emphasis 0.97, povey window, 512-point
power spectrum, Kaldi mel filters from 20 Hz, natural log floored at float32's epsilon; in float64.
`WhisperLogMel`: Whisper's log-mel of a clip padded to 30 s (centred STFT, Hann window, power spectrum less its
last frame, the extractor's own mel filters, log10 floored at 1e-10, at most 8 below the clip's maximum,
scaled as (x + 4) / 4).
"""

from __future__ import annotations

import numpy as np
import torch

SAMPLE_RATE = 16_000
FRAME, HOP, FFT = 400, 160, 512
MEL_FLOOR = 1.192092955078125e-07


def pad_waves(waves: list[np.ndarray], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S) zero-padded float32 clips (to `length` samples, else the longest) and their sample counts: what
    `featurize` hands to the device when the features are computed there."""
    n = length or max(len(w) for w in waves)
    batch = torch.zeros(len(waves), n)
    for i, w in enumerate(waves):
        batch[i, :min(len(w), n)] = torch.from_numpy(np.asarray(w, dtype=np.float32)[:n])
    return batch, torch.tensor([min(len(w), n) for w in waves])


class KaldiFbank:
    """Log-mel filterbank frames of one clip on its device: (samples,) -> (frames, 80) float64."""

    def __init__(self, mel_bins: int = 80):
        from transformers.audio_utils import mel_filter_bank, window_function

        self.filters = torch.from_numpy(mel_filter_bank(
            num_frequency_bins=FFT // 2 + 1, num_mel_filters=mel_bins, min_frequency=20, max_frequency=SAMPLE_RATE // 2,
            sampling_rate=SAMPLE_RATE, norm=None, mel_scale="kaldi", triangularize_in_mel_space=True))
        self.window = torch.from_numpy(window_function(FRAME, "povey", periodic=False))

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        x = wave.to(torch.float64) * 2 ** 15
        frames = x.unfold(0, FRAME, HOP)  # no centring: 1 + (samples - 400) // 160 frames
        frames = frames - frames.mean(dim=1, keepdim=True)
        emphasised = torch.cat([frames[:, :1] * (1 - 0.97), frames[:, 1:] - 0.97 * frames[:, :-1]], dim=1)
        spectrum = torch.fft.rfft(emphasised * self.window.to(x.device), n=FFT).abs() ** 2
        return (spectrum @ self.filters.to(x.device)).clamp(min=MEL_FLOOR).log()

    def seamless(self, waves: torch.Tensor, lengths: torch.Tensor, stride: int = 2) -> dict[str, torch.Tensor]:
        """SeamlessM4T's encoder input of a padded batch: per clip and bin standardised (unbiased variance
        + 1e-7), zero-padded to a multiple of `stride` frames, `stride` frames stacked; and the frame mask."""
        feats = []
        for wave, n in zip(waves, lengths.tolist()):
            f = self(wave[:n])
            feats.append((f - f.mean(dim=0)) / (f.var(dim=0, unbiased=True) + 1e-7).sqrt())
        t = max(len(f) for f in feats)
        t += (-t) % stride
        out = waves.new_zeros(len(feats), t, feats[0].shape[1], dtype=torch.float64)
        mask = torch.zeros(len(feats), t, dtype=torch.long, device=waves.device)
        for i, f in enumerate(feats):
            out[i, :len(f)] = f
            mask[i, :len(f)] = 1
        b, t, c = out.shape
        return {"input_features": out.reshape(b, t // stride, c * stride).to(torch.float32),
                "attention_mask": mask[:, stride - 1::stride]}


class WhisperLogMel:
    """Whisper's log-mel of padded clips on their device, with the feature extractor's own sizes and filters."""

    def __init__(self, extractor):
        self.n_fft, self.hop, self.samples = extractor.n_fft, extractor.hop_length, extractor.n_samples
        self.filters = torch.from_numpy(np.asarray(extractor.mel_filters, dtype=np.float32))

    def __call__(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, samples) clips (zero-padded, at most 30 s) -> (B, mel bins, 3000) features and the (B, 3000)
        mask of frames holding the clip (one per 160 samples, as the extractor's attention mask)."""
        x = torch.nn.functional.pad(waves.to(torch.float32), (0, self.samples - waves.shape[1]))
        window = torch.hann_window(self.n_fft, device=x.device)
        stft = torch.stft(x, self.n_fft, self.hop, window=window, return_complex=True)
        power = (stft[..., :-1].abs() ** 2).contiguous()
        mel = (self.filters.to(x.device).T @ power).clamp(min=1e-10).log10()
        top = mel.amax(dim=(1, 2), keepdim=True)
        mel = (torch.maximum(mel, top - 8.0) + 4.0) / 4.0
        frames = torch.arange(mel.shape[-1], device=x.device)
        mask = (frames[None, :] < (-(-lengths.to(x.device) // self.hop))[:, None]).long()
        return mel, mask
