"""Training runs, the engine of stages 2-3 (the command line is ``pipeline.train``, the typed API
``pipeline.api.train``): a teacher, student, LA-Net or lightning run, one seed at a time.

Features come from the store (extracted or imported), are pooled into 32 segments per video (method.md §2) and
held in memory; the lightning student reads windows of consecutive snippets' low-resolution frames instead. A
run trains ``train.epochs`` epochs, and at least ``train.min_steps`` optimizer steps (in whole epochs), so a set of a
few dozen clips, whose epoch is one step, trains as long as a large one. A stratified validation split carved from
the training videos picks the checkpoint (never the test set): the epoch with the best video-level AUC (max segment
score vs the video's label), ties broken by the validation margin (mean difference of the anomalous and normal
videos' max scores, which does not saturate at 1.0 as the AUC does), then the lower validation loss. When the split
would hold fewer than ``train.min_val_videos`` videos of a label, there is none: every video trains and the last
epoch is kept. Runs are keyed by content; a finished run is a cache hit, a killed one resumes from its last saved
epoch. ``--seeds N`` trains N seeds and reports mean ± std.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import filelock
import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from data.datasets import DatasetSpec
from extractors.files import BadFile, load_module_state, load_torch_file, require_keys
from pipeline import methods
from pipeline.atomic import atomic_write_json, atomic_write_text
from pipeline.config import LOWRES, RunConfig
from pipeline.defaults import CHECKPOINT_MIN_STEPS, DEFAULT_CHECKPOINT_EVERY
from pipeline.errors import UsageError, UserError
from pipeline.features import FeatureSet, missing_message, resolve_features
from pipeline.runs import (CHECKPOINT_FORMAT, LoadedRun, build_network, load_run, retrain_fix, run_key,
                           save_torch)
from pipeline.store import FeatureStore
from pipeline.store.layout import LOCKS, RUN_CHECKPOINT, RUN_LOCK
from pipeline.train.cells import build_cell_data, fit_model, run_grid
from pipeline.train.data import SegmentData, build_segment_data, epoch_batches, validation_split
from pipeline.train.lightning_student import SnippetWindows, build_snippet_windows, map_grid
from pipeline.train.objectives import TeacherTargets, teacher_targets

SEED_STRIDE = 1_000_003  # per-epoch seeds: seed * SEED_STRIDE + epoch, so a resumed run draws the same batches
RESUME_KEYS = ("modules", "optimizer", "scaler", "history", "best", "best_state", "epoch")  # what state.pt holds

FAILED = "failed"  # manifest status of a run stopped by non-finite numbers (beside "running" and "done")

log = logging.getLogger("pipeline.train")


class NonFiniteLoss(UserError):
    """A training loss, validation value or weight became NaN or infinite: the run stops, marked failed."""


def validation_video_scores(scores: torch.Tensor, data: SegmentData, rows: np.ndarray) -> dict:
    """Video-level selection criteria from the max segment score of each validation video (crops averaged
    first): ``val_video_auc`` (ROC-AUC, None with one class) and ``val_margin``, the mean over (anomalous,
    normal) pairs of the difference of their max scores (None with one class). The AUC saturates at 1.0 as soon
    as the classes are apart; the margin keeps rising while they move further apart, so it breaks the AUC's ties."""
    videos = data.video[rows].numpy()
    per_video, labels = [], []
    for v in np.unique(videos):
        per_video.append(float(scores[videos == v].mean(0).max()))
        labels.append(data.videos[v].entry.label)
    if len(set(labels)) < 2:
        return {"val_video_auc": None, "val_margin": None}
    top, labels = np.array(per_video), np.array(labels)
    margin = float((top[labels == 1][:, None] - top[labels == 0][None, :]).mean())
    return {"val_video_auc": float(roc_auc_score(labels, top)), "val_margin": margin}


