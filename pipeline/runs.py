"""Training runs keyed by content: the key, the folder, the checkpoint format, and finding a run again.

Layout: ``<store>/runs/<stage>/<key>/`` holds

- ``checkpoint.pt``: ``{"format", "key", "stage", "config", "backbones", "input_dims", "fingerprints",
  "dataset", "teacher", "model", "heads", "epoch", "metrics"}``, the model chosen on the validation split;
- ``config.json`` (the resolved config), ``metrics.json``, ``log.jsonl`` (one line per epoch);
- ``state.pt`` while training: the latest epoch's full state, so a killed run resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from models.vad_model import ModelConfig, VADModel
from pipeline.atomic import atomic_write
from pipeline.config import RunConfig, config_from_dict
from pipeline.errors import UserError
from pipeline.keys import hash_json
from pipeline.store import FeatureStore

CODE_VERSION = "train-1"  # bump when a change to the training code changes what a run produces
CHECKPOINT_FORMAT = 1


class RunNotFound(UserError):
    """The run reference matches no finished run (or several); the message says what exists."""


def run_key(config: RunConfig, *, train_entries: list[tuple[str, int]], feature_keys: list[str],
            teacher: str | None) -> str:
    """hash(feature keys and labels of the training videos, resolved config incl. seed, teacher run, code)."""
    return hash_json({"stage": config.stage, "videos": train_entries, "features": feature_keys,
                      "config": config.to_dict(), "teacher": teacher, "code": CODE_VERSION})


def save_torch(obj, dest: Path) -> Path:
    return atomic_write(dest, lambda f: torch.save(obj, f))


@dataclass
class LoadedRun:
    key: str
    folder: Path
    checkpoint: dict
    config: RunConfig
    model: VADModel  # in eval mode, on the CPU

    @property
    def backbones(self) -> tuple[str, ...]:
        return tuple(self.checkpoint["backbones"])

    @property
    def fingerprints(self) -> dict[str, str]:
        return dict(self.checkpoint["fingerprints"])


def build_model(checkpoint: dict) -> VADModel:
    model = VADModel(checkpoint["input_dims"], ModelConfig(**checkpoint["config"]["model"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def find_run_folder(store: FeatureStore, ref: str, stage: str | None = None) -> Path:
    """A run folder from a path (run folder or its checkpoint.pt) or a unique key prefix (at least 6 chars)."""
    path = Path(ref)
    if path.is_file() and path.name == "checkpoint.pt":
        return path.parent
    if (path / "checkpoint.pt").is_file():
        return path
    stages = [stage] if stage else [p.name for p in sorted((store.root / "runs").glob("*")) if p.is_dir()]
    matches = [folder for s in stages for folder in sorted((store.root / "runs" / s).glob(f"{ref}*"))
               if (folder / "checkpoint.pt").is_file()] if len(ref) >= 6 else []
    if len(matches) == 1:
        return matches[0]
    finished = [f"{r['stage']} {r['key'][:12]}" for r in store.runs(stage) if r["status"] == "done"]
    what = "several runs" if matches else "no finished run"
    raise RunNotFound(f"{ref!r} matches {what} in {store.root} (give a run folder or a unique key prefix of 6+ "
                      f"characters); finished runs: {', '.join(finished) or 'none'}")


def load_run(store: FeatureStore, ref: str, stage: str | None = None) -> LoadedRun:
    folder = find_run_folder(store, ref, stage)
    checkpoint = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise RunNotFound(f"{folder / 'checkpoint.pt'}: checkpoint format {checkpoint.get('format')} is not "
                          f"{CHECKPOINT_FORMAT}; retrain with this version (python -m pipeline.train ... --force)")
    return LoadedRun(key=checkpoint["key"], folder=folder, checkpoint=checkpoint,
                     config=config_from_dict(checkpoint["config"]), model=build_model(checkpoint))
