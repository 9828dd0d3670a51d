"""Transfer to a genre-labelled collection with a linear probe: the paper's Table 2.

Song embedding (mean of the encoder's embeddings over non-overlapping 129-frame
segments) -> features standardised on the training part -> a linear softmax
classifier trained with Adam and an L2 penalty; the penalty, the learning rate and
the number of epochs are chosen on the validation part, and the test accuracy is
reported as mean and standard deviation over several seeds.

The split is the dataset's own when its catalog has a ``split`` column
(train/valid/test, also training/validation: FMA's column, GTZAN's fault-filtered
lists), otherwise a seeded stratified split. Baselines on the same split:

- ``genres``: the same Encoder CNN trained from scratch on the genre labels
  (softmax head, cross-entropy on random crops; a song's prediction is the mean
  of its segments' class probabilities) -- the paper's "genres (baseline)";
- ``random``: the encoder with random weights, with the same probe;
- ``mfcc``: mean and std over time of MFCCs, computed here as the type-II DCT of
  the stored log-mel (``log10(1 + 10 mel)``, not dB) over the mel axis;
- ``logmel``: mean and std over time of the 128 log-mel bands.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy.fft import dct
from torch import nn
from torch.nn import functional as F

from . import progress
from .errors import ConfigError
from .evaluate import EvaluationError, model_names, normalize_part, open_store

log = logging.getLogger(__name__)

BASELINES: tuple[str, ...] = ("genres", "random", "mfcc", "logmel")
DISPLAY: dict[str, str] = {
    "genres": "genres (baseline)",
    "random": "random encoder",
    "mfcc": "MFCC mean/std",
    "logmel": "log-mel mean/std",
}


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Settings of the transfer test (probe grid, split, baselines)."""

    label_column: str = "genre"
    seeds: tuple[int, ...] = (0, 1, 2)
    split_seed: int = 0
    valid_fraction: float = dataclasses.field(default=0.15, metadata={"min": 0.0, "max": 0.5, "min_exclusive": True})
    test_fraction: float = dataclasses.field(default=0.15, metadata={"min": 0.0, "max": 0.5, "min_exclusive": True})
    l2_grid: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
    lr_grid: tuple[float, ...] = (1e-3, 1e-2)
    probe_epochs: int = dataclasses.field(default=300, metadata={"min": 1})
    probe_eval_every: int = dataclasses.field(default=10, metadata={"min": 1})
    n_mfcc: int = dataclasses.field(default=20, metadata={"min": 1})
    cnn_steps: int = dataclasses.field(default=1500, metadata={"min": 1})
    cnn_batch_size: int = dataclasses.field(default=32, metadata={"min": 1})
    cnn_lr: float = dataclasses.field(default=1e-3, metadata={"min": 0.0, "min_exclusive": True})
    cnn_eval_every: int = dataclasses.field(default=100, metadata={"min": 1})
    baseline_width: int = dataclasses.field(default=0, metadata={"min": 0})  # 0: the models' width (or 256)


# --------------------------------------------------------------------------- split


