"""The Python API under the command line: each stage as a function with typed arguments that returns objects.

    from pipeline import api
    ex = api.extract(["videos/"], backbones="i3d,effnet_lite0", store="S")        # -> ExtractResult
    runs = api.train("teacher", store="S", dataset="videos_labels.csv",
                     backbones="i3d,effnet_lite0", overrides={"train.epochs": 5})  # -> TrainResult (of Run)
    ev = api.evaluate(runs, store="S")                                             # -> EvaluateResult (of Metrics)
    found = api.detect(["new.mp4"], run=runs[0], store="S", out="detections")     # -> DetectResult (of Detection)

Nothing here prints a result or calls ``sys.exit``: mistakes raise :class:`pipeline.errors.UserError` subclasses
(:class:`~pipeline.errors.UsageError` for a bad argument, :class:`~pipeline.errors.InputError` for a file or store
that cannot be used; the stores' own ``StoreReadOnly``, ``ManifestDamaged``, ... are UserErrors too), with the
message the command line prints. Inputs of a batch that fail (a bad video) do not raise: they are listed in the
result's ``failures``, and the rest of the batch goes on. Progress bars are off unless ``progress=True``. The
``dakd`` / ``python -m pipeline.<stage>`` commands are thin layers over these functions (parse -> call -> print).

Long: the project's whole public surface, one function and one result type per command, read top to bottom; the
work itself is in each command's package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.decode import DEFAULT_TIMELINE, FRAME_FOLDER_FPS
from data.watchdog import DECODE_STALL_TIMEOUT_S
from pipeline import defaults as d
from pipeline import methods
from pipeline.errors import InputError, UsageError, UserError
from pipeline.pairs import parse_pairs, split_list
from pipeline.alert_rule import AlertRule  # numpy only

if TYPE_CHECKING:  # the heavy modules load when a function runs, not on import
    from pipeline.detect.detector import Detection

PathLike = str | Path


@dataclass(frozen=True)
class Failure:
    """One input of a batch that failed: what, why, and what to do."""

    path: str
    reason: str
    fix: str = ""

    def line(self) -> str:
        return f"FAILED {self.path}: {self.reason}" + (f" ({self.fix})" if self.fix else "")


def _failures(rows: Iterable[tuple[str, str, str]]) -> list[Failure]:
    return [Failure(str(p), r, f or "") for p, r, f in rows]


def _names(value: str | Sequence[str] | None) -> list[str]:
    """``"i3d,clip"`` or ``["i3d", "clip"]`` -> ``["i3d", "clip"]``."""
    return split_list(value) if isinstance(value, str) or value is None else [str(v).strip() for v in value]


def _pairs(value: Mapping[str, Any] | Sequence[str] | None, name: str, form: str, **kw) -> dict[str, str]:
    """A mapping as is (values as text), or ``NAME=VALUE`` strings through the one parser."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    return parse_pairs([value] if isinstance(value, str) else value, name, form, **kw)


def _require_store(store: PathLike | None) -> None:
    """UsageError when no store is given (the command line's ``--store`` defaults to ``$DAKD_STORE``)."""
    if store is None:
        raise UsageError(f"no store given: pass `store` (or set ${d.STORE_ENV})")


def _open(store: PathLike | None, *, create: bool = False, writes: bool = False, hint: str = ""):
    from pipeline.store import open_store

    _require_store(store)
    try:
        return open_store(store, create=create, writes=writes)
    except UserError as exc:
        if not hint:
            raise
        raise InputError(f"{exc}{hint}") from exc


def _ref(run: Any) -> str:
    """A run given as a key prefix, a folder, or a :class:`Run` / :class:`Metrics` of this module."""
    return str(getattr(run, "key", None) or getattr(run, "run", None) or run)


# -- extract ---------------------------------------------------------------------------------------------------
@dataclass
class ExtractResult:
    """What :func:`extract` did: counts over the videos found, the failed ones by name, the speed."""

    store: str
    backbones: tuple[str, ...]
    videos: int  # found (and, with a dataset, listed but missing)
    extracted: int
    cached: int
    frames: int  # frames decoded now
    seconds: float
    where: str  # "on cpu", "on 2 Ray workers ..."
    failures: list[Failure] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # listed in the dataset's split, not found

    @property
    def failed(self) -> int:
        return len(self.failures) + len(self.missing)

    @property
    def ok(self) -> bool:
        return self.failed == 0


def extract_settings(**settings):
    """The checked :class:`pipeline.extract.extractor.ExtractSettings`; raises UsageError before any file is read.
    ``settings``: the keywords of :func:`check_extract_settings` (the checks themselves, which need no torch)."""
    from pipeline.extract.extractor import ExtractSettings  # torch

    return ExtractSettings(**check_extract_settings(**settings))


