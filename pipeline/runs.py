"""Training runs keyed by content: the key, the folder, the checkpoint format, and finding a run again.

Layout: ``<store>/runs/<stage>/<key>/`` holds

- ``checkpoint.pt``: ``{"format", "key", "stage", "config", "backbones", "input_dims", "fingerprints",
  "dataset", "teacher", "teachers", "model", "heads", "epoch", "metrics", "grid"}``, the model chosen on the
  validation split (``teacher``: the student's teacher run; ``teachers``: every teacher run, the lightning
  student's; ``grid``: (rows, cols) of its training features, (1, 1) for a global run, absent before grids);
- ``config.json`` (the resolved config), ``metrics.json``, ``log.jsonl`` (one line per epoch);
- ``state.pt`` while training: the latest epoch's full state, so a killed run resumes where it stopped;
- ``calibration.json`` once calibrated (``dakd calibrate``): the record this module alone writes and reads
  (:func:`calibration_record`, :func:`write_calibration`, :func:`load_calibration`), also kept as the
  ``"calibration"`` of the run's export's ``export.json``.

A run is found by reference (a key prefix or its folder) or as the latest of a stage through the store's manifest
(:mod:`pipeline.run_refs`, torch-free, whose names are re-exported here).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from torch import nn

from extractors.base import Backbone
from extractors.files import BadFile, load_module_state, load_torch_file, require_keys
from extractors.registry import build_backbone, frame_backbones
from extractors.transforms import DEFAULT_VIEW
from models.lanet import LANet
from models.lightning_student import LightningStudent
from models.spatial import SpatialMIL
from models.vad_model import VADModel
from pipeline import methods
from pipeline.atomic import atomic_write, atomic_write_json
from pipeline.config import RunConfig, config_from_dict
from pipeline.defaults import EXPORT_FOLDER, EXPORT_JSON, FALSE_ALARM_THRESHOLD
from pipeline.errors import InputError, UserError
from pipeline.keys import hash_json
from pipeline.run_refs import RunNotFound, find_run_folder, latest_run, open_run_store  # noqa: F401 (re-exported)
from pipeline.store import FeatureStore
from pipeline.store.layout import RUN_CHECKPOINT

CODE_VERSION = "train-2"  # bump when a change to the training code changes what a run produces
CHECKPOINT_FORMAT = 1
# What every checkpoint of CHECKPOINT_FORMAT holds (the rest, e.g. "teachers", "heads", may be absent).
CHECKPOINT_KEYS = ("format", "key", "stage", "config", "backbones", "input_dims", "fingerprints", "model")
CHECKPOINT_WHAT = "the run's checkpoint"
CALIBRATION_FILE = "calibration.json"  # in the run folder; also the "calibration" of its export's export.json
CALIBRATION_KINDS = ("live", "offline")  # live: dakd watch's causal windowed scores; offline: dakd detect's
CALIBRATION_REQUIRED = ("thresholds", "target_false_alarms_per_hour", "hours")  # what load_calibration checks
CALIBRATE_FIX = "dakd calibrate RUN --store S --normal VIDEO_OR_FOLDER... (or --split val)"


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
    from the store's extractor params; features imported from elsewhere have none: 1 crop, the centre frame). A
    spatial run's backbone also keeps the grid choice of its training features (``"native"`` or ``"RxC"``: it gives
    the cells the run scores); a global run's is built without one, as before grids, even on a grid store (it scores
    the global feature)."""
    params = store.extractor_params(run.fingerprints[name])
    frames = len(params.get("frame_indices", [0])) if name in frame_backbones() else 1
    view = params.get("preprocessing", {}).get("view", DEFAULT_VIEW)  # absent: the crop view (made before views)
    grid = params.get("grid") if run.spatial else None
    return build_backbone(name, weights=weights, crops=params.get("crops", 1), frames=frames, view=view,
                          grid=grid, device=device)


def build_network(config: RunConfig, input_dims: list[int], n_teachers: int = 1) -> nn.Module:
    """The stage's network, from its row's builder in ``pipeline.methods``. Each maps a list of ``[N, L, D_b]``
    tensors to an output with ``.scores`` ``[N, L]``; a spatial run's (``config.spatial_active``) is wrapped in
    ``SpatialMIL``, which maps ``[N, L, C_b, D_b]`` to ``.scores`` ``[N, L]`` and ``.cell_scores`` ``[N, L, C]``."""
    network = methods.get(config.stage).build_network(config, input_dims, n_teachers)
    if not config.spatial_active:
        return network
    return SpatialMIL(network, input_dims, config.spatial, scored=config.cell_scored)


# The built-in methods' builders (pipeline.methods names them): config, input sizes, teachers -> network.
def vad_network(config: RunConfig, input_dims: list[int], n_teachers: int = 1) -> VADModel:
    """The teacher's and the student's ``VADModel`` over ``input_dims`` (one per backbone)."""
    return VADModel(input_dims, config.model)