def dataset_split(
    catalog: Sequence[Any], *, config: TransferConfig = TransferConfig()
) -> tuple[dict[str, str], dict[str, str], str]:
    """Labels and train/valid/test parts of a genre-labelled catalog.

    Returns
    -------
    labels : ``{track_id: label}`` for tracks with a non-empty label
    parts : ``{track_id: "train"|"valid"|"test"}`` (tracks outside the dataset's
        own split are left out)
    source : "dataset" or "stratified (seed k)"
    """
    labels = {t.track_id: t.get(config.label_column).strip() for t in catalog if t.get(config.label_column).strip()}
    if len(set(labels.values())) < 2:
        raise EvaluationError(
            f"column {config.label_column!r} has {len(set(labels.values()))} distinct label(s) on "
            f"{len(labels)} tracks; transfer needs at least two classes"
        )
    own = {t.track_id: t.get("split").strip() for t in catalog if t.track_id in labels and t.get("split").strip()}
    rng = np.random.default_rng(config.split_seed)
    if own:
        parts = {tid: normalize_part(p, where=f"split of track {tid}") for tid, p in own.items()}
        source = "dataset"
        dropped = len(labels) - len(parts)
        if dropped:
            log.info("%d labelled tracks are outside the dataset's own split and are left out", dropped)
        if "valid" not in parts.values():
            train = [t for t, p in parts.items() if p == "train"]
            parts.update(_stratified(train, labels, rng, fractions={"valid": config.valid_fraction}))
            source = "dataset (valid carved from train)"
    else:
        parts = _stratified(
            list(labels), labels, rng, fractions={"valid": config.valid_fraction, "test": config.test_fraction}
        )
        source = f"stratified (seed {config.split_seed})"
    for need in ("train", "valid", "test"):
        if need not in parts.values():
            raise EvaluationError(f"the transfer split has no {need} songs; use a larger collection")
    return {t: labels[t] for t in parts}, parts, source


def _stratified(ids: Sequence[str], labels: Mapping[str, str], rng: np.random.Generator, *, fractions: Mapping[str, float]) -> dict[str, str]:
    parts: dict[str, str] = {}
    by_label: dict[str, list[str]] = {}
    for t in sorted(ids):
        by_label.setdefault(labels[t], []).append(t)
    for lab in sorted(by_label):
        members = [by_label[lab][i] for i in rng.permutation(len(by_label[lab]))]
        pos = 0
        for part, frac in fractions.items():
            n = int(round(frac * len(members)))
            if n == 0 and len(members) >= len(fractions) + 1:
                n = 1
            for t in members[pos : pos + n]:
                parts[t] = part
            pos += n
        for t in members[pos:]:
            parts[t] = "train"
    return parts


# --------------------------------------------------------------------------- features


def song_embeddings(model: Any, *, store: Any, track_ids: Sequence[str], cache: bool = True) -> np.ndarray:
    """Song embeddings float32 [n, D], in the order of ``track_ids``.

    Computed by :func:`musicrep.embed.embed_store` (mean of the non-overlapping
    segments' embeddings); a run folder's vectors are cached under the run, an
    in-memory Encoder's are not.
    """
    from .embed import EmbeddingModel, embed_store

    if not isinstance(model, (str, Path, EmbeddingModel)):
        model = EmbeddingModel(model, feature_config=store.feature_config)  # in memory: never cached
    ids, vectors = embed_store(model, store, track_ids=list(track_ids), cache=cache)
    pos = {t: i for i, t in enumerate(ids)}
    return np.asarray(vectors, dtype=np.float32)[[pos[t] for t in track_ids]]


def summary_features(frames: np.ndarray, *, kind: str, n_mfcc: int = 20) -> np.ndarray:
    """Mean and std over time of MFCCs or log-mel bands.

    Parameters
    ----------
    frames : float [T, n_mels] log-mel as stored
    kind : "mfcc" (type-II orthonormal DCT over the mel axis, first ``n_mfcc``
        coefficients) or "logmel"

    Returns
    -------
    np.ndarray [shape=(2 * n_features,)]
    """
    x = np.asarray(frames, dtype=np.float64)
    if kind == "mfcc":
        x = dct(x, type=2, norm="ortho", axis=1)[:, :n_mfcc]
    elif kind != "logmel":
        raise ConfigError(f"summary feature kind {kind!r} is not 'mfcc' or 'logmel'")
    return np.concatenate([x.mean(axis=0), x.std(axis=0)]).astype(np.float32)


# --------------------------------------------------------------------------- probe


