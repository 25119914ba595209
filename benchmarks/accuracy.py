"""Accuracy on real surveillance footage: UCSD Ped1's weak split, every method, 5 seeds, and two references.

    python benchmarks/accuracy.py --data UCSD_PED1 [--store DIR] [--seeds 5] [--jobs 2] [--rows NAME,...]
                                  [--out benchmarks/results] [--readme docs/results.md]

``--data`` is UCSD Ped1 in the official layout (``UCSDped1/Train/Train001/*.tif``) or converted to videos
(``videos/train_01.mp4``, ``videos/test_01.mp4``); the clips are never copied anywhere but the store. The split is
the one ``--dataset ucsd-ped1`` ships (train = Train001-020 + Test001-018, test = Train021-034 + Test019-036).

1. Extract (cached in ``--store``): i3d and effnet_lite0 in the whole-frame ``full`` view and in the published
   centre-crop view (for the view ablation), lowres in the ``squash`` view.
2. Two references computed here on the same features: a logistic regression trained on every training snippet
   with its video's label (what any weakly supervised method must beat) and one trained with the official frame
   labels of the training clips (a fully supervised ceiling for a linear read-out of the features).
3. Every row of ``ROWS`` trained over the seeds through ``pipeline.train`` and scored through
   ``pipeline.evaluate``'s protocol (pooled frame AUC and AP). Students distil the teacher of their own seed; the
   lightning student the teacher, the effnet student and LA-Net of its seed. Runs are content-keyed: a re-run only
   trains what changed.

Writes ``accuracy.json`` and ``accuracy.md`` to ``--out``, and with ``--readme`` replaces the table between the
README's ``<!-- accuracy:begin -->`` and ``<!-- accuracy:end -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.references import (LOCALIZATION, cell_ceiling, linear_references,  # noqa: E402
                                   motion_reference)
from pipeline.defaults import SMOOTHING_SNIPPETS  # noqa: E402

DATASET = "ucsd-ped1"
FPS = 10  # UCSD's native rate (frame folders carry none)
SEEDS = 5
JOBS = 2  # training processes at once, one torch thread each: small models use two cores better that way
README_BEGIN, README_END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"
FEATURES = {"i3d": "full", "effnet_lite0": "full"}  # backbone -> view of the main extraction
# The main extraction keeps each backbone's last feature map as its native grid of cells (7 x 11 on Ped1's full
# view); the global rows read the same features as the cells' mean (pipeline.features), so one extraction serves
# both. motion is the weightless per-cell motion descriptor, extracted on the same grid.
GRID = "native"
MOTION = "motion"
# Finer cells (method.md §12): i3d read one stage earlier (Mixed_4f, 16-pixel cells: 14 x 22 on Ped1's full view)
# and the motion statistics on the same 16-pixel cells; extracted only for the rows that read them.
FINE_I3D, FINE_MOTION = "i3d_mixed4f", "motion_fine"
FINE = (FINE_I3D, FINE_MOTION)
GLOBAL = ("spatial.cells=off",)  # a global row on the grid extraction: the model sees the cells' mean
# rows trained over --seeds; the others over --ablation-seeds
FULL_SEED_GROUPS = ("methods", "grid", "motion", "fine-grid")
CENTRE = "crop"  # the published view, extracted too for the view ablation
LOWRES_VIEW = "squash"
STUDENT_TEACHERS = ("teacher",)
# 8 + 8 windows a step: the same 300 steps in a third of the time of the default 30 + 30 (all 38 clips here)
LIGHTNING_BATCH = ("train.batch_anomalous=8", "train.batch_normal=8")
LIGHTNING_TEACHERS = ("teacher", "student-i3d", "lanet")
# The map student's teachers: the three grid rows of the highest frame AUC measured (teacher-grid, student-i3d-grid
# and lanet-grid, the grid versions of LIGHTNING_TEACHERS, are weaker, 0.68-0.71, and lanet-grid was never trained).
# The lightning map student's teachers: the two-backbone grid teacher and the two single-backbone TAMs on cells
# (appearance and motion), each with its own maps.
GRID_LIGHTNING_TEACHERS = ("teacher-grid", "tam-i3d-grid", "tam-motion-grid")
ABLATION_SEEDS = 3  # seeds of the "choices" and table rows (the methods rows take --seeds): the 40-minute budget
# The paper's recipe, every project choice switched back (pipeline/presets/paper.yaml holds the same values).
PAPER = ("model.input_norm=none", "mil.topk=1", "train.stretch_short_videos=true", "train.min_steps=0",
         "train.min_val_videos=1")


@dataclass(frozen=True)
class Row:
    name: str
    group: str
    what: str
    stage: str
    backbones: tuple[str, ...]
    overrides: tuple[str, ...] = ()
    teachers: tuple[str, ...] = ()  # rows whose run of the same seed this row distils
    view: str = "full"  # the extraction of i3d / effnet_lite0 the row trains on
    spatial: bool = False  # spatial MIL on the cells of the grid extraction (else the global feature)


BOTH = ("i3d", "effnet_lite0")
ROWS = [
    Row("teacher", "methods", "DAKD teacher: TAM over i3d + effnet_lite0, MIL", "teacher", BOTH),
    Row("tam-i3d", "methods", "the same TAM on i3d alone", "teacher", ("i3d",)),
    Row("tam-effnet", "methods", "the same TAM on effnet_lite0 alone", "teacher", ("effnet_lite0",)),
    Row("sultani-i3d", "methods", "Sultani MIL MLP on i3d", "teacher", ("i3d",),
        ("model.temporal=none", "model.projection=false")),
    Row("sultani-effnet", "methods", "Sultani MIL MLP on effnet_lite0", "teacher", ("effnet_lite0",),
        ("model.temporal=none", "model.projection=false")),
    Row("student-effnet", "methods", "DAKD student on effnet_lite0, distilled from the teacher", "student",
        ("effnet_lite0",), teachers=STUDENT_TEACHERS),
    Row("student-i3d", "methods", "DAKD student on i3d, distilled from the teacher", "student", ("i3d",),
        teachers=STUDENT_TEACHERS),
    Row("lanet", "methods", "LA-Net + DDL on i3d + effnet_lite0 (concatenated)", "lanet", BOTH),
    Row("lanet-i3d", "methods", "LA-Net + DDL on i3d", "lanet", ("i3d",)),
    Row("lightning", "methods", "lightning student (64x64 grey frames), 3 teachers", "lightning", ("lowres",),
        LIGHTNING_BATCH, LIGHTNING_TEACHERS),
    # The project's choices, each switched back to the paper's value on the teacher (and all of them at once).
    Row("teacher-paper", "choices", "teacher with the paper's recipe (all five below)", "teacher", BOTH, PAPER),
    Row("teacher-no-input-norm", "choices", "model.input_norm=none", "teacher", BOTH, ("model.input_norm=none",)),
    Row("teacher-top1", "choices", "mil.topk=1 (Sultani's max)", "teacher", BOTH, ("mil.topk=1",)),
    Row("teacher-stretch", "choices", "train.stretch_short_videos=true (12 snippets -> 32 segments)", "teacher",
        BOTH, ("train.stretch_short_videos=true",)),
    Row("teacher-100-steps", "choices", "train.min_steps=0 (100 epochs = 100 steps here)", "teacher", BOTH,
        ("train.min_steps=0",)),
    Row("teacher-val-select", "choices", "train.min_val_videos=1 (select on 2 + 2 validation videos)", "teacher",
        BOTH, ("train.min_val_videos=1",)),
    Row("teacher-centre-crop", "choices", "centre 224 crop of the short-side-256 frame (published view)",
        "teacher", BOTH, view=CENTRE),
    Row("teacher-backbone-dropout", "choices", "model.backbone_dropout=0.5", "teacher", BOTH,
        ("model.backbone_dropout=0.5",)),
    # The paper's tables, the rows that matter here.
    Row("temporal-mha", "table1", "temporal module: plain multi-head attention", "teacher", BOTH,
        ("model.temporal=mha",)),
    Row("temporal-none", "table1", "no temporal module (mean of the projections)", "teacher", BOTH,
        ("model.temporal=none",)),
    Row("student-no-nce", "table4", "student w/o L_nce (alpha = 0)", "student", ("effnet_lite0",),
        ("distill.alpha=0",), STUDENT_TEACHERS),
    Row("student-no-bce", "table4", "student w/o L_bce", "student", ("effnet_lite0",), ("distill.bce_weight=0",),
        STUDENT_TEACHERS),
    Row("student-no-tam", "table4", "student w/o TAM", "student", ("effnet_lite0",), ("model.temporal=none",),
        STUDENT_TEACHERS),
    Row("attention-c2c-only", "table5", "teacher attention: self + cross content terms only", "teacher", BOTH,
        ("model.c2p=false", "model.p2c=false")),
]


def _grid_version(row: Row) -> Row:
    """The row trained with spatial MIL on the 7 x 11 cells (its teachers' grid versions distilled)."""
    return Row(f"{row.name}-grid", "grid", f"{row.what}; spatial MIL on the 7x11 cells", row.stage, row.backbones,
               row.overrides, tuple(f"{t}-grid" for t in row.teachers), row.view, spatial=True)


# Every methods row but the lightning student (its input is raw low-resolution frames) gains a grid version.
ROWS += [_grid_version(r) for r in ROWS if r.group == "methods" and r.stage != "lightning"]
WITH_MOTION = (*BOTH, MOTION)
ROWS += [
    Row("tam-motion", "motion", "the TAM on the motion descriptor alone", "teacher", (MOTION,)),
    Row("tam-motion-grid", "motion", "the TAM on the motion descriptor alone; spatial MIL on the 7x11 cells",
        "teacher", (MOTION,), spatial=True),
    Row("teacher-motion", "motion", "teacher: TAM over i3d + effnet_lite0 + motion", "teacher", WITH_MOTION),
    Row("teacher-motion-grid", "motion", "teacher: TAM over i3d + effnet_lite0 + motion; spatial MIL on the 7x11 "
        "cells", "teacher", WITH_MOTION, spatial=True),
    Row("teacher-i3d-motion", "motion", "teacher: TAM over i3d + motion", "teacher", ("i3d", MOTION)),
    Row("teacher-i3d-motion-grid", "motion", "teacher: TAM over i3d + motion (appearance and motion); spatial MIL on "
        "the 7x11 cells", "teacher", ("i3d", MOTION), spatial=True),
    Row("lanet-i3d-motion", "motion", "LA-Net + DDL over i3d + motion", "lanet", ("i3d", MOTION)),
    Row("lanet-i3d-motion-grid", "motion", "LA-Net + DDL over i3d + motion; spatial MIL on the 7x11 cells", "lanet",
        ("i3d", MOTION), spatial=True),
    Row("student-effnet-motion-grid", "motion", "student on effnet_lite0 distilled from teacher-motion-grid; "
        "spatial", "student", ("effnet_lite0",), teachers=("teacher-motion-grid",), spatial=True),
    Row("student-i3d-motion-grid", "motion", "student on i3d distilled from teacher-motion-grid; spatial",
        "student", ("i3d",), teachers=("teacher-motion-grid",), spatial=True),
    # Spatial MIL's own choices, each changed on the i3d + effnet_lite0 grid teacher.
    Row("grid-k1", "grid-choices", "spatial.k=1 (the highest cell)", "teacher", BOTH, ("spatial.k=1",), spatial=True),
    Row("grid-k8", "grid-choices", "spatial.k=8", "teacher", BOTH, ("spatial.k=8",), spatial=True),
    Row("teacher-motion-grid-k8", "grid-choices", "teacher-motion-grid with spatial.k=8", "teacher", WITH_MOTION,
        ("spatial.k=8",), spatial=True),
    Row("grid-no-reduce", "grid-choices", "spatial.reduce_dim=0 (cells at full width)", "teacher", BOTH,
        ("spatial.reduce_dim=0",), spatial=True),
    Row("grid-reduce-32", "grid-choices", "spatial.reduce_dim=32 (32 principal components a backbone)", "teacher",
        BOTH, ("spatial.reduce_dim=32",), spatial=True),
    Row("grid-logit", "grid-choices", "spatial.fusion=logit (the cells' evidence added to the global logit)",
        "teacher", BOTH, ("spatial.fusion=logit",), spatial=True),
    Row("tam-i3d-grid-logit", "grid-choices", "tam-i3d-grid with spatial.fusion=logit", "teacher", ("i3d",),
        ("spatial.fusion=logit",), spatial=True),
    Row("tam-motion-grid-logit", "grid-choices", "tam-motion-grid with spatial.fusion=logit", "teacher", (MOTION,),
        ("spatial.fusion=logit",), spatial=True),
    Row("lanet-grid-logit", "grid-choices", "lanet-grid with spatial.fusion=logit", "lanet", BOTH,
        ("spatial.fusion=logit",), spatial=True),
    Row("lanet-i3d-grid-logit", "grid-choices", "lanet-i3d-grid with spatial.fusion=logit", "lanet", ("i3d",),
        ("spatial.fusion=logit",), spatial=True),
    Row("grid-cells-all", "grid-choices", "spatial.cell_backbones=all (effnet_lite0's cells scored too)",
        "teacher", BOTH, ("spatial.cell_backbones=all",), spatial=True),
    Row("grid-cells-all-shared", "grid-choices", "grid-cells-all with spatial.cell_scorers=shared (one scorer over "
        "both backbones' cells)", "teacher", BOTH, ("spatial.cell_backbones=all", "spatial.cell_scorers=shared"),
        spatial=True),
    Row("teacher-motion-grid-shared", "grid-choices", "teacher-motion-grid with spatial.cell_scorers=shared (one "
        "scorer over i3d's and motion's cells)", "teacher", WITH_MOTION, ("spatial.cell_scorers=shared",),
        spatial=True),
    # The student's map distillation weight (method.md §12; default 20), on the i3d student of the grid teacher.
    Row("student-i3d-grid-map-0", "grid-choices", "student-i3d-grid with spatial.map_weight=0 (no map term)",
        "student", ("i3d",), ("spatial.map_weight=0",), ("teacher-grid",), spatial=True),
    Row("student-i3d-grid-map-1", "grid-choices", "student-i3d-grid with spatial.map_weight=1", "student", ("i3d",),
        ("spatial.map_weight=1",), ("teacher-grid",), spatial=True),
    Row("student-i3d-grid-map-5", "grid-choices", "student-i3d-grid with spatial.map_weight=5", "student", ("i3d",),
        ("spatial.map_weight=5",), ("teacher-grid",), spatial=True),
    # The cell scorer's training (method.md §12), each switched back on the TAM over i3d's cells, then both.
    Row("tam-i3d-grid-no-dropout", "grid-choices", "tam-i3d-grid with spatial.dropout=0", "teacher", ("i3d",),
        ("spatial.dropout=0",), spatial=True),
    Row("tam-i3d-grid-cell-lr", "grid-choices", "tam-i3d-grid with spatial.lr=1e-3 (train.lr_other's rate)",
        "teacher", ("i3d",), ("spatial.lr=0.001",), spatial=True),
    Row("tam-i3d-grid-before", "grid-choices", "tam-i3d-grid with both (the cell scorer of the first grid rows)",
        "teacher", ("i3d",), ("spatial.dropout=0", "spatial.lr=0.001"), spatial=True),
    # The cell scorer's width under that training (the same TAM over i3d's cells).
    Row("tam-i3d-grid-reduce-64", "grid-choices", "tam-i3d-grid with spatial.reduce_dim=64", "teacher", ("i3d",),
        ("spatial.reduce_dim=64",), spatial=True),
    Row("tam-i3d-grid-reduce-512", "grid-choices", "tam-i3d-grid with spatial.reduce_dim=512", "teacher", ("i3d",),
        ("spatial.reduce_dim=512",), spatial=True),
    Row("tam-i3d-grid-hidden-16", "grid-choices", "tam-i3d-grid with spatial.hidden=16", "teacher", ("i3d",),
        ("spatial.hidden=16",), spatial=True),
    # The spatial teachers' learning curve: the default trains 300 steps (train.min_steps; 100 epochs are 100 steps
    # on Ped1's 18 anomalous clips).
    *(Row(f"{row}-{steps}-steps", "grid-choices", f"{row} with train.min_steps={minimum} ({steps} steps)",
          "teacher", backbones, (f"train.min_steps={minimum}",), spatial=True)
      for row, backbones in (("teacher-grid", BOTH), ("teacher-motion-grid", WITH_MOTION))
      for steps, minimum in ((100, 0), (600, 600), (1000, 1000))),
    # Finer cells: the same rows on 14 x 22 cells of 16 pixels (effnet_lite0's 7 x 11 cells, which it does not
    # score, are repeated onto them). spatial.k=12 covers the area of the default 3 cells of 7 x 11.
    Row("tam-i3d-fine-grid", "fine-grid", "tam-i3d-grid on i3d's Mixed_4f 14x22 cells", "teacher", (FINE_I3D,),
        spatial=True),
    Row("tam-motion-fine-grid", "fine-grid", "tam-motion-grid on the motion statistics of 16-pixel cells (14x22)",
        "teacher", (FINE_MOTION,), spatial=True),
    Row("teacher-motion-fine-grid", "fine-grid", "teacher-motion-grid on 14x22 cells (i3d_mixed4f + effnet_lite0 + "
        "motion_fine)", "teacher", (FINE_I3D, "effnet_lite0", FINE_MOTION), spatial=True),
    Row("teacher-fine-grid", "fine-grid", "teacher-grid on 14x22 cells (i3d_mixed4f + effnet_lite0)", "teacher",
        (FINE_I3D, "effnet_lite0"), spatial=True),
    Row("teacher-i3d-motion-fine-grid", "fine-grid", "teacher-i3d-motion-grid on 14x22 cells (i3d_mixed4f + "
        "motion_fine)", "teacher", FINE, spatial=True),
    Row("student-i3d-motion-fine-grid", "fine-grid", "student on i3d_mixed4f distilled from "
        "teacher-motion-fine-grid; spatial", "student", (FINE_I3D,), teachers=("teacher-motion-fine-grid",),
        spatial=True),
    Row("lanet-i3d-motion-fine-grid", "fine-grid", "lanet-i3d-motion-grid on 14x22 cells (i3d_mixed4f + "
        "motion_fine)", "lanet", FINE, spatial=True),
    Row("lanet-i3d-fine-grid", "fine-grid", "lanet-i3d-grid on i3d's Mixed_4f 14x22 cells", "lanet", (FINE_I3D,),
        spatial=True),
    Row("student-i3d-fine-grid", "fine-grid", "student on i3d_mixed4f distilled from teacher-i3d-motion-fine-grid; "
        "spatial", "student", (FINE_I3D,), teachers=("teacher-i3d-motion-fine-grid",), spatial=True),
    Row("lightning-fine-grid", "grid-choices", "lightning student distilling the 14x22 maps of "
        "teacher-motion-fine-grid, tam-i3d-fine-grid and tam-motion-fine-grid", "lightning", ("lowres",),
        LIGHTNING_BATCH, ("teacher-motion-fine-grid", "tam-i3d-fine-grid", "tam-motion-fine-grid")),
    Row("teacher-motion-fine-grid-k12", "grid-choices", "teacher-motion-fine-grid with spatial.k=12", "teacher",
        (FINE_I3D, "effnet_lite0", FINE_MOTION), ("spatial.k=12",), spatial=True),
    # The lightning student distilling spatial teachers' 7x11 maps (method.md §9), and the score-sequence student of
    # the same teachers (spatial.cells=off) that isolates what the maps add.
    Row("lightning-grid", "grid", "lightning student distilling 3 spatial teachers' 7x11 maps", "lightning",
        ("lowres",), LIGHTNING_BATCH, GRID_LIGHTNING_TEACHERS),
    Row("lightning-grid-scores", "grid", "the same student and teachers, score sequences only (spatial.cells=off)",
        "lightning", ("lowres",), (*LIGHTNING_BATCH, "spatial.cells=off"), GRID_LIGHTNING_TEACHERS),
    Row("lightning-grid-motion-teacher", "grid-choices", "lightning-grid with teacher-motion-grid in place of "
        "teacher-grid", "lightning", ("lowres",), LIGHTNING_BATCH,
        ("teacher-motion-grid", *GRID_LIGHTNING_TEACHERS[1:])),
    Row("lightning-grid-cell-scores", "grid-choices", "lightning-grid with lightning.map_scores=cells (each "
        "teacher's score the mean of its map head's 3 highest cells)", "lightning", ("lowres",),
        (*LIGHTNING_BATCH, "lightning.map_scores=cells"), GRID_LIGHTNING_TEACHERS),
]


# ------------------------------------------------------------------------------------------------- extraction
# (backbones, view) of each extract call: the whole-frame views the rows train on, the published centre crop for the
# view ablation, and the lightning student's squashed grey frames.
EXTRACTIONS = (((*FEATURES, MOTION), "full", GRID), (tuple(FEATURES), CENTRE, None),
               (("lowres",), LOWRES_VIEW, None), (FINE, "full", GRID))
REFERENCE_BACKBONES = (*FEATURES, MOTION, "lowres")  # what references() reads whatever the rows


def extract_all(data: Path, store: Path, rows: list[Row]) -> dict[tuple[str, str], str]:
    """Extract the ``EXTRACTIONS`` groups the references and ``rows`` read (cached in the store). Returns
    (backbone, view) -> fingerprint, made the way ``pipeline.extract`` makes it, so that a store holding other
    extractions too is no ambiguity."""
    from extractors.registry import build_backbone
    from pipeline.cli import extract
    from pipeline.extract import extractor

    common = [str(data), "--dataset", DATASET, "--fps", str(FPS), "--store", str(store), "--quiet"]
    fingerprints = {}
    needed = {"full", LOWRES_VIEW} | {r.view for r in rows}
    read = {b for r in rows for b in r.backbones} | set(REFERENCE_BACKBONES)
    for backbones, view, grid in EXTRACTIONS:
        if view not in needed or not read & set(backbones):  # a group nothing reads (the fine cells) is skipped
            continue
        code = extract.main(common + ["--backbones", ",".join(backbones), "--view", view]
                            + (["--grid", grid] if grid else []))
        if code != 0:
            raise SystemExit(f"extraction of {','.join(backbones)} ({view}) failed: see the messages above")
        built = [build_backbone(b, view=view, grid=grid) for b in backbones]  # the weights extract used
        for b, backbone in zip(backbones, built):
            fingerprints[(b, view)] = extractor.backbone_fingerprint(backbone)[0]  # as the extract stage makes it
    return fingerprints


# ------------------------------------------------------------------------------------------------- references
def references(store: Path, fps: dict, pixel_masks: str | None = None) -> list[dict]:
    """The two logistic-regression rows per feature set (i3d, effnet_lite0, both concatenated, motion), full
    view, the cells ceilings (each backbone alone, i3d + motion, and on the finer cells of ``FINE`` when they were
    extracted; with ``pixel_masks``, the top-cells ceilings' localisation) and the motion reference
    (``benchmarks/references.py``).
    The ceilings' training frame labels are the official ones: the weak split's training clips carry only video
    labels."""
    from data.datasets import load_dataset, official_intervals
    from data.ground_truth import frame_labels
    from pipeline.evaluate.evaluator import test_pixel_masks
    from pipeline.store import FeatureStore

    spec = load_dataset(DATASET)
    annotation = official_intervals(DATASET)
    s = FeatureStore(store)
    try:
        chosen = {b: fps[(b, "full")] for b in WITH_MOTION}
        rows = linear_references(s, spec, chosen, (("i3d",), ("effnet_lite0",), BOTH, (MOTION,)),
                                 lambda vf, n: frame_labels(n, annotation.get(vf.entry.name, ())))
        # On each backbone alone (what a single-backbone row can reach at best), and on i3d + motion (the cells the
        # motion teacher scores). Not on i3d + effnet_lite0 (2,304 dims a cell): the same full-batch linear scorer
        # over-fits the 456 training snippets (top-3 cells 0.569 AUC, all cells 0.742), so it bounds nothing.
        masks = test_pixel_masks(spec.split("test"), DATASET, pixel_masks) if pixel_masks else None
        fine = [names for names in ((FINE_I3D,), (FINE_MOTION,), FINE) if (FINE_I3D, "full") in fps]
        chosen.update({b: fps[(b, "full")] for b in FINE if (b, "full") in fps})
        for names in (("i3d",), ("effnet_lite0",), (MOTION,), ("i3d", MOTION), *fine):
            rows += cell_ceiling(s, spec, chosen, names,
                                 lambda vf, n: frame_labels(n, annotation.get(vf.entry.name, ())), masks)
        rows.append(motion_reference(s, spec, fps[("lowres", LOWRES_VIEW)]))
    finally:
        s.close()
    return rows


# ------------------------------------------------------------------------------------------------- training
def _train_argv(row: Row, seed: int, store: Path, fps: dict, teacher_runs: list[str]) -> list[str]:
    argv = [row.stage, "--store", str(store), "--dataset", DATASET, "--seed", str(seed), "--quiet"]
    if row.stage != "lightning":
        argv += ["--backbones", ",".join(row.backbones)]
        argv += [f"--fingerprint={b}={fps[(b, row.view)]}" for b in row.backbones]
    else:
        argv += [f"--fingerprint=lowres={fps[('lowres', LOWRES_VIEW)]}"]
    if row.stage == "student":
        argv += ["--teacher", teacher_runs[0]]
    if row.stage == "lightning":
        argv += ["--teachers", ",".join(teacher_runs)]
    for item in row.overrides + (() if row.spatial or row.stage == "lightning" or row.view != "full" else GLOBAL):
        argv += ["--set", item]
    return argv




def run_one(row: Row, seed: int, store: str, fps: dict, teacher_runs: list[str],
            pixel_masks: str | None = None) -> dict:
    """Train (or find) and evaluate one row for one seed, in a worker process. Returns metrics or an error."""
    import torch

    torch.set_num_threads(1)
    from data.datasets import load_dataset
    from pipeline.cli import train
    from pipeline.evaluate import evaluator as evaluation
    from pipeline.errors import UserError
    from pipeline.runs import load_run
    from pipeline.store import FeatureStore

    started = time.perf_counter()
    try:
        results, _ = train.run_stage(train.build_parser().parse_args(_train_argv(row, seed, Path(store), fps,
                                                                                  teacher_runs)))
        s = FeatureStore(store)
        try:
            run = load_run(s, results[0]["run"], row.stage)
            metrics, _, _ = evaluation.evaluate_run(s, run, load_dataset(DATASET), dataset_ref=DATASET, out=None,
                                                  pixel_masks=Path(pixel_masks) if pixel_masks else None,
                                                  device=torch.device("cpu"), precision="fp32", allow_missing=False,
                                                  video_plots=False, force=False, progress=False)
        finally:
            s.close()
    except (UserError, ValueError) as exc:
        return {"error": str(exc)}
    return {"run": run.key, "auc": metrics["auc"], "ap": metrics["ap"], "auc_smoothed": metrics.get("auc_smoothed"),
            "train": results[0],
            "localization": {k: metrics["localization"].get(k) for k in LOCALIZATION}
            if "localization" in metrics else None,
            "seconds": round(time.perf_counter() - started, 1)}


def depth(row: Row, by_name: dict[str, Row]) -> int:
    return 0 if not row.teachers else 1 + max(depth(by_name[t], by_name) for t in row.teachers)


def train_rows(rows: list[Row], seeds: list[int], store: Path, fps: dict, jobs: int, *,
               ablation_seeds: list[int] | None = None, pixel_masks: str | None = None) -> dict[str, dict[int, dict]]:
    """Every row and the rows it distils, over ``seeds`` (methods rows) or ``ablation_seeds`` (the others)."""
    by_name = {r.name: r for r in ROWS}
    todo = dict.fromkeys(t for r in rows for t in _with_teachers(r, by_name))  # dependencies first, ordered
    done: dict[str, dict[int, dict]] = {name: {} for name in todo}
    waves = sorted({depth(by_name[n], by_name) for n in todo})
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for wave in waves:
            futures = {}
            for name in todo:
                row = by_name[name]
                if depth(row, by_name) != wave:
                    continue
                for seed in (seeds if row.group in FULL_SEED_GROUPS or ablation_seeds is None else ablation_seeds):
                    teachers = [done[t][seed].get("run") for t in row.teachers]
                    if None in teachers:
                        done[name][seed] = {"error": f"needs the {', '.join(row.teachers)} runs of seed {seed}"}
                        continue
                    futures[(name, seed)] = pool.submit(run_one, row, seed, str(store), fps, teachers, pixel_masks)
            for (name, seed), future in futures.items():
                done[name][seed] = future.result()
                result = done[name][seed]
                state = f"AUC {result['auc']:.4f} ({result['seconds']} s)" if "auc" in result else result["error"]
                print(f"accuracy: {name} seed {seed}: {state}", flush=True)
    return done


def _with_teachers(row: Row, by_name: dict[str, Row]) -> list[str]:
    return [n for t in row.teachers for n in _with_teachers(by_name[t], by_name)] + [row.name]


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values)}


