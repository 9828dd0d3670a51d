"""The model that ships inside the package, and how ``make main`` makes it.

``musicrep embed song.mp3`` with no ``--run`` uses the joint model that the main job
trains on the built-in corpus (``musicrep/models/``): its weights in the project's
safe checkpoint format (read with ``weights_only=True``, digest-checked), without the
optimizer state, and a model card (``MODEL_CARD.md`` and ``model.json``) with the
training data, the settings, the hold-out and transfer numbers the main job measured,
the licences of the training music and the file's SHA-256.

It is a small model (width 128) trained on 265 game-soundtrack tracks by 34
composers: good for trying the tools and for "more like this" within music of that
kind; not a general-purpose music embedding. Train on your own collection (``musicrep
train --profile auto``) for anything else.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from ..errors import CheckpointError
from ..io import atomic_write_json, atomic_write_text
from ..training.checkpoint import read_checkpoint, save_checkpoint

MODEL_FILE = "musicrep-games-joint.pt"
CARD_JSON = "model.json"
CARD_MD = "MODEL_CARD.md"
#: What the shipped file keeps of a training checkpoint (no optimizer, no RNG state).
KEEP = ("model", "model_config", "feature_config", "concept", "config", "epoch", "step", "best_metric", "monitor")


def models_dir() -> Path:
    """The package folder holding the shipped model."""
    return Path(str(resources.files("musicrep") / "models"))


def shipped_model(*, folder: str | Path | None = None) -> Path:
    """Path of the shipped checkpoint, after checking its SHA-256 against the card.

    Raises :class:`CheckpointError` when the file or its card is missing (a source
    tree where ``make main`` never ran) or the checksum differs.
    """
    folder = Path(folder) if folder is not None else models_dir()
    path, card = folder / MODEL_FILE, folder / CARD_JSON
    if not path.is_file() or not card.is_file():
        raise CheckpointError(f"{folder}: no shipped model ({MODEL_FILE} and {CARD_JSON}); give a trained run "
                              "with --run RUN, or run `make main` to train and package one")
    expected = json.loads(card.read_text(encoding="utf-8")).get("sha256")
    if sha256(path) != expected:
        raise CheckpointError(f"{path}: SHA-256 differs from the one in {card.name}; the file was changed or "
                              "damaged (reinstall musicrep or rerun `make main`)")
    return path


def sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_model(
    *,
    run_dir: str | Path,
    out_dir: str | Path,
    holdout: dict | None = None,
    transfer: dict | None = None,
    corpus: dict | None = None,
    licenses: dict[str, int] | None = None,
    command: str = "make main",
    corpus_name: str = "games",
) -> Path:
    """Write a finished run's best checkpoint, stripped, and its model card to ``out_dir``.

    Parameters
    ----------
    run_dir : a finished training run (it must hold ``DONE``)
    out_dir : where ``MODEL_FILE``, ``model.json`` and ``MODEL_CARD.md`` go
    holdout : the main job's ``results/holdout.json`` (its row for this model goes in the card)
    transfer : the main job's transfer result (``results/transfer-<corpus>.json``)
    corpus : the training corpus's ``summary.json``
    licenses : licence -> number of training tracks (the corpus catalog's ``license`` column)
    command : the command that made it, for the card
    corpus_name : the built-in corpus it trained on (``games-full``, ``games``...), for the card

    Returns
    -------
    Path of the written checkpoint
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "DONE").is_file():
        raise CheckpointError(f"{run_dir}: training did not finish (no DONE); only a finished run is packaged")
    ckpt = read_checkpoint(run_dir / "best.pt")
    path = save_checkpoint({k: ckpt[k] for k in KEEP if k in ckpt}, path=out_dir / MODEL_FILE)
    concept = ckpt.get("concept", "joint")
    card = {
        "file": MODEL_FILE,
        "sha256": sha256(path),
        "bytes": path.stat().st_size,
        "concept": concept,
        "made_by": command,
        "corpus": corpus_name,
        "epoch": ckpt.get("epoch"),
        "settings": ckpt.get("config", {}),
        "model_config": ckpt.get("model_config", {}),
        "feature_config": ckpt.get("feature_config", {}),
        "holdout": _holdout_row(holdout, concept),
        "transfer": _transfer_row(transfer, concept),
        "training_data": _corpus_facts(corpus),
        "licenses": dict(sorted((licenses or {}).items(), key=lambda kv: (-kv[1], kv[0]))),
    }
    atomic_write_json(out_dir / CARD_JSON, obj=card)
    atomic_write_text(out_dir / CARD_MD, text=model_card(card))
    return path