@dataclasses.dataclass
class ProbeResult:
    """Test accuracy of one method over seeds, with the summed confusion matrix.

    ``confusion[i][j]``: test songs of class ``classes[i]`` predicted as ``classes[j]``,
    summed over seeds. ``chosen``: per seed, the hyper-parameters picked on validation.
    """

    method: str
    accuracy_mean: float
    accuracy_std: float
    accuracies: list[float]
    classes: list[str]
    confusion: list[list[int]]
    chosen: list[dict] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "ProbeResult":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run small dense ops on one thread: a linear probe is far too small to gain
    from more, and on a busy machine extra threads only wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit_softmax(
    x_tr: torch.Tensor, y_tr: torch.Tensor, x_va: torch.Tensor, y_va: torch.Tensor, *,
    n_classes: int, lr: float, l2: float, epochs: int, eval_every: int, seed: int,
) -> tuple[nn.Linear, float, float, int]:
    torch.manual_seed(seed)
    layer = nn.Linear(x_tr.shape[1], n_classes)
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    best = (-1.0, float("inf"), 0, copy.deepcopy(layer.state_dict()))
    for epoch in range(1, epochs + 1):
        opt.zero_grad()
        loss = F.cross_entropy(layer(x_tr), y_tr) + l2 * layer.weight.pow(2).sum()
        loss.backward()
        opt.step()
        if epoch % eval_every == 0 or epoch == epochs:
            with torch.no_grad():
                logits = layer(x_va)
                acc = float((logits.argmax(1) == y_va).float().mean())
                vloss = float(F.cross_entropy(logits, y_va))
            if acc > best[0] or (acc == best[0] and vloss < best[1]):
                best = (acc, vloss, epoch, copy.deepcopy(layer.state_dict()))
    layer.load_state_dict(best[3])
    return layer, best[0], best[1], best[2]


def linear_probe(
    *,
    x_train: np.ndarray, y_train: np.ndarray,
    x_valid: np.ndarray, y_valid: np.ndarray,
    x_test: np.ndarray, y_test: np.ndarray,
    classes: Sequence[str],
    config: TransferConfig = TransferConfig(),
    method: str = "probe",
) -> ProbeResult:
    """Linear softmax classifier, chosen on validation, scored on test.

    Parameters
    ----------
    x_train, x_valid, x_test : float [n_*, D] features (standardised here on train)
    y_train, y_valid, y_test : int [n_*] class indices into ``classes``
    classes : class names
    config : the grids ``l2_grid`` x ``lr_grid``, ``probe_epochs``, ``seeds``

    Returns
    -------
    ProbeResult with one accuracy per seed
    """
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)

    def prep(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - mean) / std).astype(np.float32))

    xtr, xva, xte = prep(x_train), prep(x_valid), prep(x_test)
    ytr, yva = torch.from_numpy(np.asarray(y_train, dtype=np.int64)), torch.from_numpy(np.asarray(y_valid, dtype=np.int64))
    n_classes = len(classes)
    accs, chosen = [], []
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    for seed in config.seeds:
        best = None
        for l2, lr in ((l2, lr) for l2 in config.l2_grid for lr in config.lr_grid):
            with _one_thread():
                layer, vacc, vloss, epoch = _fit_softmax(
                    xtr, ytr, xva, yva, n_classes=n_classes, lr=lr, l2=l2,
                    epochs=config.probe_epochs, eval_every=config.probe_eval_every, seed=seed,
                )
                if best is None or vacc > best[0] or (vacc == best[0] and vloss < best[1]):
                    best = (vacc, vloss, layer, {"l2": l2, "lr": lr, "epochs": epoch, "valid_accuracy": vacc})
        with torch.no_grad():
            pred = best[2](xte).argmax(1).numpy()
        accs.append(float((pred == np.asarray(y_test)).mean()))
        confusion += _confusion(np.asarray(y_test, dtype=np.int64), pred, n_classes)
        chosen.append({**best[3], "seed": seed})
    return ProbeResult(
        method=method, accuracy_mean=float(np.mean(accs)), accuracy_std=float(np.std(accs)),
        accuracies=accs, classes=list(classes), confusion=confusion.tolist(), chosen=chosen,
    )


# --------------------------------------------------------------------------- genre CNN baseline