def summarise(rows: list[Row], done: dict[str, dict[int, dict]]) -> list[dict]:
    out = []
    for row in rows:
        per_seed = done.get(row.name, {})
        ok = {s: r for s, r in per_seed.items() if "auc" in r}
        out.append({"name": row.name, "group": row.group, "what": row.what, "stage": row.stage,
                    "backbones": list(row.backbones), "view": row.view, "overrides": list(row.overrides),
                    "teachers": list(row.teachers), "auc": _stats([r["auc"] for r in ok.values()]),
                    "ap": _stats([r["ap"] for r in ok.values()]),
                    "auc_smoothed": _stats([r["auc_smoothed"] for r in ok.values()
                                            if r.get("auc_smoothed") is not None]),
                    **({"localization": {k: _stats([r["localization"][k] for r in ok.values()
                                                    if r.get("localization") and r["localization"][k] is not None])
                                         for k in LOCALIZATION}}
                       if any(r.get("localization") for r in ok.values()) else {}),
                    "per_seed": {str(s): {"auc": r["auc"], "ap": r["ap"], "auc_smoothed": r.get("auc_smoothed"),
                                          "run": r["run"],
                                          "best_epoch": r["train"]["best_epoch"], "steps": r["train"].get("steps"),
                                          "train_s": r["train"]["wall_time_s"], "cached": r["train"]["cached"]}
                                 for s, r in ok.items()},
                    "errors": {str(s): r["error"] for s, r in per_seed.items() if "error" in r}})
    return out