def _holdout_row(holdout: dict | None, model: str) -> dict:
    if not holdout or model not in holdout.get("accuracy", {}):
        return {}
    return {c: {"accuracy": holdout["accuracy"][model][c], "interval": holdout.get("interval", {}).get(model, {}).get(c)}
            for c in holdout.get("concepts", [])}


def _transfer_row(transfer: dict | None, model: str) -> dict:
    if not transfer or model not in transfer.get("methods", {}):
        return {}
    m = transfer["methods"][model]
    return {"dataset": transfer.get("dataset", ""), "label": transfer.get("label_column", ""),
            "accuracy_mean": m.get("accuracy_mean"), "accuracy_std": m.get("accuracy_std"),
            "trials": len(m.get("accuracies", []))}


def _corpus_facts(corpus: dict | None) -> dict:
    if not corpus:
        return {}
    keys = ("tracks", "hours", "artists", "albums", "packages", "licenses")
    out = {}
    for k in keys:
        v = corpus.get(k)
        out[k] = len(v) if isinstance(v, (dict, list)) and k in ("artists", "albums", "packages") else v
    return {k: v for k, v in out.items() if v is not None}


def model_card(card: dict) -> str:
    """The human-readable model card (Markdown) for a ``model.json`` dictionary."""
    s, data = card.get("settings", {}), card.get("training_data", {})
    lines = [
        f"# musicrep shipped model: {card['concept']} ({card['file']})",
        "",
        "**What it is.** A Siamese 1-D CNN encoder (Lee, Park & Nam 2019) trained by the main job "
        f"(`{card['made_by']}`) on the built-in `{card.get('corpus', 'games')}` corpus: Debian game soundtracks, "
        "artist = composer, album = the soundtrack (its album tag, else the game). Input: 3-s log-mel segments (22,050 Hz, 128 mels); a song's vector is the mean "
        f"of its non-overlapping segments' embeddings ({2 * s.get('width', 0)}-d).",
        "",
        "**Good for**: trying musicrep's tools (embed, search, index) without training; \"more like this\" among "
        "game and similar instrumental music. **Not** a general-purpose music embedding: it saw "
        f"{data.get('tracks', '?')} tracks by {data.get('artists', '?')} composers. Train on your own collection "
        "(`musicrep train --profile auto`) for anything else.",
        "",
        "## Training",
        "",
        f"- data: {data.get('tracks', '?')} tracks, {data.get('hours', '?')} h, {data.get('artists', '?')} "
        f"composers, {data.get('albums', '?')} albums from {data.get('packages', '?')} Debian packages",
        f"- settings: width {s.get('width')}, {s.get('negatives')} negatives, batch {s.get('batch_size')}, "
        f"lr {s.get('lr')}, {s.get('epochs')} x {s.get('steps_per_epoch')} steps (best epoch {card.get('epoch')}), "
        f"margins {s.get('margin_artist')} / {s.get('margin_album')} / {s.get('margin_track')}, seed {s.get('seed')}",
        "- licences of the training music (tracks per licence, as the Debian packages state them; per track "
        "in the corpus catalog's `license` column): "
        + (", ".join(f"{k} {v}" for k, v in card.get("licenses", {}).items()) or "not recorded"),
        "",
        "## Measured by the main job",
        "",
    ]
    if card.get("holdout"):
        lines += ["| hold-out test (4 negatives, chance 0.2) | accuracy | 95% interval (bootstrap over test songs) |",
                  "| --- | --- | --- |"]
        for c, v in card["holdout"].items():
            lo_hi = v.get("interval") or [float("nan"), float("nan")]
            lines.append(f"| {c} | {v['accuracy']:.3f} | [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}] |")
        lines.append("")
    if card.get("transfer"):
        t = card["transfer"]
        lines += [f"Transfer to {t['dataset']} ({t['label']}), linear probe, {t['trials']} trials: "
                  f"{t['accuracy_mean']:.3f} ± {t['accuracy_std']:.3f}.", ""]
    lines += ["## File", "", f"- `{card['file']}`: {card['bytes']:,} bytes, SHA-256 `{card['sha256']}`",
              "- read with `torch.load(weights_only=True)`; its contents carry a digest that musicrep checks", ""]
    return "\n".join(lines)
