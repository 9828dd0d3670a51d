"""Augmentation of training crops in the log-mel domain (beyond the paper; off by default).

With a few hundred songs the models memorise their training crops: the training
loss falls while validation stays put. CLMR (Spijkervet & Burgess 2021) and most
contrastive audio work augment each view; the store holds log-mels, not audio, so
these act on the stored features, ``x = log10(1 + 10 * mel)`` of the magnitude
mel spectrogram (:mod:`musicrep.data.features`), by going back to the mel
magnitude, changing it, and coming back:

- ``gain``: the whole crop louder or softer, ``mel * g`` with ``g`` uniform in
  +- ``augment_gain_db`` dB;
- ``eq``: a smooth random equaliser, a gain per mel band that follows a random
  tilt plus one bell, both within +- ``augment_eq_db`` dB;
- ``noise``: added noise, a random coloured noise floor ``augment_noise_db`` dB
  (+- 10 dB) below the crop's mean power;
- ``stretch``: time-stretch by a factor uniform in 1 +- ``augment_stretch``
  (frames resampled by linear interpolation, then cut or edge-padded back to the
  crop's length);
- ``pitch``: pitch-shift by up to +- ``augment_pitch_bins`` mel bins (the mel axis
  resampled; near enough to semitones in the upper bands, coarser below).

Each crop (anchor, positive and every negative, separately) gets each named
augmentation with probability ``augment_p`` and its own parameters. Validation
and every evaluation see the crops unchanged. The draws come from a generator
seeded by (run seed, rank, step), so a resumed run augments exactly as an
uninterrupted one.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

AUGMENTS: tuple[str, ...] = ("gain", "eq", "noise", "stretch", "pitch")
NONE = "none"
_SEED_KEY = 7_000_003  # keeps the augmentation draws apart from the sampling streams


def parse_augment(value: str) -> tuple[str, ...]:
    """``"none"`` -> (); ``"gain,eq"`` -> ("gain", "eq"); unknown names raise ConfigError."""
    names = tuple(n.strip() for n in str(value).split(",") if n.strip() and n.strip() != NONE)
    unknown = [n for n in names if n not in AUGMENTS]
    if unknown:
        raise ConfigError(f"augment={value}: unknown augmentation {unknown[0]!r}; use none or a comma-separated "
                          f"list of {', '.join(AUGMENTS)}")
    return names


def _to_magnitude(x: torch.Tensor) -> torch.Tensor:
    return (torch.pow(10.0, x) - 1.0).clamp_min(0.0) / 10.0


def _to_logmel(mel: torch.Tensor) -> torch.Tensor:
    return torch.log10(1.0 + 10.0 * mel.clamp_min(0.0))


def _db(u: torch.Tensor) -> torch.Tensor:
    """Magnitude factor of ``u`` dB."""
    return torch.pow(10.0, u / 20.0)


def _uniform(g: torch.Generator, n: int, *, low: float, high: float, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def _read_at(x: torch.Tensor, pos: torch.Tensor, *, axis: int) -> torch.Tensor:
    """Each crop of ``x`` [M, T, F] read along ``axis`` (1: time, 2: mel) at the fractional
    positions ``pos`` [M, n] (linear interpolation; edge values beyond the ends)."""
    n = x.shape[axis]
    pos = pos.clamp(0, n - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(n - 1)
    w = (pos - lo.to(x.dtype)).unsqueeze(3 - axis)  # [M, n, 1] along time, [M, 1, n] along mel
    lo, hi = lo.unsqueeze(3 - axis).expand_as(x), hi.unsqueeze(3 - axis).expand_as(x)
    return torch.gather(x, axis, lo) * (1 - w) + torch.gather(x, axis, hi) * w


def _stretch(x: torch.Tensor, *, factor: torch.Tensor) -> torch.Tensor:
    """Each crop's frames resampled in time: output frame ``i`` reads input frame ``i * factor``."""
    frames = torch.arange(x.shape[1], device=x.device, dtype=x.dtype)
    return _read_at(x, frames[None, :] * factor[:, None], axis=1)