# ------------------------------------------------------------------------------------------------- report
def markdown(result: dict) -> str:
    def fmt(stat):
        return "failed" if stat is None else (f"{stat['mean']:.3f}" if stat["n"] == 1 and stat["std"] == 0
                                              else f"{stat['mean']:.3f} ± {stat['std']:.3f}")

    lines = [f"Frame-level AUC and AP on UCSD Ped1's test split ({result['n_test_videos']} clips), mean ± sample "
             "std over the seeds of the n column; references are deterministic. AUC and AP are the RTFM-family "
             f"protocol's (unsmoothed); \"smoothed\" is the frame AUC of each video's scores smoothed by a centred "
             f"moving mean over {SMOOTHING_SNIPPETS} snippets (`dakd evaluate --smoothing`, method.md §7.3), not the "
             "protocol; a dash: not measured (rows kept from before it).", "",
             "| group | row | what | AUC | AP | AUC smoothed | n |", "|---|---|---|---|---|---|---|"]
    for r in result["references"] + result["rows"]:
        n = r["auc"]["n"] if r["auc"] else 0
        smooth = fmt(r["auc_smoothed"]) if r.get("auc_smoothed") else "—"
        lines.append(f"| {r['group']} | {r['name']} | {r['what']} | {fmt(r['auc'])} | {fmt(r['ap'])} | {smooth} "
                     f"| {n} |")
    located = [r for r in result["references"] + result["rows"] if r.get("localization")]
    if located:
        lines += ["", "Where in the frame: the grid rows' anomaly maps against Ped1's pixel masks (the 6 masked clips "
                  "of the test split, 51 anomalous snippets, 7x11 cells; `pipeline/evaluate/localization.py`), mean "
                  "± std over the seeds. Pointing game: the share of anomalous snippets whose top cell lies on the "
                  "anomaly (chance beside it); pixel AUC over every pixel of the upsampled maps; RBDC / TBDC "
                  "(Ramachandra & Jones 2020) up to 1 false positive per frame.", "",
                  "| row | pointing game | chance | pixel AUC | RBDC | TBDC | n |", "|---|---|---|---|---|---|---|"]
        for r in located:
            loc = r["localization"]
            n = loc["pointing_game"]["n"] if loc.get("pointing_game") else 0
            lines.append(f"| {r['name']} | {fmt(loc.get('pointing_game'))} | {fmt(loc.get('pointing_game_chance'))} "
                         f"| {fmt(loc.get('pixel_auc'))} | {fmt(loc.get('rbdc'))} | {fmt(loc.get('tbdc'))} | {n} |")
    earlier = sorted({r.get("commit") for r in result["rows"] if r.get("commit") == "earlier"})
    if earlier:
        lines += ["", "Rows marked `earlier` in the JSON's `commit` were measured by an earlier run of this script "
                  "(`--keep-earlier`) on a global extraction, whose features equal the grid extraction's cells' mean "
                  "(float32 rounding); the references above are recomputed on the grid extraction and match them."]
    failures = [(r["name"], s, e) for r in result["rows"] for s, e in r.get("errors", {}).items()]
    if failures:
        lines += ["", "Failures:", ""] + [f"- {n} seed {s}: {e}" for n, s, e in failures]
    return "\n".join(lines) + "\n"


