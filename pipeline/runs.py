"""Training runs keyed by content: the key, the folder, the checkpoint format, and finding a run again.

Layout: ``<store>/runs/<stage>/<key>/`` holds

- ``checkpoint.pt``: ``{"format", "key", "stage", "config", "backbones", "input_dims", "fingerprints",
  "dataset", "teacher", "teachers", "model", "heads", "epoch", "metrics"}``, the model chosen on the validation
  split (``teacher``: the student's teacher run; ``teachers``: every teacher run, the lightning student's);
- ``config.json`` (the resolved config), ``metrics.json``, ``log.jsonl`` (one line per epoch);
- ``state.pt`` while training: the latest epoch's full state, so a killed run resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from torch import nn

from extractors.base import Backbone
from extractors.files import BadFile, load_module_state, load_torch_file, require_keys
from extractors.registry import build_backbone, frame_backbones
from extractors.transforms import DEFAULT_VIEW
from models.lanet import LANet
from models.lightning_student import LightningStudent
from models.vad_model import VADModel
from pipeline import methods
from pipeline.atomic import atomic_write
from pipeline.config import RunConfig, config_from_dict
from pipeline.errors import UserError
from pipeline.keys import hash_json
from pipeline.run_refs import RunNotFound, find_run_folder, open_run_store  # noqa: F401 (re-exported)
from pipeline.store import FeatureStore

CODE_VERSION = "train-2"  # bump when a change to the training code changes what a run produces
CHECKPOINT_FORMAT = 1
# What every checkpoint of CHECKPOINT_FORMAT holds (the rest, e.g. "teachers", "heads", may be absent).
CHECKPOINT_KEYS = ("format", "key", "stage", "config", "backbones", "input_dims", "fingerprints", "model")
CHECKPOINT_WHAT = "the run's checkpoint"


def run_key(config: RunConfig, *, train_entries: list[tuple[str, int]], feature_keys: list[str],
            teacher: str | list[str] | None) -> str:
    """hash(feature keys and labels of the training videos, resolved config incl. seed, teacher run, code)."""
    return hash_json({"stage": config.stage, "videos": train_entries, "features": feature_keys,
                      "config": config.to_dict(), "teacher": teacher, "code": CODE_VERSION})


def save_torch(obj, dest: Path) -> Path:
    return atomic_write(dest, lambda f: torch.save(obj, f))


def training_backbone(run: LoadedRun, store: FeatureStore, name: str, *, weights: str | None,
                      device) -> Backbone:
    """Backbone ``name`` of ``run`` built with the crops, frames and view its training features were made with (read
    from the store's extractor params; features imported from elsewhere have none: 1 crop, the centre frame)."""
    params = store.extractor_params(run.fingerprints[name])
    frames = len(params.get("frame_indices", [0])) if name in frame_backbones() else 1
    view = params.get("preprocessing", {}).get("view", DEFAULT_VIEW)  # absent: the crop view (made before views)
    return build_backbone(name, weights=weights, crops=params.get("crops", 1), frames=frames, view=view,
                          device=device)


def build_network(config: RunConfig, input_dims: list[int], n_teachers: int = 1) -> nn.Module:
    """The stage's network, from its row's builder in ``pipeline.methods``. Each maps a list of ``[N, L, D_b]``
    tensors to an output with ``.scores`` ``[N, L]``."""
    return methods.get(config.stage).build_network(config, input_dims, n_teachers)


# The built-in methods' builders (pipeline.methods names them): config, input sizes, teachers -> network.
def vad_network(config: RunConfig, input_dims: list[int], n_teachers: int = 1) -> VADModel:
    """The teacher's and the student's ``VADModel`` over ``input_dims`` (one per backbone)."""
    return VADModel(input_dims, config.model)


def lanet_network(config: RunConfig, input_dims: list[int], n_teachers: int = 1) -> LANet:
    """``LANet`` over ``input_dims`` (concatenated)."""
    return LANet(input_dims, config.lanet)


def lightning_network(config: RunConfig, input_dims: list[int], n_teachers: int = 1) -> LightningStudent:
    """The ``LightningStudent`` with one head per teacher (it reads pixels: ``input_dims`` does not size it)."""
    return LightningStudent(n_teachers, config.lightning)


@dataclass
class LoadedRun:
    key: str
    folder: Path
    checkpoint: dict
    config: RunConfig
    model: nn.Module  # in eval mode, on the CPU; called as model([x_b ...]).scores

    @property
    def backbones(self) -> tuple[str, ...]:
        return tuple(self.checkpoint["backbones"])

    @property
    def fingerprints(self) -> dict[str, str]:
        return dict(self.checkpoint["fingerprints"])

    @property
    def attention_heads(self) -> int:
        """Heads of the run's attention maps (what bounds scoring memory; the lightning student has none)."""
        return methods.get(self.checkpoint["stage"]).attention_heads(self.config)


def retrain_fix(folder: Path) -> str:
    """What to do about a run whose checkpoint cannot be used: train it again (``--force``, since the file's
    presence marks the run finished)."""
    return (f"re-run dakd train {folder.parent.name} with this run's arguments and --force to train "
            f"it again (or delete {folder})")


def build_model(checkpoint: dict, path: Path | str = "checkpoint.pt", fix: str = "train the run again") -> nn.Module:
    """The checkpoint's network in eval mode. Raises :class:`extractors.files.BadFile` naming ``path`` and
    ``fix`` when its config, input sizes or tensors do not make a network."""
    try:
        config = config_from_dict(checkpoint["config"])
        model = build_network(config, list(checkpoint["input_dims"]), len(checkpoint.get("teachers") or [None]))
    except (UserError, KeyError, TypeError, ValueError, AttributeError) as exc:  # a damaged or foreign config
        raise BadFile(path, f"{CHECKPOINT_WHAT} holds a config or input sizes this version cannot build a network "
                      f"from ({type(exc).__name__}: {exc})", fix) from None
    load_module_state(model, checkpoint["model"], path, f"{CHECKPOINT_WHAT}'s model", fix)
    return model.eval()


def load_run(store: FeatureStore, ref: str, stage: str | None = None) -> LoadedRun:
    """The run ``ref`` names, its checkpoint read and its network built. Raises RunNotFound, or
    :class:`extractors.files.BadFile` naming the checkpoint when it is damaged, refused or foreign."""
    folder = find_run_folder(store, ref, stage)
    path, fix = folder / "checkpoint.pt", retrain_fix(folder)
    checkpoint = load_torch_file(path, CHECKPOINT_WHAT, fix)
    if isinstance(checkpoint, dict) and checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise RunNotFound(f"{path}: checkpoint format {checkpoint.get('format')} is not "
                          f"{CHECKPOINT_FORMAT}; retrain with this version (dakd train ... --force)")
    require_keys(checkpoint, CHECKPOINT_KEYS, path, CHECKPOINT_WHAT, fix)
    model = build_model(checkpoint, path, fix)
    return LoadedRun(key=checkpoint["key"], folder=folder, checkpoint=checkpoint,
                     config=config_from_dict(checkpoint["config"]), model=model)