def lanet_network(config: RunConfig, input_dims: list[int], n_teachers: int = 1) -> LANet:
    """``LANet`` over ``input_dims`` (concatenated)."""
    return LANet(input_dims, config.lanet)


def lightning_network(config: RunConfig, input_dims: list[int], n_teachers: int = 1) -> LightningStudent:
    """The ``LightningStudent`` with one head per teacher (it reads pixels: ``input_dims`` does not size it); a map
    student's (``config.map_student``) with map heads on the run's grid, its snippet scores the top ``spatial.k``
    cells'."""
    if config.map_student:
        return LightningStudent(n_teachers, config.lightning, grid=config.grid, k_top=config.spatial.k)
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
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the features the run was trained on: ``(1, 1)`` for a global run (and for runs saved
        before grids)."""
        rows, cols = self.checkpoint.get("grid") or self.config.grid
        return int(rows), int(cols)

    @property
    def spatial(self) -> bool:
        """Whether the run scores cells (its model is ``SpatialMIL``, its outputs carry ``cell_scores``)."""
        return isinstance(self.model, SpatialMIL)

    @property
    def map_student(self) -> bool:
        """Whether the run is a lightning student distilled from maps: it reads the stored low-resolution frames
        as a global run does and its outputs carry ``cell_scores`` on its ``grid`` (method.md §9)."""
        return isinstance(self.model, LightningStudent) and self.model.grid is not None

    @property
    def has_maps(self) -> bool:
        """Whether scoring the run gives anomaly maps on its ``grid``: a spatial run or a map student."""
        return self.spatial or self.map_student

    def scoring_inputs(self, features) -> tuple[list, list[tuple[int, int]]]:
        """One video's features as the run scores them (``features``: a ``pipeline.features.VideoFeatures``): per
        backbone ``[T, cells, D_b]`` and its grid for a spatial run (``VideoFeatures.load_cells``), else the stored
        ``[T, crops, D_b]`` (a grid feature's cells' mean) with grid ``(1, 1)``. For
        ``pipeline.evaluate.scoring``."""
        if self.spatial:
            return ([features.load_cells(b) for b in self.backbones], [features.grid(b) for b in self.backbones])
        return [features.load(b) for b in self.backbones], [(1, 1)] * len(self.backbones)

    @property
    def attention_heads(self) -> int:
        """Heads of the run's attention maps (what bounds scoring memory; the lightning student has none)."""
        return methods.get(self.checkpoint["stage"]).attention_heads(self.config)


def retrain_fix(folder: Path) -> str:
    """What to do about a run whose checkpoint cannot be used: train it again (``--force``, since the file's
    presence marks the run finished)."""
    return (f"re-run dakd train {folder.parent.name} with this run's arguments and --force to train "
            f"it again (or delete {folder})")


def build_model(checkpoint: dict, path: Path | str = RUN_CHECKPOINT, fix: str = "train the run again") -> nn.Module:
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
    path, fix = folder / RUN_CHECKPOINT, retrain_fix(folder)
    checkpoint = load_torch_file(path, CHECKPOINT_WHAT, fix)
    if isinstance(checkpoint, dict) and checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise RunNotFound(f"{path}: checkpoint format {checkpoint.get('format')} is not "
                          f"{CHECKPOINT_FORMAT}; retrain with this version (dakd train ... --force)")
    require_keys(checkpoint, CHECKPOINT_KEYS, path, CHECKPOINT_WHAT, fix)
    model = build_model(checkpoint, path, fix)
    return LoadedRun(key=checkpoint["key"], folder=folder, checkpoint=checkpoint,
                     config=config_from_dict(checkpoint["config"]), model=model)