def _better(candidate: dict, best: dict | None) -> bool:
    """Selection order: validation video AUC, then the validation margin, then the lower validation loss."""
    if best is None:
        return True
    for name in ("val_video_auc", "val_margin"):
        a, b = candidate.get(name), best.get(name)
        if a is not None and b is not None and a != b:
            return a > b
    la, lb = candidate.get("val_loss", math.nan), best.get("val_loss", math.nan)
    return not math.isnan(la) and (math.isnan(lb) or la < lb)


def training_epochs(config: RunConfig, batches_per_epoch: int) -> int:
    """Epochs a run trains: ``train.epochs``, or more when that is fewer than ``train.min_steps`` optimizer steps."""
    t = config.train
    return max(t.epochs, math.ceil(t.min_steps / max(batches_per_epoch, 1)))


@dataclass
class Selection:
    """Which stored features a training run uses (cheap: manifest lookups only). Enough for the run key."""

    features: FeatureSet  # the run's own backbones
    teachers: list[LoadedRun]  # the student's one teacher, the lightning student's several; else empty
    teacher_features: list[FeatureSet]  # per teacher: its backbones, the same videos in the same order
    grid: tuple[int, int] = (1, 1)  # the features' grid (run_grid): (1, 1) when every backbone is global

    def teacher_ref(self) -> str | list[str] | None:
        """What the run key and checkpoint record of the teachers."""
        keys = [t.key for t in self.teachers]
        return keys if len(keys) > 1 else (keys[0] if keys else None)


@dataclass
class TrainingSet:
    """The pooled training data, built once and shared by every seed (loading features is the slow part)."""

    data: SegmentData | SnippetWindows
    train_rows: np.ndarray
    val_rows: np.ndarray
    teacher_targets: TeacherTargets | None  # the student's


def select_features(store: FeatureStore, config: RunConfig, spec: DatasetSpec, *, teachers: list[LoadedRun],
                    fingerprints: dict[str, str], allow_missing: bool) -> tuple[Selection, list[str]]:
    """Find the training videos' features in the store (and every teacher's). Returns (selection, warnings)."""
    entries = spec.split("train")
    if not entries:
        raise UserError(f"{spec.name} ({spec.source}) has no training videos (split 'train')")
    features = resolve_features(store, entries, config.backbones, fingerprints)
    teacher_features = [resolve_features(store, entries, t.backbones, t.fingerprints) for t in teachers]
    for teacher, tf in zip(teachers, teacher_features):  # keep the videos every teacher can score
        have = {vf.entry.name for vf in tf.found}
        features.missing += [(vf.entry, list(teacher.backbones)) for vf in features.found
                             if vf.entry.name not in have]
        features.found = [vf for vf in features.found if vf.entry.name in have]
    for tf in teacher_features:
        by_name = {vf.entry.name: vf for vf in tf.found}
        tf.found = [by_name[vf.entry.name] for vf in features.found]
    warnings = []
    if features.missing:
        message = missing_message(features, spec.name, store)
        if not allow_missing:
            raise UserError(message)
        warnings.append(message)
    labels = [vf.entry.label for vf in features.found]
    if 1 not in labels or 0 not in labels:
        raise UserError(f"training needs both anomalous and normal videos with features; found "
                        f"{labels.count(1)} anomalous and {labels.count(0)} normal")
    # a map student's grid is its spatial teachers' (its own low-resolution frames are global)
    grid = map_grid(teachers) if methods.get(config.stage).maps else run_grid(features, config.backbones)
    return Selection(features, list(teachers), teacher_features, grid), warnings


def with_grid(config: RunConfig, selection: Selection) -> RunConfig:
    """The config of a run on ``selection``'s features: with their grid when that makes the run spatial
    (``RunConfig.spatial_active``) or a map student (``RunConfig.map_student``: the grid of its teachers), else
    unchanged (a global run: grid (1, 1), its key as before grids)."""
    spatial = dataclasses.replace(config, grid=selection.grid)
    return spatial if spatial.spatial_active or spatial.map_student else config