def _shift(x: torch.Tensor, *, bins: torch.Tensor) -> torch.Tensor:
    """Each crop's mel axis moved by ``bins`` (fractional; positive = up), edge values beyond."""
    bands = torch.arange(x.shape[2], device=x.device, dtype=x.dtype)
    return _read_at(x, bands[None, :] - bins[:, None], axis=2)


def augment_crops(x: torch.Tensor, *, names: tuple[str, ...], config, generator: torch.Generator) -> torch.Tensor:
    """``x`` [M, T, F] log-mel crops, each augmented on its own (see the module docstring)."""
    if not names:
        return x
    m, _t, f = x.shape
    dev = x.device
    out = x.float()

    def chosen() -> torch.Tensor:
        return (torch.rand(m, generator=generator, device=dev) < config.augment_p)[:, None, None]

    if {"gain", "eq", "noise"} & set(names):
        mel = _to_magnitude(out)
        touched = torch.zeros(m, 1, 1, dtype=torch.bool, device=dev)  # the others keep their exact values
        if "gain" in names:
            g = _db(_uniform(generator, m, low=-config.augment_gain_db, high=config.augment_gain_db, device=dev))
            pick = chosen()
            touched |= pick
            mel = torch.where(pick, mel * g[:, None, None], mel)
        if "eq" in names:
            band = torch.linspace(-1.0, 1.0, f, device=dev)[None, :]
            tilt = _uniform(generator, m, low=-1, high=1, device=dev)[:, None] * band
            centre = _uniform(generator, m, low=-1, high=1, device=dev)[:, None]
            height = _uniform(generator, m, low=-1, high=1, device=dev)[:, None]
            bell = height * torch.exp(-((band - centre) ** 2) / (2 * 0.15 ** 2))
            curve = (tilt + bell).clamp(-1, 1) * config.augment_eq_db
            pick = chosen()
            touched |= pick
            mel = torch.where(pick, mel * _db(curve)[:, None, :], mel)
        if "noise" in names:
            level = mel.mean(dim=(1, 2), keepdim=True) * _db(
                -config.augment_noise_db + _uniform(generator, m, low=-10, high=10, device=dev))[:, None, None]
            colour = _db(_uniform(generator, m, low=-6, high=6, device=dev)[:, None]
                         * torch.linspace(-1.0, 1.0, f, device=dev)[None, :])[:, None, :]
            noise = torch.rand(mel.shape, generator=generator, device=dev) * 2 * level * colour
            pick = chosen()
            touched |= pick
            mel = torch.where(pick, mel + noise, mel)
        out = torch.where(touched, _to_logmel(mel), out)
    if "stretch" in names:
        factor = _uniform(generator, m, low=1 - config.augment_stretch, high=1 + config.augment_stretch, device=dev)
        out = torch.where(chosen(), _stretch(out, factor=factor), out)
    if "pitch" in names:
        bins = _uniform(generator, m, low=-config.augment_pitch_bins, high=config.augment_pitch_bins, device=dev)
        out = torch.where(chosen(), _shift(out, bins=bins), out)
    return out.to(x.dtype)


def augment_batches(batches: dict[str, torch.Tensor], *, config, step: int, rank: int = 0) -> dict[str, torch.Tensor]:
    """Every concept's training batch [B, 2 + N, T, F] augmented per crop; unchanged when ``augment=none``.

    The generator is seeded by (``config.seed``, ``rank``, ``step``) on the batch's device.
    """
    names = parse_augment(config.augment)
    if not names:
        return batches
    out = {}
    for k, (concept, b) in enumerate(batches.items()):
        b = torch.as_tensor(b)
        g = torch.Generator(device=b.device)
        g.manual_seed((config.seed * 1_000_003 + rank * 10_007 + step * 101 + k + _SEED_KEY) % (2 ** 63 - 1))
        shape = b.shape
        out[concept] = augment_crops(b.reshape(-1, *shape[2:]), names=names, config=config, generator=g).reshape(shape)
    return out


__all__ = ["AUGMENTS", "augment_batches", "augment_crops", "parse_augment"]