def check_extract_settings(*, backbones: str | Sequence[str] = d.EXTRACT_BACKBONES, crops: int = d.DEFAULT_CROPS,
                           views: Mapping[str, str] | Sequence[str] | None = None,
                           grids: Mapping[str, str] | Sequence[str] | None = None,
                           weights: Mapping[str, str] | Sequence[str] | None = None, device: str = d.DEFAULT_DEVICE,
                           batch_size: int = d.EXTRACT_BATCH_SIZE,
                           frames_per_snippet: int = d.DEFAULT_FRAMES_PER_SNIPPET,
                           dtype: str = d.DTYPES[0], decoder: str = "auto", timeline: str = DEFAULT_TIMELINE,
                           fps: float = FRAME_FOLDER_FPS, decode_resize: bool = True, decode_workers: int | None = None,
                           force: bool = False, decode_timeout_s: float = DECODE_STALL_TIMEOUT_S) -> dict:
    """:func:`extract_settings`'s checks, without torch: the keywords of ``ExtractSettings``. Raises UsageError.
    ``views``: backbone -> view, or ``VIEW`` (for all) / ``NAME=VIEW`` strings. ``grids``: backbone -> grid
    (``native`` or ``RxC``: the last feature map kept as cells, ``[T, cells, D]``), or ``GRID`` / ``NAME=GRID``
    strings; a backbone without one stores one global feature per snippet."""
    from extractors.registry import BACKBONES, VIEWS  # no torch until a backbone is built
    from extractors.views import check_grid

    names = _names(backbones)
    unknown = [n for n in names if n not in BACKBONES]
    if unknown or not names:
        raise UsageError(f"unknown backbone(s) {', '.join(unknown) or '(none given)'}: choose from "
                         f"{', '.join(BACKBONES)}")
    weights = _pairs(weights, "weights", "NAME=PATH (or NAME=random)", split_commas=True)
    stray = sorted(set(weights) - set(names))
    if stray:
        raise UsageError(f"`weights` given for {', '.join(stray)}, which is not in `backbones` {','.join(names)}")
    if isinstance(views, Mapping):
        view_map = dict(views)
        bad = [v for v in view_map.values() if v not in VIEWS]
        if bad:
            raise UsageError(f"`views` {bad[0]!r}: the view must be one of {', '.join(VIEWS)}")
    else:
        view_map = parse_views(list(views or []), names, VIEWS)
    grid_map = dict(grids) if isinstance(grids, Mapping) else parse_views(list(grids or []), names, None, "grids")
    for name, grid in grid_map.items():
        try:
            grid_map[name] = check_grid(grid)
        except ValueError as exc:
            raise UsageError(f"`grids` for {name}: {exc}") from None
    if grid_map and crops != 1:  # each backbone says so too (Backbone.use_grid); here before torch and Ray
        raise UsageError(f"`grids` (asked for {', '.join(grid_map)}) needs `crops` 1: a grid is the cells of one "
                         f"whole view, not of {crops} crops (drop `crops` or `grids`)")
    if batch_size < 1 or (decode_workers is not None and decode_workers < 1) or frames_per_snippet < 1:
        raise UsageError("`batch_size`, `frames_per_snippet` and `decode_workers` must be at least 1")
    _check_decode_timeout(decode_timeout_s)
    return dict(backbones=tuple(names), weights=weights, crops=crops, clip_frames=frames_per_snippet, views=view_map,
                grids=grid_map, device=device, batch_size=batch_size, dtype=dtype, decoder=decoder, force=force,
                frames_fps=fps,
                decode_resize=decode_resize, decode_workers=decode_workers, timeline=timeline,
                decode_timeout_s=decode_timeout_s)


def _check_decode_timeout(seconds: float) -> None:
    if not seconds > 0:
        raise UsageError(f"`decode_timeout_s` must be above 0 s, got {seconds}")


def parse_views(values: list[str], backbones: list[str], views: Sequence[str] | None,
                param: str = "views") -> dict[str, str]:
    """``views`` values (``VIEW`` for every backbone, or ``NAME=VIEW``) -> backbone -> view; the same for another
    per-backbone choice ``param`` (``grids``), its values checked by the caller when ``views`` is None. Raises
    UsageError."""
    out: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            if "=" in item:
                pairs = parse_pairs([item], param, "VALUE or NAME=VALUE")
            else:
                pairs = dict.fromkeys(backbones, item.strip())
            for name, view in pairs.items():
                if views is not None and view not in views:
                    raise UsageError(f"`{param}` {item!r}: the view must be one of {', '.join(views)}")
                if name not in backbones:
                    raise UsageError(f"`{param}` given for {name}, which is not in `backbones` "
                                     f"{','.join(backbones)}")
                out[name] = view
    return out