# -- the calibration record ------------------------------------------------------------------------------------
def calibration_record(run_key: str, stage: str, *, rule, window: int, target: float, hours: float,
                       videos: list[str], n_snippets: int, choices: dict, zero_events_only: bool,
                       source: str, smoothing: int = 1) -> dict:
    """calibration.json's content. ``rule``: the :class:`pipeline.alert_rule.AlertRule` whose events were counted
    (its ``open_after`` / ``close_after`` are recorded; the thresholds are the chosen ones); ``choices``: per kind
    of :data:`CALIBRATION_KINDS`, its choice (``.threshold``, ``.events``, ``.margin``:
    ``pipeline.calibrate.calibrator.Choice``); ``window``: the live scores' window; ``smoothing``: the snippets
    the offline scores were smoothed over (:func:`calibrated_smoothing`)."""
    return {
        "run": run_key, "stage": stage, "target_false_alarms_per_hour": target, "hours": hours,
        "videos": list(videos), "n_snippets": int(n_snippets),
        "open_after": int(rule.open_after), "close_after": int(rule.close_after), "window": window,
        "smoothing_snippets": int(smoothing),
        "thresholds": {kind: c.threshold for kind, c in choices.items()},
        "false_alarms": {kind: c.events for kind, c in choices.items()},
        "margins": {kind: c.margin for kind, c in choices.items()},
        "zero_events_only": zero_events_only, "source": source,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_calibration(record: dict, run_folder: Path, out: Path | None) -> tuple[Path, Path | None]:
    """Write ``record`` to ``out`` or ``<run folder>/calibration.json``; with the latter, also into the run's
    default export folder's export.json when there is one. Returns (file written, export.json updated or None)."""
    if out is not None:
        return atomic_write_json(out, record), None
    path = atomic_write_json(run_folder / CALIBRATION_FILE, record)
    export = run_folder / EXPORT_FOLDER / EXPORT_JSON
    if export.is_file():
        try:
            info = json.loads(export.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{export} cannot be read ({type(exc).__name__}: {exc}), so its calibration was not "
                             f"updated ({path} was written): export the run again with dakd export "
                             f"{record['run'][:12]} --store S") from None
        if isinstance(info, dict):
            info["calibration"] = record
            atomic_write_json(export, info)
            return path, export
    return path, None


def _damaged(path: Path, why: str) -> UserError:
    return InputError(f"{path} holds no readable calibration ({why}): calibrate the run again with "
                      f"{CALIBRATE_FIX}")


def _checked(calibration, path: Path) -> dict:
    if not isinstance(calibration, dict):
        raise _damaged(path, f"a JSON {type(calibration).__name__} where an object belongs")
    missing = [k for k in CALIBRATION_REQUIRED if k not in calibration]
    if missing:
        raise _damaged(path, f"no {', '.join(missing)}")
    thresholds = calibration["thresholds"]
    if not isinstance(thresholds, dict):
        raise _damaged(path, "its thresholds are not an object")
    for kind in CALIBRATION_KINDS:
        value = thresholds.get(kind)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise _damaged(path, f"its {kind} threshold is {value!r}, not a number")
    return calibration


def load_calibration(folder: str | Path) -> dict | None:
    """The calibration of a run folder (its ``calibration.json``) or of an export folder (``export.json``'s
    ``"calibration"``); a calibration JSON file's path works too. None when there is none. Raises UserError naming
    the file and the fix when it cannot be read."""
    folder = Path(folder)
    if folder.is_file():
        path, inside_export = folder, folder.name == EXPORT_JSON
    elif (folder / CALIBRATION_FILE).is_file():
        path, inside_export = folder / CALIBRATION_FILE, False
    elif (folder / EXPORT_JSON).is_file():
        path, inside_export = folder / EXPORT_JSON, True
    else:
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _damaged(path, f"{type(exc).__name__}: {exc}") from None
    if inside_export:
        if not isinstance(content, dict):
            raise _damaged(path, "not a JSON object")
        content = content.get("calibration")
        if content is None:
            return None
    return _checked(content, path)


def calibration_source(calibration: dict) -> str:
    """``calibration (1 false alarm/h on 0.3 h)``: where a threshold came from, for a summary line."""
    target, hours = calibration["target_false_alarms_per_hour"], calibration["hours"]
    return f"calibration ({target:g} false alarm{'' if target == 1 else 's'}/h on {hours:.2g} h)"


def threshold_for(calibration: dict | None, kind: str, explicit: float | None) -> tuple[float, str]:
    """(threshold, where it came from) for scores of ``kind`` (``"live"`` or ``"offline"``): ``explicit`` (a
    ``--threshold``) first, then the calibration's, else the uncalibrated default."""
    if kind not in CALIBRATION_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CALIBRATION_KINDS)}, got {kind!r}")
    if explicit is not None:
        return float(explicit), "--threshold"
    if calibration is not None:
        return float(calibration["thresholds"][kind]), calibration_source(calibration)
    return FALSE_ALARM_THRESHOLD, f"uncalibrated default {FALSE_ALARM_THRESHOLD:g}"


def calibrated_counts(calibration: dict) -> tuple[int, int] | None:
    """(open_after, close_after) of the rule the calibration counted events with; None when it does not say."""
    if calibration.get("open_after") is None and calibration.get("close_after") is None:
        return None
    return calibration.get("open_after"), calibration.get("close_after")


def calibrated_smoothing(calibration: dict) -> int:
    """The snippets the offline scores were smoothed over (``dakd calibrate --smoothing``); 1 for a calibration
    that does not say (made before detect smoothed: on the model's own scores)."""
    return int(calibration.get("smoothing_snippets", 1))


def calibrated_window(calibration: dict) -> int | None:
    """The live window (snippets) the calibration scored with; None when it does not say."""
    return calibration.get("window")