def build_training_set(selection: Selection, config: RunConfig, device: torch.device) -> TrainingSet:
    """Load and pool the selected features, place them for ``device``, split off validation, and run the frozen
    teachers once over every training row (student: its segments; lightning: every snippet)."""
    config = with_grid(config, selection)
    t = config.train
    targets = None
    method = methods.get(config.stage)
    if config.spatial_active:
        if t.crops != "mean":
            raise UserError("the cells of grid features are the samples of spatial MIL; train with `overrides` "
                            "train.crops=mean (or spatial.cells=off to train on the cells' mean)")
        data = build_cell_data(selection.features.found, config.backbones, grid=config.grid,
                               n_segments=t.n_segments, stretch=t.stretch_short_videos, spatial=config.spatial)
        log.info("training data on a %dx%d grid (%.0f MiB) held in %s memory", *config.grid, data.nbytes() / 2**20,
                 data.place(device))
    elif method.data == methods.FRAME_WINDOWS:
        stored, expected = selection.features.found[0].open(LOWRES).shape[-1], config.lightning.input_dim
        if stored != expected:
            raise UserError(f"the stored low-resolution frames have {stored} values per snippet but the lightning "
                            f"config expects frames x size x size = {expected}: set lightning.frames and "
                            "lightning.size to the extraction's (extractors.lowres)")
        data = build_snippet_windows(selection.features.found, selection.teachers,
                                     [tf.found for tf in selection.teacher_features],
                                     window=config.adversarial.window, device=device, precision=t.precision,
                                     grid=config.grid if config.map_student else None)
        if data.truncated:
            log.warning("%d snippets cut where the teachers' features and the low-res frames disagree on the "
                        "snippet count", data.truncated)
    else:
        data = build_segment_data(selection.features.found, config.backbones, n_segments=t.n_segments,
                                  crops=t.crops, stretch=t.stretch_short_videos)
        log.info("training data (%.0f MiB) held in %s memory", data.nbytes() / 2**20, data.place(device))
    if method.teachers == methods.ONE_TEACHER:
        teacher = selection.teachers[0]
        if teacher.spatial:  # on its own grid, its cells prepared by its own reduction
            teacher_data = build_cell_data(selection.teacher_features[0].found, teacher.backbones, grid=teacher.grid,
                                           n_segments=t.n_segments, stretch=t.stretch_short_videos,
                                           spatial=teacher.config.spatial, model=teacher.model)
        else:
            teacher_data = build_segment_data(selection.teacher_features[0].found, teacher.backbones,
                                              n_segments=t.n_segments, crops=t.crops, stretch=t.stretch_short_videos)
        if len(teacher_data) != len(data):
            raise UserError("the teacher's and the student's features have different crop counts; distill with "
                            "`overrides` train.crops=mean")
        if not torch.equal(teacher_data.row_lengths(np.arange(len(data))), data.row_lengths(np.arange(len(data)))):
            raise UserError("the teacher's and the student's features of some short videos differ in snippet "
                            "count, so their segments do not line up; distill with "
                            "`overrides` train.stretch_short_videos=true")
        teacher_data.place(device)
        targets = teacher_targets(copy.deepcopy(teacher.model), teacher_data, device, t.precision)
    labels = np.array([vf.entry.label for vf in selection.features.found])
    train_videos, val_videos = validation_split(labels, t.val_fraction, t.split_seed, min_videos=t.min_val_videos)
    return TrainingSet(data, data.rows_of(train_videos), data.rows_of(val_videos), targets)