def extract(paths: PathLike | Sequence[PathLike], *, store: PathLike | None, dataset: str | None = None,
            engine: str = d.ENGINES[0], address: str | None = None, workers: int | None = None,
            cpus_per_worker: int | None = None, progress: bool = False, **settings) -> ExtractResult:
    """Stage 1: features of the videos under ``paths`` into ``store`` (created if missing). ``settings``: the
    keywords of :func:`extract_settings` (backbones, crops, views, grids, weights, device, batch_size,
    frames_per_snippet, dtype, decoder, timeline, fps, decode_resize, decode_workers, force, decode_timeout_s)."""
    import time

    from extractors.weights import WeightsNotFound
    from pipeline.inputs import check_new_store, find_inputs

    paths = [str(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if engine not in d.ENGINES:
        raise UsageError(f"engine {engine!r}: choose from {', '.join(d.ENGINES)}")
    ray_only = [k for k, v in (("address", address), ("workers", workers), ("cpus_per_worker", cpus_per_worker))
                if v is not None]
    if ray_only and engine != "ray":
        raise UsageError(f"{', '.join(f'`{k}`' for k in ray_only)} only apply with `engine` ray")
    checked = check_extract_settings(**settings)  # the arguments first, without torch
    # What needs no weights first (no videos, a missing path, a store that is a file or a damaged store), so a
    # mistake is named at once, before any weights are loaded, fetched or downloaded, and before torch.
    found = find_inputs(paths, dataset=dataset, command="extract")
    _require_store(store)
    check_new_store(store)
    # An existing store is opened (and checked) now; a new one is made once the weights have loaded, so a
    # weights error leaves nothing behind.
    fs = _open(store, create=True, writes=True) if Path(store).exists() else None
    try:
        from pipeline.extract.extractor import STAGE, ExtractSettings  # torch

        config = ExtractSettings(**checked)
        # The local engine loads the weights before reading any video; Ray workers load them on their machines.
        backbones = config.build_backbones() if engine == "local" else None
    except BaseException as exc:
        if fs is not None:
            fs.close()
        if isinstance(exc, (WeightsNotFound, ValueError)):  # missing or damaged weights: named with the fix
            raise InputError(str(exc)) from exc
        raise
    if fs is None:
        fs = _open(store, create=True, writes=True)  # a file, a damaged manifest, a read-only store: one named line
    try:
        for name in found.missing:
            fs.record_failure(name, STAGE, f"listed in the {dataset} split but not found under {', '.join(paths)}",
                              "add the video or point at the full dataset root")
        start = time.perf_counter()
        if engine == "ray":
            from pipeline.extract.ray_engine import RayOptions, extract_on_ray

            outcome, where = extract_on_ray(fs, config, found.videos, RayOptions(
                address=address, workers=workers, cpus_per_worker=cpus_per_worker), progress=progress)
        else:
            outcome = config.extractor(fs, backbones, progress=progress).run(found.videos)
            where = f"on {backbones[0].device}"
    finally:
        fs.close()
    return ExtractResult(store=str(store), backbones=config.backbones, videos=len(found.videos) + len(found.missing),
                         extracted=outcome.extracted, cached=outcome.cached, frames=outcome.frames,
                         seconds=time.perf_counter() - start, where=where, failures=_failures(outcome.failures),
                         missing=list(found.missing))


# -- train -----------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One trained (or found) run: its key, folder and the metrics of ``metrics.json``."""

    key: str
    stage: str
    seed: int
    folder: Path
    metrics: dict
    cached: bool  # the run existed (a finished run is a cache hit)

    @property
    def val_video_auc(self) -> float | None:
        return self.metrics.get("val_video_auc")

    def as_dict(self) -> dict:
        """``metrics.json`` plus ``cached`` and ``folder`` (``train --json``'s rows)."""
        return {**self.metrics, "cached": self.cached, "folder": str(self.folder)}


@dataclass
class TrainResult(Sequence):
    """The runs of every seed, in seed order (indexable, iterable), and warnings (e.g. videos without features
    under ``allow_missing``)."""

    runs: list[Run]
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, i):
        return self.runs[i]

    def __len__(self) -> int:
        return len(self.runs)


def train(stage: str, *, store: PathLike | None, dataset: str | None = None,
          backbones: str | Sequence[str] | None = None, teacher: Any = None, teachers: Any = None,
          config: PathLike | None = None, overrides: Mapping[str, Any] | Sequence[str] | None = None,
          epochs: int | None = None, seed: int | None = None, seeds: int = d.DEFAULT_SEEDS,
          val_fraction: float | None = None, crops: str | None = None, precision: str | None = None,
          device: str = d.DEFAULT_DEVICE, fingerprints: Mapping[str, str] | Sequence[str] | None = None,
          allow_missing: bool = False, checkpoint_every: int | None = None, force: bool = False,
          progress: bool = False, on_run: Callable[[Run], None] | None = None) -> TrainResult:
    """Stages 2-3: train ``seeds`` runs of ``stage`` (teacher, student, lanet, lightning, or a method registered
    in ``pipeline.methods``) from ``seed`` on.

    ``teacher``: the student's teacher run; ``teachers``: the lightning student's (a list or comma-separated
    text; runs as key prefixes, folders or :class:`Run`). ``overrides``: ``{"model.k": 10}`` or ``["model.k=10"]``
    (``--set``); ``fingerprints``: backbone -> stored extraction prefix. ``on_run`` is called with each run as it
    finishes (the command line prints its line there)."""
    import functools
    from dataclasses import replace

    from data.datasets import DATASETS, load_dataset, registry
    from pipeline.run_refs import find_run_folder

    if stage not in methods.METHODS:
        raise UsageError(f"stage {stage!r}: choose from {', '.join(methods.METHODS)}")
    method = methods.get(stage)
    if seeds < 1 or (checkpoint_every is not None and checkpoint_every < 1):
        raise UsageError("`seeds` and `checkpoint_every` must be at least 1")
    sets = [f"{k}={v}" for k, v in overrides.items()] if isinstance(overrides, Mapping) else list(overrides or [])
    teacher_refs = [_ref(t) for t in ([teachers] if isinstance(teachers, str) else teachers or [])]
    teacher_refs = [r for ref in teacher_refs for r in split_list(ref)]
    fs = _open(store, writes=True)  # named: a file, absent, damaged, read-only
    try:
        # The store, the teacher runs and the dataset are checked before torch loads (pipeline.train imports
        # it), so a mistake in them is named at once.
        one = method.teachers == methods.ONE_TEACHER
        for ref in ([_ref(teacher)] if teacher is not None and one else []) + (
                teacher_refs if method.teachers == methods.SEVERAL_TEACHERS else []):
            find_run_folder(fs, ref, method.teacher_stage if one else None)
        if dataset:
            try:
                load_dataset(str(dataset))
            except (ValueError, OSError) as exc:
                raise InputError(str(exc)) from None
        from extractors.device import auto_device
        from extractors.files import BadFile
        from pipeline.train import trainer as training
        from pipeline.config import build_config, load_yaml, parse_assignments
        from pipeline.precision import resolve_precision
    except BaseException:
        fs.close()
        raise
    try:
        loaded = training.load_teachers(fs, stage, _ref(teacher) if teacher is not None else None, teacher_refs)
        dataset_ref = str(dataset) if dataset else (loaded[0].checkpoint["dataset"] if loaded else None)
        if not dataset_ref:
            raise UsageError(f"`dataset` is required: {registry.spec_forms(', ')}")
        try:
            spec = load_dataset(dataset_ref)
        except (ValueError, OSError) as exc:
            raise InputError(str(exc)) from None
        if dataset_ref not in DATASETS and Path(dataset_ref).exists():
            dataset_ref = str(Path(dataset_ref).resolve())  # a labels CSV / folder: found again from any folder
        names = tuple(_names(backbones)) or None
        flags = training.train_overrides(epochs=epochs, seed=seed, val_fraction=val_fraction, crops=crops,
                                         precision=precision)
        layers = ([load_yaml(config)] if config else []) + [parse_assignments(sets), flags]
        cfg = build_config(stage, names, layers=layers)
        dev = auto_device(device)
        cfg = replace(cfg, train=replace(cfg.train, precision=resolve_precision(cfg.train.precision, dev)))
        selection, warnings = training.select_features(
            fs, cfg, spec, teachers=loaded, allow_missing=allow_missing,
            fingerprints=_pairs(fingerprints, "fingerprints", "BACKBONE=PREFIX"))
        training_set = functools.cache(lambda: training.build_training_set(selection, cfg, dev))  # once, if needed
        runs = []
        for i in range(seeds):
            seeded = replace(cfg, train=replace(cfg.train, seed=cfg.train.seed + i))
            job = training.TrainingJob(fs, selection, seeded, device=dev, dataset_ref=dataset_ref,
                               checkpoint_every=checkpoint_every, progress=progress)
            metrics, cached = job.execute(force, training_set)
            runs.append(Run(job.key, stage, seeded.train.seed, job.folder, metrics, cached))
            if on_run:
                on_run(runs[-1])
    except BadFile as exc:  # a damaged checkpoint, state or weights file: named with the fix
        raise InputError(str(exc)) from exc
    finally:
        fs.close()
    return TrainResult(runs, list(warnings))


# -- evaluate --------------------------------------------------------------------------------------------------
@dataclass
class Metrics:
    """One run's test metrics (``metrics.json``: auc, ap, ...) and where its plots and CSVs are."""

    run: str
    stage: str
    dataset: str
    folder: Path
    values: dict
    cached: bool
    identity: dict = field(repr=False, default_factory=dict)  # what its seeds share (grouping)

    @property
    def auc(self) -> float | None:
        return self.values.get("auc")

    @property
    def ap(self) -> float | None:
        return self.values.get("ap")

    @property
    def missing_videos(self) -> list:
        return list(self.values.get("missing_videos") or [])


@dataclass
class EvaluateResult(Sequence):
    """Each run's :class:`Metrics` (indexable, iterable) and the groups' mean ± std over seeds."""

    metrics: list[Metrics]
    groups: list[dict]

    def __getitem__(self, i):
        return self.metrics[i]

    def __len__(self) -> int:
        return len(self.metrics)

    @property
    def incomplete(self) -> bool:
        """Some test videos had no features (``allow_missing``): the metrics cover the rest."""
        return any(m.missing_videos for m in self.metrics)


def evaluate(runs: Any, *, store: PathLike | None, dataset: str | None = None, out: PathLike | None = None,
             fingerprints: Mapping[str, str] | Sequence[str] | None = None, device: str = d.DEFAULT_DEVICE,
             precision: str = d.DEFAULT_SCORING_PRECISION, allow_missing: bool = False, video_plots: bool = True,
             force: bool = False, progress: bool = False, pixel_masks: PathLike | None = None,
             on_metrics: Callable[[Metrics], None] | None = None,
             smoothing: int = d.SMOOTHING_SNIPPETS) -> EvaluateResult:
    """Stage 4: score every test video of each run (key prefixes, folders, :class:`Run`s or a TrainResult) and
    measure. ``out``: the output folder (one run only; default ``<store>/runs/evaluate/<key>``). ``pixel_masks``:
    a folder of ``<video>.npz`` pixel masks (default: a frame-label folder's ``pixel_masks/``), against which a
    spatial run's anomaly maps are scored (pixel AUC, pointing game, RBDC, TBDC). ``smoothing``: the snippets of
    the test-time moving mean behind ``auc_smoothed`` and ``ap_smoothed`` (odd; 1: not reported)."""
    from data.datasets import load_dataset
    from pipeline.run_refs import find_run_folder

    refs = [_ref(r) for r in ([runs] if isinstance(runs, (str, Path, Run)) else runs)]
    if out and len(refs) > 1:
        raise UsageError("`out` takes one run; several runs are written to <store>/runs/evaluate")
    if precision not in d.SCORING_PRECISIONS:
        raise UsageError(f"precision {precision!r}: choose from {', '.join(d.SCORING_PRECISIONS)}")
    _check_smoothing(smoothing)
    # named: a file, no store, a damaged manifest (a read-only store is fine for cached evaluations)
    fs = _open(store, hint=" (pass the `store` used for training)")
    results = []
    try:
        requested = _pairs(fingerprints, "fingerprints", "BACKBONE=PREFIX (e.g. i3d=0a1b2c)")
        folders = [find_run_folder(fs, ref) for ref in refs]  # an unknown run is named before torch loads
        from extractors.device import auto_device
        from pipeline.evaluate import evaluator as evaluation
        from pipeline.runs import load_run

        dev = auto_device(device)
        loaded = [load_run(fs, str(folder)) for folder in folders]
        used = sorted({b for run in loaded for b in run.backbones})
        unused = sorted(set(requested) - set(used))
        if unused:
            raise UsageError(f"`fingerprints` names {', '.join(unused)}, which none of the runs uses (their "
                             f"backbones: {', '.join(used)})")
        for run in loaded:
            dataset_ref = dataset or run.checkpoint["dataset"]
            try:
                spec = load_dataset(dataset_ref)
            except (ValueError, OSError) as exc:
                raise InputError(str(exc)) from None
            values, folder, cached = evaluation.evaluate_run(
                fs, run, spec, dataset_ref=dataset_ref, out=Path(out) if out else None, device=dev,
                precision=precision, allow_missing=allow_missing, video_plots=video_plots, force=force,
                progress=progress, fingerprints={b: p for b, p in requested.items() if b in run.backbones},
                pixel_masks=Path(pixel_masks) if pixel_masks is not None else None, smoothing=smoothing)
            results.append(Metrics(run.key, values["stage"], spec.name, Path(folder), values, cached,
                                   evaluation.group_identity(run, values)))
            if on_metrics:
                on_metrics(results[-1])
    except ValueError as exc:  # test labels that break the protocol (named in the message)
        raise InputError(str(exc)) from exc
    finally:
        fs.close()
    return EvaluateResult(results, evaluation.group_summaries([(m.values, m.identity) for m in results]))


# -- detect ----------------------------------------------------------------------------------------------------
@dataclass
class DetectResult(Sequence):
    """The scored videos (:class:`pipeline.detect.Detection`: ``frame_scores``, ``frame_times``, ...; indexable,
    iterable), the files written per video, their alert events, the failed videos, and warnings."""

    detections: list[Detection]
    out: Path
    model: str  # "student 0a1b2c3d4e5f" / the export's label
    engine: str
    files: list[Path] = field(default_factory=list)  # per detection: <out>/<stem> (+ .csv, .json, .png)
    # per detection: the hysteresis rule's events, {"start_s", "end_s", "first_snippet", "last_snippet",
    # "peak_score"} (pipeline.detect.detector.alert_events), as dakd watch would raise them and dakd calibrate
    # counts them; with a spatial run's maps also "box", "box_cells", "box_above_threshold" (detector.add_boxes)
    events: list[list[dict]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    frames: int = 0  # frames decoded now (store) or scored (onnx)
    seconds: float = 0.0
    threshold: float = d.FALSE_ALARM_THRESHOLD  # the one used: the rule's, else the calibration's, else 0.5
    threshold_source: str = ""  # "--threshold", "calibration (1 false alarm/h on 0.3 h)", "uncalibrated default 0.5"
    rule: AlertRule | None = None  # the alert rule of the events (its threshold is ``threshold``)
    written: list[list[Path]] = field(default_factory=list)  # per detection: every file written, overlay last

    def __getitem__(self, i):
        return self.detections[i]

    def __len__(self) -> int:
        return len(self.detections)


def detect(videos: PathLike | Sequence[PathLike], *, store: PathLike | None = None, run: Any = None,
           onnx: PathLike | None = None, out: PathLike = d.DETECT_OUT, overlay: PathLike | None = None,
           rule: AlertRule | None = None, weights: Mapping[str, str] | Sequence[str] | None = None,
           device: str = d.DEFAULT_DEVICE, timeline: str | None = None, batch_size: int = d.DETECT_BATCH_SIZE,
           progress: bool = False, decode_timeout_s: float = DECODE_STALL_TIMEOUT_S,
           smoothing: int = d.DETECT_SMOOTHING_SNIPPETS) -> DetectResult:
    """Score new videos with a run of ``store`` (default: its most recent student) or, with ``onnx``, with an
    exported student alone; writes ``<out>/<name>.csv/.json/.png`` (and the ``overlay``) per video. Each video's
    events are those of ``rule`` (:class:`AlertRule`, None: its defaults), the rule ``dakd watch`` alerts with and
    :func:`calibrate` counts; its threshold None: the offline threshold of the run's (or export's) calibration
    (:func:`calibrate`), else ``defaults.FALSE_ALARM_THRESHOLD``. ``smoothing``: each video's snippet scores are
    smoothed by a centred moving mean over that many snippets (odd; 1: the model's own scores) before anything is
    marked or written, as :func:`calibrate` smooths those its offline threshold is chosen on."""
    paths = [str(p) for p in ([videos] if isinstance(videos, (str, Path)) else videos)]
    if batch_size < 1:
        raise UsageError("`batch_size` must be at least 1")
    _check_smoothing(smoothing)
    _check_decode_timeout(decode_timeout_s)
    rule = _rule(rule)
    if onnx is None and store is None:
        raise UsageError("pass `store` (the store holding the run) or `onnx` (an export folder of a student)")
    weights = _pairs(weights, "weights", "NAME=PATH (or NAME=random)", split_commas=True)
    _check_run_inputs(paths, store if onnx is None else None, run, command="detect")
    from pipeline.detect import detector as detection

    score = detection.score_onnx if onnx is not None else detection.score_store
    try:
        res = score(paths, onnx if onnx is not None else store, run=_ref(run) if run is not None else None,
                    weights=weights, device=device, timeline=timeline, batch_size=batch_size, progress=progress,
                    overlay=Path(overlay) if overlay else None, decode_timeout_s=decode_timeout_s)
    except ValueError as exc:  # WeightsNotFound is an OSError; BadFile and a bad option are ValueErrors
        raise InputError(str(exc)) from exc
    except FileNotFoundError as exc:  # WeightsNotFound: names the flag and the file to provide
        raise InputError(str(exc)) from exc
    detections, model, failures, warnings, frames, seconds = res
    detections = [detection.smoothed(x, smoothing) for x in detections]
    from pipeline.runs import calibrated_counts, calibrated_smoothing, load_calibration, threshold_for

    # the threshold given, else the calibration's
    calibration = load_calibration(model.folder) if rule.threshold is None and model.folder is not None else None
    threshold, threshold_source = threshold_for(calibration, "offline", rule.threshold)
    counts = calibrated_counts(calibration) if calibration is not None else None
    if counts is not None and counts != (rule.open_after, rule.close_after):
        warnings.append(f"the offline threshold was calibrated with events opening after {counts[0]} and closing "
                        f"after {counts[1]} snippets, these events open after {rule.open_after} and close after "
                        f"{rule.close_after}: pass `open_after` {counts[0]} and `close_after` {counts[1]} for the "
                        "calibrated false-alarm rate")
    calibrated = calibrated_smoothing(calibration) if calibration is not None else None
    if calibrated is not None and calibrated != smoothing:
        warnings.append(f"the offline threshold was calibrated on scores smoothed over {calibrated} snippet(s), "
                        f"these are smoothed over {smoothing}: pass `smoothing` {calibrated}, or calibrate again, "
                        "for the calibrated false-alarm rate")
    rule = rule.with_threshold(threshold)
    written = detection.write_all(detections, model, Path(out), rule, Path(overlay) if overlay else None)
    return DetectResult(detections, Path(out), model.label if model.engine == detection.ENGINE_ONNX else
                        f"{model.stage} {model.run[:12]}", model.engine, [w.stem for w in written],
                        [w.events for w in written], _failures(failures), warnings, frames, seconds, threshold,
                        threshold_source, rule, [w.files for w in written])


def _check_smoothing(smoothing: int) -> None:
    """Raise UsageError unless ``smoothing`` is an odd number of snippets >= 1 (before anything is scored)."""
    from pipeline.evaluate.metrics import check_smoothing_window

    try:
        check_smoothing_window(smoothing)
    except ValueError as exc:
        raise UsageError(f"`smoothing`: {exc}") from None


def _rule(rule: AlertRule | None) -> AlertRule:
    """``rule``, or the default :class:`AlertRule` (threshold from the calibration) when None."""
    if rule is None:
        return AlertRule()
    if not isinstance(rule, AlertRule):
        raise UsageError(f"`rule` must be a pipeline.alert_rule.AlertRule, got {type(rule).__name__}")
    return rule


def _check_run_inputs(paths: list[str] | None, store: PathLike | None, run: Any, *, command: str,
                      required: bool = False) -> None:
    """What detect, calibrate and export check before torch and the weights load: the videos (``paths`` given),
    and (``store`` given) the store and the run it names (None: its latest student, unless ``required``). Raises
    UserError naming the path and the fix."""
    from pipeline.inputs import find_inputs
    from pipeline.run_refs import find_run_folder, latest_run, open_run_store

    if paths is not None:
        find_inputs(paths, command=command)
    if store is None:
        return
    fs = open_run_store(store)
    try:
        if run is None and required:
            raise UsageError("`run` is required: a run key prefix or folder")
        if run is None:
            latest_run(fs, d.DETECT_STAGE)
        else:
            find_run_folder(fs, _ref(run))
    finally:
        fs.close()


# -- export ----------------------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    """What :func:`export` wrote: the run, its backbone, the folder, and export.json's content (files, check,
    tolerance, T range)."""

    run: str
    backbone: str
    out: Path
    info: dict


def export(run: Any, *, store: PathLike | None, out: PathLike | None = None,
           weights: Mapping[str, str] | Sequence[str] | None = None, max_snippets: int = d.DEFAULT_MAX_SNIPPETS,
           frame_size: tuple[int, int] | None = None) -> ExportResult:
    """A single-backbone run as ONNX graphs + TorchScript in ``out`` (default ``<run folder>/export``), checked
    against the eager model. The store and the run are checked before torch loads. Raises UserError (a read-only
    store without ``out``, a multi-backbone run, missing weights, a failed check)."""
    if max_snippets < 1:
        raise UsageError(f"`max_snippets` must be at least 1, got {max_snippets}")
    _require_store(store)
    weights = _pairs(weights, "weights", "NAME=PATH (or NAME=random)", split_commas=True)
    _check_run_inputs(None, store, run, command="export", required=True)
    from extractors.weights import WeightsNotFound
    from pipeline.export.exporter import export_run  # torch

    try:
        loaded, backbone, folder, info = export_run(store, _ref(run), out=out, weights=weights,
                                                    max_snippets=max_snippets, frame_size=frame_size)
    except (WeightsNotFound, ValueError) as exc:  # missing weights; a check that failed
        raise InputError(str(exc)) from exc
    return ExportResult(loaded.key, backbone, folder, info)


# -- calibrate -------------------------------------------------------------------------------------------------
@dataclass
class CalibrateResult:
    """What :func:`calibrate` wrote: the calibration (calibration.json's content), where, the failed videos."""

    calibration: dict
    path: Path  # <run folder>/calibration.json, or the out= file
    export: Path | None = None  # the run's export.json whose "calibration" was updated too
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def thresholds(self) -> dict[str, float]:
        """``{"live": t, "offline": t}``."""
        return dict(self.calibration["thresholds"])


def calibrate(run: Any, *, store: PathLike | None, normal: PathLike | Sequence[PathLike] | None = None,
              split: str | None = None, false_alarms_per_hour: float = d.CALIBRATE_FALSE_ALARMS_PER_HOUR,
              rule: AlertRule | None = None, window: int | None = None,
              out: PathLike | None = None, weights: Mapping[str, str] | Sequence[str] | None = None,
              device: str = d.DEFAULT_DEVICE, batch_size: int = d.CALIBRATE_BATCH_SIZE,
              progress: bool = False, smoothing: int = d.DETECT_SMOOTHING_SNIPPETS) -> CalibrateResult:
    """Choose ``run``'s thresholds (live and offline scores) for ``false_alarms_per_hour`` hysteresis events per
    hour on normal footage: ``normal`` videos or folders (extracted as :func:`detect` does), or ``split="val"``,
    the normal videos of the run's validation split. Writes ``<run folder>/calibration.json`` (or ``out``) and
    updates the run's ``export/export.json``. ``rule``: the :class:`AlertRule` whose events are counted, without a
    threshold (None: its defaults). ``smoothing``: the offline scores are smoothed over that many snippets, as
    :func:`detect` smooths them (recorded; the live scores never are)."""
    rule = _rule(rule)
    _check_smoothing(smoothing)
    if rule.threshold is not None:
        raise UsageError(f"calibrate chooses the threshold: pass a `rule` without one (got {rule.threshold})")
    _require_store(store)
    if batch_size < 1:
        raise UsageError("`batch_size` must be at least 1")
    if split is not None and split not in d.CALIBRATE_SPLITS:
        raise UsageError(f"`split` takes {', '.join(d.CALIBRATE_SPLITS)}, got {split!r}")
    paths = None if normal is None else [str(p) for p in ([normal] if isinstance(normal, (str, Path)) else normal)]
    weights = _pairs(weights, "weights", "NAME=PATH (or NAME=random)", split_commas=True)
    _check_run_inputs(paths, store, run, command="calibrate")  # before torch: the videos, the store, the run
    from pipeline.calibrate import calibrator as calibration

    try:
        done = calibration.calibrate_run(
            store, _ref(run), normal=paths, split=split, target=float(false_alarms_per_hour), rule=rule,
            window=window, out=Path(out) if out else None, weights=weights, device=device, batch_size=batch_size,
            progress=progress, smoothing=smoothing)
    except ValueError as exc:  # BadFile and a bad option are ValueErrors
        raise InputError(str(exc)) from exc
    except FileNotFoundError as exc:  # WeightsNotFound: names the flag and the file to provide
        raise InputError(str(exc)) from exc
    return CalibrateResult(done.record, done.path, done.export, _failures(done.failures), done.warnings,
                           done.seconds)


# -- watch -----------------------------------------------------------------------------------------------------
def watch(sources: Sequence[str] = (), *, cameras: PathLike | None = None, store: PathLike | None = None,
          run: Any = None, onnx: PathLike | None = None, realtime: bool = False, follow: bool = False,
          format: str | None = None, options: Mapping[str, str] | Sequence[str] | None = None,
          rule: AlertRule | None = None,
          window: int | None = None,
          out: PathLike = d.WATCH_OUT, webhook: str | None = None, clips: bool = False,
          pre_roll_s: float = d.WATCH_PRE_ROLL_S, post_roll_s: float = d.WATCH_POST_ROLL_S,
          keep_days: int = d.WATCH_KEEP_DAYS, give_up_after: int | None = None,
          stall_timeout_s: float = d.WATCH_STALL_TIMEOUT_S, batch_size: int = d.WATCH_BATCH_SIZE,
          queue_size: int = d.WATCH_QUEUE_SIZE, weights: Mapping[str, str] | Sequence[str] | None = None,
          device: str = d.DEFAULT_DEVICE, stop=None):
    """Score camera streams (``sources``: ``[NAME=]SOURCE``, and/or a ``cameras`` YAML list) with a run of
    ``store`` (``run`` None: its most recent student) or an ``onnx`` export, until every source ended or ``stop``
    (a ``threading.Event``) is set. ``rule``: the :class:`AlertRule` of the events (None: its defaults); its threshold
    None: the live threshold of the model's calibration, else ``defaults.FALSE_ALARM_THRESHOLD``. Returns
    :class:`pipeline.watch.watcher.WatchSummary`; raises UserError."""
    from pipeline.runs import calibrated_window, load_calibration, threshold_for
    from pipeline.watch import model as live_model, watcher
    from pipeline.watch.cameras import CameraListError, cameras_from
    from pipeline.watch.sources import ReconnectPolicy

    if (store is None) == (onnx is None):
        raise UsageError(f"pass the model: `store` [and `run`] (or set ${d.STORE_ENV}) or `onnx` (an export folder)")
    rule = _rule(rule)
    for name, value, least in (("batch_size", batch_size, 1), ("queue_size", queue_size, 1),
                               ("keep_days", keep_days, 1), ("window", window or 1, 1)):
        if value < least:
            raise UsageError(f"`{name}` must be at least {least}, got {value}")
    if not stall_timeout_s > 0:
        raise UsageError(f"`stall_timeout_s` must be above 0 s, got {stall_timeout_s}")
    try:
        camera_list = cameras_from(list(sources), cameras, realtime=realtime, follow=follow, format=format,
                                   options=_pairs(options, "options", "KEY=VALUE"))
    except CameraListError as exc:
        raise UsageError(str(exc)) from None
    if onnx is not None:
        model = live_model.from_export(onnx, window=window)
    else:
        weights = _pairs(weights, "weights", "NAME=PATH (or NAME=random)", split_commas=True)
        try:
            model = live_model.from_run(store, None if run is None else _ref(run), weights=weights, device=device,
                                        window=window)
        except FileNotFoundError as exc:  # WeightsNotFound: names the flag and the file to provide
            raise InputError(str(exc)) from exc
    calibration = load_calibration(model.folder) if rule.threshold is None and model.folder else None
    value, source = threshold_for(calibration, "live", rule.threshold)
    if calibration is not None and calibrated_window(calibration) not in (None, model.window):
        import logging

        logging.getLogger("pipeline.watch").warning(
            "the live threshold was calibrated with a window of %s snippets, this watch scores over %d: calibrate "
            "again with `window` %d (or watch with `window` %s)", calibrated_window(calibration), model.window,
            model.window, calibrated_window(calibration))
    config = watcher.WatchConfig(
        Path(out), rule.with_threshold(value), source, webhook, clips, pre_roll_s, post_roll_s, batch_size,
        queue_size, keep_days, ReconnectPolicy(stall_timeout_s=stall_timeout_s, give_up_after=give_up_after))
    return watcher.Watch(camera_list, model, config, stop).run()