class _GenreCNN(nn.Module):
    def __init__(self, width: int, n_mels: int, n_classes: int):
        super().__init__()
        from .model import Encoder

        self.encoder = Encoder(width=width, n_mels=n_mels)
        self.head = nn.Linear(self.encoder.embedding_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@torch.no_grad()
def _song_probabilities(net: _GenreCNN, store: Any, track_ids: Sequence[str]) -> np.ndarray:
    from .model import split_segments

    net.eval()
    seg = store.feature_config.segment_frames
    out = []
    for t in track_ids:
        segments = torch.from_numpy(np.ascontiguousarray(split_segments(store.frames(t), seg), dtype=np.float32))
        out.append(F.softmax(net(segments), dim=1).mean(0).numpy())
    net.train()
    return np.stack(out)


def genre_cnn_baseline(
    *,
    store: Any,
    ids: Mapping[str, Sequence[str]],
    y: Mapping[str, np.ndarray],
    classes: Sequence[str],
    width: int,
    config: TransferConfig = TransferConfig(),
) -> ProbeResult:
    """Train the Encoder + softmax head on the genre labels from scratch, per seed.

    Parameters
    ----------
    ids : ``{"train"|"valid"|"test": [track_id, ...]}``
    y : ``{"train"|"valid"|"test": int [n] class indices}``
    width : encoder width (embedding 2 x width)

    Returns
    -------
    ProbeResult "genres"; the checkpoint kept is the one with the best song-level
    validation accuracy (checked every ``cnn_eval_every`` steps).
    """
    n_classes = len(classes)
    seg = store.feature_config.segment_frames
    mean, std = store.stats(list(ids["train"]))
    accs, chosen = [], []
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    train_ids = list(ids["train"])
    for seed in config.seeds:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = _GenreCNN(width, store.feature_config.n_mels, n_classes)
        net.encoder.set_normalization(float(mean), float(max(std, 1e-6)))
        opt = torch.optim.Adam(net.parameters(), lr=config.cnn_lr)
        best = (-1.0, 0, copy.deepcopy(net.state_dict()))
        net.train()
        for step in progress.bar(range(1, config.cnn_steps + 1), desc=f"genre CNN seed {seed}", leave=False):
            pick = rng.integers(0, len(train_ids), size=config.cnn_batch_size)
            batch = np.stack([store.crop(train_ids[i], rng=rng, length=seg) for i in pick]).astype(np.float32)
            target = torch.from_numpy(np.asarray(y["train"])[pick].astype(np.int64))
            opt.zero_grad()
            loss = F.cross_entropy(net(torch.from_numpy(batch)), target)
            loss.backward()
            opt.step()
            if step % config.cnn_eval_every == 0 or step == config.cnn_steps:
                vacc = float((_song_probabilities(net, store, ids["valid"]).argmax(1) == y["valid"]).mean())
                if vacc > best[0]:
                    best = (vacc, step, copy.deepcopy(net.state_dict()))
        net.load_state_dict(best[2])
        pred = _song_probabilities(net, store, ids["test"]).argmax(1)
        accs.append(float((pred == y["test"]).mean()))
        confusion += _confusion(np.asarray(y["test"], dtype=np.int64), pred, n_classes)
        chosen.append({"seed": seed, "step": best[1], "valid_accuracy": best[0], "width": width})
        log.info("genre CNN seed %d: test accuracy %.3f (step %d)", seed, accs[-1], best[1])
    return ProbeResult(
        method="genres", accuracy_mean=float(np.mean(accs)), accuracy_std=float(np.std(accs)),
        accuracies=accs, classes=list(classes), confusion=confusion.tolist(), chosen=chosen,
    )


# --------------------------------------------------------------------------- top level


@dataclasses.dataclass
class TransferResult:
    """Table 2 for one dataset: ``methods[name]`` is a :class:`ProbeResult`.

    Model names come first (e.g. "artist", "joint"), then the baselines
    ("genres", "random", "mfcc", "logmel"; see :data:`DISPLAY`).
    """

    dataset: str
    classes: list[str]
    counts: dict[str, int]
    split_source: str
    methods: dict[str, ProbeResult]
    runs: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset, "classes": self.classes, "counts": self.counts,
            "split_source": self.split_source, "runs": self.runs,
            "methods": {k: v.to_dict() for k, v in self.methods.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "TransferResult":
        return cls(
            dataset=data["dataset"], classes=list(data["classes"]), counts=dict(data["counts"]),
            split_source=data["split_source"], runs=dict(data.get("runs", {})),
            methods={k: ProbeResult.from_dict(v) for k, v in data["methods"].items()},
        )

    def table(self) -> str:
        """Plain-text table: one row per method, accuracy mean +- std."""
        w = max([len("chance (majority class)"), *(len(DISPLAY.get(m, m)) for m in self.methods)]) + 2
        lines = [f"{self.dataset}: {len(self.classes)} classes, " + ", ".join(f"{k} {v}" for k, v in self.counts.items())
                 + f" ({self.split_source} split)", "method".ljust(w) + "accuracy".rjust(18)]
        for name, res in self.methods.items():
            lines.append(DISPLAY.get(name, name).ljust(w) + f"{res.accuracy_mean:.3f} +- {res.accuracy_std:.3f}".rjust(18))
        lines.append("chance (majority class)".ljust(w) + f"{self.majority:.3f}".rjust(18))
        return "\n".join(lines)

    @property
    def majority(self) -> float:
        """Test accuracy of always predicting the most frequent test class."""
        any_res = next(iter(self.methods.values()), None)
        if any_res is None:
            return float("nan")
        rows = np.asarray(any_res.confusion).sum(axis=1)
        return float(rows.max() / max(rows.sum(), 1))


def transfer(
    models: Mapping[str, Any],
    *,
    store: Any,
    config: TransferConfig = TransferConfig(),
    baselines: Iterable[str] = BASELINES,
    dataset: str | None = None,
) -> TransferResult:
    """Linear-probe transfer of several models, plus baselines, on one split.

    Parameters
    ----------
    models : ``{name: run folder or Encoder}``; runs are embedded through
        :func:`musicrep.embed.embed_store` (cached)
    store : FeatureStore (or path) of a genre-labelled collection
    config : see :class:`TransferConfig`
    baselines : any of "genres", "random", "mfcc", "logmel"
    dataset : name shown in tables (default: the store folder's name)

    Returns
    -------
    TransferResult
    """
    baselines = list(baselines)
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline {unknown[0]!r}; choose from {list(BASELINES)}")
    if not config.seeds:
        raise ConfigError("transfer needs at least one seed (seeds=...)")
    store = open_store(store)
    dataset = dataset or Path(getattr(store, "path", "dataset")).name
    labels, parts, source = dataset_split(store.catalog, config=config)
    classes = sorted(set(labels.values()))
    cls_index = {c: i for i, c in enumerate(classes)}
    ids = {p: [t for t in store.track_ids if parts.get(t) == p] for p in ("train", "valid", "test")}
    y = {p: np.array([cls_index[labels[t]] for t in ids[p]], dtype=np.int64) for p in ids}
    counts = {p: len(v) for p, v in ids.items()}
    log.info("transfer on %s: %d classes, %s (%s split)", dataset, len(classes), counts, source)

    def probe(name: str, feats: Mapping[str, np.ndarray]) -> ProbeResult:
        res = linear_probe(
            x_train=feats["train"], y_train=y["train"], x_valid=feats["valid"], y_valid=y["valid"],
            x_test=feats["test"], y_test=y["test"], classes=classes, config=config, method=name,
        )
        log.info("transfer %s: %.3f +- %.3f", name, res.accuracy_mean, res.accuracy_std)
        return res

    methods: dict[str, ProbeResult] = {}
    width = config.baseline_width
    for name, model in models.items():
        all_ids = ids["train"] + ids["valid"] + ids["test"]
        vec = song_embeddings(model, store=store, track_ids=all_ids)
        n_tr, n_va = counts["train"], counts["valid"]
        methods[name] = probe(name, {"train": vec[:n_tr], "valid": vec[n_tr : n_tr + n_va], "test": vec[n_tr + n_va :]})
        if not width:
            width = vec.shape[1] // 2
    width = width or 256
    n_mels = store.feature_config.n_mels
    for base in baselines:
        if base in ("mfcc", "logmel"):
            feats = {p: np.stack([summary_features(store.frames(t), kind=base, n_mfcc=config.n_mfcc) for t in ids[p]]) for p in ids}
            methods[base] = probe(base, feats)
        elif base == "random":
            from .model import Encoder

            # one random encoder per seed: the spread then covers the draw of weights too
            per_seed = []
            mean, std = store.stats(ids["train"])
            for seed in config.seeds:
                torch.manual_seed(seed)
                enc = Encoder(width=width, n_mels=n_mels).eval()
                enc.set_normalization(float(mean), float(max(std, 1e-6)))
                feats = {p: song_embeddings(enc, store=store, track_ids=ids[p]) for p in ids}
                per_seed.append(linear_probe(
                    x_train=feats["train"], y_train=y["train"], x_valid=feats["valid"], y_valid=y["valid"],
                    x_test=feats["test"], y_test=y["test"], classes=classes,
                    config=dataclasses.replace(config, seeds=(seed,)), method="random",
                ))
            methods["random"] = _merge_seeds("random", per_seed)
        elif base == "genres":
            methods["genres"] = genre_cnn_baseline(store=store, ids=ids, y=y, classes=classes, width=width, config=config)
    return TransferResult(
        dataset=dataset, classes=classes,
        counts=counts, split_source=source, methods=methods,
        runs={k: str(v) for k, v in models.items() if isinstance(v, (str, Path))},
    )


def _merge_seeds(name: str, results: Sequence[ProbeResult]) -> ProbeResult:
    accs = [a for r in results for a in r.accuracies]
    conf = np.sum([np.asarray(r.confusion) for r in results], axis=0)
    return ProbeResult(
        method=name, accuracy_mean=float(np.mean(accs)), accuracy_std=float(np.std(accs)), accuracies=accs,
        classes=results[0].classes, confusion=conf.tolist(), chosen=[c for r in results for c in r.chosen],
    )


def transfer_runs(
    runs: Sequence[str | Path],
    *,
    store: Any,
    config: TransferConfig = TransferConfig(),
    baselines: Iterable[str] = BASELINES,
    dataset: str | None = None,
) -> TransferResult:
    """:func:`transfer` for trained run folders, named by their concept."""
    from .evaluate import load_run_model

    infos = [(Path(r), load_run_model(r)[1]) for r in runs]
    names = model_names(infos)
    return transfer({n: Path(r) for n, r in zip(names, runs)}, store=store, config=config, baselines=baselines, dataset=dataset)


def transfer_store(
    *,
    store: str | Path | None = None,
    catalog: str | Path | None = None,
    store_dir: str | Path | None = None,
    feature_config: Any = None,
) -> Any:
    """The FeatureStore of a transfer collection, preparing it from a catalog if needed.

    Parameters
    ----------
    store : an existing store folder, or
    catalog : a catalog CSV with a genre column; its store is prepared (resumably)
        in ``store_dir`` (default ``<catalog folder>/<catalog stem>.store``)
    feature_config : front-end settings for preparing (the model's)
    """
    from .store import FeatureStore, prepare

    if (store is None) == (catalog is None):
        raise ConfigError("give exactly one of --store STORE or --catalog CATALOG for the transfer collection")
    if store is not None:
        return FeatureStore(store)
    from .catalog import read_csv

    catalog = Path(catalog)
    target = Path(store_dir) if store_dir is not None else catalog.with_suffix(".store")
    prepare(read_csv(catalog), target, config=feature_config)
    return FeatureStore(target)