class TrainingJob:
    """One training run (one seed): builds the model, trains, selects on validation, saves."""

    def __init__(self, store: FeatureStore, selection: Selection, config: RunConfig, *, device: torch.device,
                 dataset_ref: str, checkpoint_every: int | None, progress: bool):
        config = with_grid(config, selection)
        self.store, self.selection, self.config, self.device = store, selection, config, device
        self.precision = config.train.precision
        self.dataset_ref = dataset_ref
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        names = [(vf.entry.name, vf.entry.label) for vf in selection.features.found]
        self.key = run_key(config, train_entries=names, feature_keys=selection.features.keys(),
                           teacher=selection.teacher_ref())
        self.folder = store.run_folder(config.stage, self.key)
        self.training: TrainingSet | None = None  # loaded by execute() only when there is training to do

    # -- building ---------------------------------------------------------------------------------------------
    def _objective(self):
        torch.manual_seed(self.config.train.seed)
        data, stage = self.training.data, self.config.stage
        dims = data.input_dims()
        model = build_network(self.config, dims, len(self.selection.teachers))
        if self.config.spatial_active:  # the inner's input norm and the cell scorer's fixed reduction
            fit_model(model, data)
        elif hasattr(model, "set_input_statistics"):  # feature models; the lightning student reads pixels
            model.set_input_statistics(data.input_statistics())
        model = model.to(self.device)
        args = (model, data, self.config, self.device, self.precision)
        if self.training.teacher_targets is not None:  # a one-teacher method's objective also gets the targets
            args += (self.training.teacher_targets,)
        return methods.get(stage).objective_class()(*args), dims

    # -- running ----------------------------------------------------------------------------------------------
    def execute(self, force: bool, training_set: Callable[[], TrainingSet]) -> tuple[dict, bool]:
        """Train unless finished; ``training_set`` is only called when there is training to do.
        Returns (metrics, cached)."""
        lock = filelock.FileLock(self.store.root / LOCKS / RUN_LOCK.format(key=self.key), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            log.warning("run %s is being trained by another process; waiting for it", self.key[:12])
            lock.acquire()
        try:
            done = self.folder / RUN_CHECKPOINT
            if done.is_file() and not force:
                return self._cached_metrics(), True
            if force:
                for name in (RUN_CHECKPOINT, "state.pt"):
                    (self.folder / name).unlink(missing_ok=True)
            self.training = training_set()
            try:
                return self._train(), False
            except NonFiniteLoss as exc:  # never "done", never left "running": failed, with the reason
                self._record_failed(str(exc))
                raise
            except Exception as exc:  # a full disk, a damaged file, ...: not left "running" either (best effort:
                try:  # a full disk may refuse this row too; the store lists a run nobody holds as interrupted)
                    self._record_failed(f"{type(exc).__name__}: {exc}")
                except Exception as again:  # noqa: BLE001 - the first error is the one to report
                    log.warning("could not record run %s as failed: %s", self.key[:12], again)
                raise
        finally:
            lock.release()

    def _train(self) -> dict:
        cfg, t = self.config, self.config.train
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / "config.json", cfg.to_dict())
        self.store.record_run(self.key, cfg.stage, dataset=self.dataset_ref, backbones=",".join(cfg.backbones),
                              seed=t.seed, status="running")
        objective, dims = self._objective()
        modules = objective.modules()
        optimizer = objective.optimizer()
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        history: list[dict] = []
        best: dict | None = None
        best_state: dict | None = None
        start_epoch = 0
        state_file = self.folder / "state.pt"
        if state_file.is_file():
            state = self._resume_state(state_file, modules, optimizer, scaler)
            history, best, best_state = state["history"], state["best"], state["best_state"]
            start_epoch = state["epoch"]
            log.info("resuming run %s at epoch %d", self.key[:12], start_epoch)

        labels = self.training.data.labels.numpy()
        anomalous = self.training.train_rows[labels[self.training.train_rows] == 1]
        normal = self.training.train_rows[labels[self.training.train_rows] == 0]
        n_batches = math.ceil(len(anomalous) / t.batch_anomalous)
        epochs = training_epochs(cfg, n_batches)
        checkpoint_every = self.checkpoint_every or max(DEFAULT_CHECKPOINT_EVERY,
                                                        math.ceil(CHECKPOINT_MIN_STEPS / n_batches))
        bar = tqdm(total=epochs * n_batches, initial=start_epoch * n_batches, disable=not self.progress,
                   unit="batch", dynamic_ncols=True, desc=f"{cfg.stage} seed {t.seed}")
        started = time.perf_counter()
        try:
            for epoch in range(start_epoch, epochs):
                torch.manual_seed(t.seed * SEED_STRIDE + epoch)
                rng = np.random.default_rng(t.seed * SEED_STRIDE + epoch)
                for m in modules.values():
                    m.train()
                losses, parts_sum, compute_time = [], {}, 0.0
                for step, (rows_a, rows_n) in enumerate(epoch_batches(anomalous, normal,
                                                                      batch_anomalous=t.batch_anomalous,
                                                                      batch_normal=t.batch_normal, rng=rng), 1):
                    tick = time.perf_counter()
                    loss, parts = objective.loss(rows_a, rows_n)
                    loss_value = float(loss.detach())
                    if not math.isfinite(loss_value):  # stop before the step spreads it into the weights
                        raise NonFiniteLoss(self._diverged(f"the training loss became {loss_value}", epoch + 1,
                                                           step))
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    compute_time += time.perf_counter() - tick
                    losses.append(loss_value)
                    for name, value in parts.items():  # the loss's terms (mil; or bce, nce, total)
                        parts_sum[name] = parts_sum.get(name, 0.0) + value
                    bar.update(1)
                entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                         **{f"train_{k}": v / len(losses) for k, v in parts_sum.items()},
                         "compute_s": round(compute_time, 3)}
                entry.update(self._validate(objective, modules, epoch + 1))
                history.append(entry)
                if len(self.training.val_rows) and _better(entry, best):
                    best = entry
                    best_state = {n: copy.deepcopy(m.state_dict()) for n, m in modules.items()}
                bar.set_postfix_str(_progress_line(entry, parts_sum, best))
                if (epoch + 1) % checkpoint_every == 0 and epoch + 1 < epochs:
                    save_torch({"modules": {n: m.state_dict() for n, m in modules.items()},
                                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                                "history": history, "best": best, "best_state": best_state, "epoch": epoch + 1},
                               state_file)
                    self._write_log(history)
        finally:
            bar.close()
        if not len(self.training.val_rows):  # nothing to select on: the last epoch
            best = history[-1]
            best_state = {n: m.state_dict() for n, m in modules.items()}
        return self._finish(dims, history, best, best_state, time.perf_counter() - started, n_batches)

    def _cached_metrics(self) -> dict:
        """A finished run's ``metrics.json``. Raises BadFile naming it (and the fix: retrain) when damaged."""
        path = self.folder / "metrics.json"
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # missing, unreadable, not JSON (UnicodeDecodeError is a ValueError)
            raise BadFile(path, f"cannot read the finished run's metrics ({type(exc).__name__}: {exc})",
                          retrain_fix(self.folder)) from None
        if not isinstance(metrics, dict):
            raise BadFile(path, "the finished run's metrics are not a JSON object", retrain_fix(self.folder))
        return metrics

    def _resume_state(self, state_file: Path, modules: dict, optimizer, scaler) -> dict:
        """Load ``state.pt`` (the last saved epoch) into the modules, optimizer and scaler. Raises BadFile naming
        the file when it is damaged or is not this run's state (the fix: delete it to start the run over)."""
        fix = f"delete {state_file} to start this run over (its earlier epochs are then trained again)"
        what = "the saved training state"
        state = require_keys(load_torch_file(state_file, what, fix, map_location=self.device), RESUME_KEYS,
                             state_file, what, fix)
        try:
            for name, module in modules.items():
                load_module_state(module, state["modules"][name], state_file, f"{what} of {name}", fix)
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            epoch = int(state["epoch"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # BadFile is a ValueError: kept as is
            if isinstance(exc, BadFile):
                raise
            raise BadFile(state_file, f"{what} does not fit this run ({type(exc).__name__}: {exc})", fix) from None
        return {**state, "epoch": epoch}

    def _validate(self, objective, modules, epoch: int) -> dict:
        if len(self.training.val_rows) == 0:
            return {}
        for m in modules.values():
            m.eval()
        scores, terms = objective.validate(self.training.val_rows)
        if not bool(torch.isfinite(scores).all()):  # (a NaN validation loss can be honest: one label only)
            raise NonFiniteLoss(self._diverged("the validation scores became NaN", epoch, None))
        return {**{f"val_{name}": value for name, value in terms.items()},
                **validation_video_scores(scores, self.training.data, self.training.val_rows)}

    def _diverged(self, what: str, epoch: int, step: int | None) -> str:
        """The message of a run whose numbers stopped being finite: where, and what to change."""
        cfg = self.config
        rates = {name: getattr(getattr(cfg, name.partition(".")[0]), name.partition(".")[2])
                 for name in methods.get(cfg.stage).learning_rates}
        lower = " and ".join(f"{name} (now {value:g})" for name, value in rates.items())
        example = "`overrides` " + " ".join(f"{name}={value / 10:g}" for name, value in rates.items())
        at = f"epoch {epoch}" + (f" step {step}" if step is not None else "")
        return (f"{what} at {at} of {cfg.stage} run {self.key[:12]} (seed {cfg.train.seed}); the run is marked failed "
                f"and nothing was saved as its result: lower {lower}, e.g. {example}, or check the features with "
                f"dakd store {self.store.root} --verify")

    def _record_failed(self, reason: str) -> None:
        """The run's manifest row becomes ``failed`` (never picked as a teacher, by evaluate or detect: they need
        a ``done`` row or a checkpoint, which a failed run does not have), and the reason is logged."""
        cfg = self.config
        self.store.record_run(self.key, cfg.stage, dataset=self.dataset_ref, backbones=",".join(cfg.backbones),
                              seed=cfg.train.seed, status=FAILED, summary={"error": reason})
        self.store.record_failure(str(self.folder), cfg.stage, reason)

    def _write_log(self, history: list[dict]) -> None:
        atomic_write_text(self.folder / "log.jsonl", "".join(json.dumps(h) + "\n" for h in history))

    def _finish(self, dims, history, best, best_state, wall_time, batches_per_epoch) -> dict:
        cfg = self.config
        t = cfg.train
        if len(self.training.val_rows):
            selection = "best validation video AUC, ties by validation margin, then validation loss"
        elif t.val_fraction > 0:
            selection = (f"last epoch (no validation split: {t.val_fraction:g} of the training videos is fewer "
                         f"than train.min_val_videos = {t.min_val_videos} of a label)")
        else:
            selection = "last epoch (no validation split)"
        non_finite = [f"{part}.{name}" for part, tensors in best_state.items() for name, tensor in tensors.items()
                      if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
        if non_finite:  # the last step can spoil the weights without a loss to show it
            raise NonFiniteLoss(self._diverged(f"the weights {', '.join(non_finite[:3])} became non-finite",
                                               best["epoch"], None))
        n_val_videos = len(np.unique(self.training.data.video.numpy()[self.training.val_rows]))
        metrics = {
            "run": self.key, "stage": cfg.stage, "seed": cfg.train.seed, "best_epoch": best["epoch"],
            "val_video_auc": best.get("val_video_auc"), "val_loss": best.get("val_loss"),
            "train_loss_last": history[-1]["train_loss"], "selection": selection, "epochs": len(history),
            "steps": len(history) * batches_per_epoch,
            "n_train_videos": len(self.selection.features.found) - n_val_videos, "n_val_videos": n_val_videos,
            "precision": self.precision, "device": str(self.device), "wall_time_s": round(wall_time, 2),
        }
        checkpoint = {
            "format": CHECKPOINT_FORMAT, "key": self.key, "stage": cfg.stage, "config": cfg.to_dict(),
            "backbones": list(cfg.backbones), "input_dims": dims, "fingerprints": self.selection.features.fingerprints,
            "dataset": self.dataset_ref, "teacher": self.selection.teacher_ref(),
            "teachers": [t.key for t in self.selection.teachers],
            "model": best_state["model"], "heads": {k: v for k, v in best_state.items() if k != "model"},
            "epoch": best["epoch"], "metrics": metrics, "grid": list(cfg.grid),
        }
        save_torch(checkpoint, self.folder / RUN_CHECKPOINT)
        atomic_write_json(self.folder / "metrics.json", metrics)
        self._write_log(history)
        (self.folder / "state.pt").unlink(missing_ok=True)
        self.store.record_run(self.key, cfg.stage, dataset=self.dataset_ref, backbones=",".join(cfg.backbones),
                              seed=cfg.train.seed, status="done", summary=metrics)
        return metrics


def _progress_line(entry: dict, parts: dict, best: dict | None) -> str:
    """The training bar's text after an epoch: the loss's terms when it has several (the student's total is
    ``bce + alpha * tau**2 * nce``, thousands while every term is small, which read as divergence), else the loss;
    the validation video AUC when there is a validation split."""
    if len(parts) > 1:
        loss = " ".join(f"{k} {entry[f'train_{k}']:.4f}" for k in parts if k != "total")
    else:
        loss = f"loss {entry['train_loss']:.4f}"
    val = entry.get("val_video_auc")
    return loss + (f" val auc {_fmt(val)}" if val is not None else "") + (f" best ep {best['epoch']}" if best else "")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def train_overrides(*, epochs: int | None = None, seed: int | None = None, val_fraction: float | None = None,
                    crops: str | None = None, precision: str | None = None) -> dict[str, dict]:
    """The flags that are config keys (``--epochs``, ``--seed``, ...) as a config layer (None: not given)."""
    flags = {"epochs": epochs, "seed": seed, "val_fraction": val_fraction, "crops": crops, "precision": precision}
    if epochs is not None:  # --epochs N means N epochs, however few steps they are
        flags["min_steps"] = 0
    return {"train": {k: v for k, v in flags.items() if v is not None}}


def load_teachers(store: FeatureStore, stage: str, teacher: str | None, teachers: list[str]) -> list[LoadedRun]:
    """A one-teacher method's ``teacher`` (the student's) or a several-teacher method's ``teachers`` (the
    lightning student's), as its row in ``pipeline.methods`` says; none for the other stages."""
    listing = f"list them with dakd store {store.root} --runs"
    method = methods.get(stage)
    one, several = methods.with_teachers(methods.ONE_TEACHER), methods.with_teachers(methods.SEVERAL_TEACHERS)
    if teacher and method.teachers != methods.ONE_TEACHER:
        raise UsageError(f"`teacher` is for the {' and '.join(one)} stage ({' and '.join(several)} takes "
                         f"`teachers`)")
    if teachers and method.teachers != methods.SEVERAL_TEACHERS:
        raise UsageError(f"`teachers` is for the {' and '.join(several)} stage ({' and '.join(one)} takes "
                         f"`teacher`)")
    if method.teachers == methods.ONE_TEACHER:
        if not teacher:
            raise UsageError(f"the {stage} needs `teacher`, a {method.teacher_stage} run's key prefix or folder "
                             f"({listing})")
        return [load_run(store, teacher, method.teacher_stage)]
    if method.teachers == methods.SEVERAL_TEACHERS:
        if not teachers:
            raise UsageError(f"the {stage} stage needs `teachers`, runs of any stage that teaches ({listing})")
        loaded = [load_run(store, ref) for ref in teachers]
        pupils = sorted({t.checkpoint["stage"] for t in loaded if not methods.get(t.checkpoint["stage"]).teaches})
        if pupils:
            givers = [name for name, row in methods.REGISTRY.items() if row.teaches]
            raise UsageError(f"a {' or '.join(pupils)} run cannot be a teacher: give {', '.join(givers)} runs")
        return loaded
    return []