def write_results(out: Path, stem: str, result: dict | None, markdown, readme: str | None, begin: str,
                  end: str) -> str:
    """``<out>/<stem>.json`` (unless ``result`` is None: only the table is regenerated from it), ``<stem>.md`` and,
    with ``readme``, the README's table between ``begin`` and ``end``. Returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    if result is None:
        result = json.loads((out / f"{stem}.json").read_text())
    else:
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (out / f"{stem}.md").write_text(table)
    if readme:
        update_readme(Path(readme), table, begin, end)
    return table


def update_readme(readme: Path, table: str, begin: str = README_BEGIN, end_marker: str = README_END) -> None:
    """Replace the README's text between the ``begin`` and ``end_marker`` lines with ``table``."""
    text = readme.read_text()
    start, end = text.find(begin), text.find(end_marker)
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: no {begin} ... {end_marker} block to replace")
    readme.write_text(text[:start + len(begin)] + "\n" + table + text[end:])


def _commit() -> str:
    """The project's commit (short hash, ``+`` when the tree has changes), recorded with each measured row."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


def _with_earlier_rows(measured: list[dict], earlier: dict) -> list[dict]:
    """``measured`` plus the rows of an earlier result it does not hold, in ``ROWS``' order (earlier rows of no
    current row last); an earlier row without a commit is marked as measured before commits were recorded."""
    rows = {r["name"]: r for r in earlier.get("rows", [])}
    for r in rows.values():
        r.setdefault("commit", "earlier")
    rows.update({r["name"]: r for r in measured})
    order = [r.name for r in ROWS if r.name in rows] + [n for n in rows if n not in {r.name for r in ROWS}]
    return [rows[n] for n in order]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/accuracy.py", allow_abbrev=False,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("DAKD_UCSD_PED1"),
                   help="UCSD Ped1 (official layout or videos/ + labels/); default $DAKD_UCSD_PED1")
    p.add_argument("--store", default="ped1-store", help="feature store (created; features and runs are cached)")
    p.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds of the methods rows (default: {SEEDS})")
    p.add_argument("--ablation-seeds", type=int, default=ABLATION_SEEDS,
                   help=f"seeds of the choices and table rows (default: {ABLATION_SEEDS})")
    p.add_argument("--jobs", type=int, default=JOBS)
    p.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--readme", help="README to update between the accuracy markers")
    p.add_argument("--pixel-masks", help="Ped1's pixel masks (<video>.npz) for the grid rows' localisation "
                   "(default: a pixel_masks/ folder beside --data or inside it, when there is one)")
    p.add_argument("--keep-earlier", action="store_true",
                   help="keep the rows of the existing accuracy.json that this run does not train (with --rows), "
                        "marked with the commit that measured them, instead of dropping them from the table")
    args = p.parse_args(argv)
    if not args.data or not Path(args.data).is_dir():
        p.error("--data must name the UCSD Ped1 folder (or set DAKD_UCSD_PED1)")
    wanted = [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = sorted(set(wanted) - {r.name for r in ROWS})
    if unknown:
        p.error(f"unknown rows {', '.join(unknown)}; known: {', '.join(r.name for r in ROWS)}")
    rows = [r for r in ROWS if not wanted or r.name in wanted]
    store = Path(args.store)
    commit = _commit()  # the code that trains, taken before the runs
    timing = {}
    started = time.perf_counter()
    fps = extract_all(Path(args.data), store, rows)
    timing["extract_s"] = round(time.perf_counter() - started, 1)
    masks = args.pixel_masks or next((str(p) for p in (Path(args.data) / "pixel_masks",
                                                       Path(args.data).parent / "pixel_masks") if p.is_dir()), None)
    tick = time.perf_counter()
    refs = references(store, fps, masks)
    timing["references_s"] = round(time.perf_counter() - tick, 1)
    tick = time.perf_counter()
    done = train_rows(rows, list(range(args.seeds)), store, fps, args.jobs,
                      ablation_seeds=list(range(min(args.ablation_seeds, args.seeds))), pixel_masks=masks)
    timing["train_evaluate_s"] = round(time.perf_counter() - tick, 1)
    timing["total_s"] = round(time.perf_counter() - started, 1)
    # the training time the runs took when they were trained (their metrics), the same on a cached re-run
    timing["runs_train_s"] = round(sum(r["train"]["wall_time_s"] for per_seed in done.values()
                                       for r in per_seed.values() if "train" in r), 1)
    from data.datasets import load_dataset

    out = Path(args.out)
    measured = summarise(rows, done)
    for row in measured:
        row["commit"] = commit
    if args.keep_earlier and (out / "accuracy.json").is_file():
        measured = _with_earlier_rows(measured, json.loads((out / "accuracy.json").read_text()))
    result = {"dataset": DATASET, "seeds": args.seeds, "ablation_seeds": min(args.ablation_seeds, args.seeds),
              "n_test_videos": len(load_dataset(DATASET).split("test")),
              "references": refs, "rows": measured, "timing": timing, "jobs": args.jobs,
              "machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (out / "accuracy.md").write_text(table)
    if args.readme:
        update_readme(Path(args.readme), table)
    print(table + f"\nwritten: {out / 'accuracy.json'}, {out / 'accuracy.md'}; {timing}")
    return 1 if any(r["errors"] for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
