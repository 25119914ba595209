"""Scoring new videos, the engine of ``pipeline.detect`` (whose docstring gives the outputs; the typed API
``pipeline.api.detect``): a run's model over the store's features of each video (extracted on the way with the run's
settings), or an ONNX export alone, and the per-video CSV, JSON, plot and overlay.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from data.decode import DECODE_RESIZE_FILTER, DEFAULT_TIMELINE, SNIPPET_FRAMES, TIMELINES, VideoInfo, open_video
from data.discover import find_videos
from data.errors import VideoError
from data.watchdog import DECODE_STALL_TIMEOUT_S
from extractors.base import Preprocessing, preprocess_snippets
from extractors.device import auto_device
from pipeline.atomic import atomic_write, atomic_write_json
from pipeline.defaults import DETECT_BATCH_SIZE, DETECT_OUT, DETECT_STAGE
from pipeline.errors import InputError, UsageError, UserError
from pipeline.evaluate.scoring import align_cells, align_snippets, score_cells, score_snippet_maps, score_snippets
from pipeline.detect.onnx_scorer import (BACKBONE_ONNX, EXPORT_JSON, HEAD_ONNX, OnnxScorer, TooManySnippets,
                                         maps_output, too_many_message)
from pipeline.extract.extractor import Extractor, failure_reason
from pipeline.features import VideoFeatures
from pipeline.keys import feature_key
from pipeline.alert_rule import AlertRule
from pipeline.detect.maps import MAPS_SUFFIX, event_box, write_maps_npz
from pipeline.detect.overlay import write_overlay
from pipeline.evaluate.metrics import smooth_snippet_scores
from pipeline.evaluate.plots import plot_detection, unique_stems
from pipeline.runs import LoadedRun, latest_run, load_run, open_run_store, training_backbone
from pipeline.store import FeatureStore

DEFAULT_STAGE = DETECT_STAGE  # the model used when --model is not given: the store's most recent one
DEFAULT_OUT = DETECT_OUT
DEFAULT_BATCH_SIZE = DETECT_BATCH_SIZE  # snippets per backbone forward pass (eager, and the graph with --onnx)
STAGE = "detect"
ENGINE_TORCH = "torch"
ENGINE_ONNX = "onnxruntime"
EXPORT_FIX = "dakd export RUN --store S"
ONNX_INSTALL_FIX = "pip install -e '.[export]'"
STORED_FEATURE_FIX = "check the store with dakd store {store} --verify, then run detect again"
# How an export made before export.json recorded "decode" was decoded: the extract stage's defaults for one
# backbone (decoder auto, resized while decoding to the backbone's resize size, pipeline.extract.decode_size_for).
FALLBACK_DECODER = "auto"
SCORABLE_KINDS = ("video", "image")  # backbone kinds whose input is preprocess_snippets' output

log = logging.getLogger("pipeline.detect")


@dataclass
class Detection:
    """One video's result: snippet scores ``[T]`` and the frame scores ``[n_frames]`` derived from them; for a
    spatial run also its anomaly maps ``[T, rows, cols]`` (cells row-major, :mod:`pipeline.detect.maps`)."""

    path: Path
    snippet_scores: np.ndarray
    n_frames: int  # frames on the video's timeline (data.decode)
    fps: float  # the timeline's rate: frame j is at j / fps seconds
    timeline: str = DEFAULT_TIMELINE  # how the frames were placed (data.decode.TIMELINES); the overlay follows it
    maps: np.ndarray | None = None  # [T, rows, cols] in (0, 1) of a spatial run or a map student; None: no maps
    # (height, width) of the source frames, the events' boxes' pixels, as decoding or the store recorded it; None:
    # read from the file when a box needs it
    frame_hw: tuple[int, int] | None = None
    smoothing: int = 1  # snippet_scores are the model's smoothed over this many snippets (smooth_scores); 1: its own

    @property
    def grid(self) -> tuple[int, int] | None:
        """(rows, cols) of the maps, None without maps."""
        return None if self.maps is None else (int(self.maps.shape[1]), int(self.maps.shape[2]))

    @property
    def frame_scores(self) -> np.ndarray:
        """float ``[n_frames]``: snippet t's score on frames [16t, 16t + 16), the last snippet's on the rest."""
        scores = np.repeat(self.snippet_scores, SNIPPET_FRAMES)
        tail = self.n_frames - len(scores)
        return np.concatenate([scores, np.full(tail, scores[-1])]) if tail > 0 else scores[:self.n_frames]

    @property
    def frame_times(self) -> np.ndarray:
        """Seconds from the first frame of each frame (frame index / fps): on the constant timeline, the time a
        player shows it at."""
        return np.arange(self.n_frames) / self.fps if self.fps > 0 else np.full(self.n_frames, np.nan)


@dataclass(frozen=True)
class ModelInfo:
    """What the outputs say about the model that scored: its run, stage, backbones and engine."""

    run: str | None  # None for an export of a scorer built by hand (pipeline.export.exporter.export_scorer)
    stage: str
    backbones: tuple[str, ...]
    engine: str  # ENGINE_TORCH or ENGINE_ONNX
    folder: Path | None = None  # the run folder or the export folder: where its calibration is (load_calibration)

    @classmethod
    def of_run(cls, run: LoadedRun) -> ModelInfo:
        return cls(run.key, run.checkpoint["stage"], tuple(run.backbones), ENGINE_TORCH, run.folder)

    @property
    def label(self) -> str:
        """``stage key[:8]``, for the plot title."""
        return f"{self.stage} {self.run[:8]}" if self.run else self.stage


def smooth_scores(scores: np.ndarray, window: int) -> np.ndarray:
    """float32 ``[T]``: one video's snippet scores smoothed by the centred moving mean over ``window`` snippets
    (``pipeline.evaluate.metrics.smooth_snippet_scores``, the rule of evaluate's ``auc_smoothed``); ``window`` 1
    returns them as they are. The scores detect marks and calibrate's offline threshold is chosen on: both call
    this, so the two agree to the bit."""
    if window == 1:
        return np.asarray(scores, dtype=np.float32)
    return smooth_snippet_scores(scores, window).astype(np.float32)


def smoothed(d: Detection, window: int) -> Detection:
    """``d`` with its snippet scores smoothed over ``window`` snippets (:func:`smooth_scores`); the maps are the
    model's own."""
    return replace(d, snippet_scores=smooth_scores(d.snippet_scores, window), smoothing=window)


def alert_events(d: Detection, rule: AlertRule) -> list[dict]:
    """The events of ``rule`` (:meth:`pipeline.alert_rule.AlertRule.events`, the rule ``dakd watch`` alerts with
    and ``dakd calibrate`` counts) over the video's snippet scores, each ``{"start_s", "end_s",
    "first_snippet", "last_snippet", "peak_score"}``: ``[start_s, end_s)`` covers the frames of its first to its
    last snippet above the threshold (the last snippet's frames include the trailing frames that form no snippet,
    as in :attr:`Detection.frame_scores`), in frames when the frame rate is unknown."""
    scale = 1.0 / d.fps if d.fps > 0 else 1.0
    n = len(d.snippet_scores)
    events = []
    for first, last in rule.events(d.snippet_scores):
        end_frame = d.n_frames if last == n - 1 else (last + 1) * SNIPPET_FRAMES
        events.append({"start_s": float(first * SNIPPET_FRAMES * scale), "end_s": float(end_frame * scale),
                       "first_snippet": first, "last_snippet": last,
                       "peak_score": float(d.snippet_scores[first:last + 1].max())})
    return events


def frame_size(path: Path) -> tuple[int, int]:
    """(height, width) of a video's frames at full size (the overlay's, and the pixels of the events' boxes), read
    from the file: for a :class:`Detection` that does not carry it."""
    with open_video(path) as video:
        return int(video.info.height), int(video.info.width)


def add_boxes(events: list[dict], maps: np.ndarray, threshold: float, frame_hw: tuple[int, int]) -> list[dict]:
    """Each event of :func:`alert_events` with its box (:func:`pipeline.detect.maps.event_box` over its snippets of
    ``maps`` ``[T, rows, cols]``): ``box`` pixels ``[x0, y0, x1, y1]`` (half-open) of a ``frame_hw`` frame,
    ``box_cells`` ``[row0, col0, row1, col1]`` (half-open) and ``box_above_threshold`` (False: no cell reached the
    threshold, the box is the highest cell's). In place; returns ``events``."""
    for e in events:
        e.update(event_box(maps, e["first_snippet"], e["last_snippet"], threshold, frame_hw).to_json())
    return events


def video_timeline(store: FeatureStore, video_key: str,
                   decoded: VideoInfo | None) -> tuple[int, float, tuple[int, int] | None]:
    """(frames, fps, (height, width) of the source frames, None when unknown) of a scored video: from its decoding
    in this call, else (features cached) from the store's record of it."""
    if decoded is not None:
        return int(decoded.n_frames or 0), float(decoded.fps or 0.0), _known_size(decoded.height, decoded.width)
    info = store.video(video_key)
    return int(info["n_frames"]), float(info["fps"] or 0.0), _known_size(info["height"], info["width"])


def _known_size(height, width) -> tuple[int, int] | None:
    """(height, width), or None when a decoder reported no size (0)."""
    return (int(height), int(width)) if height and width else None


def backbones_for(run: LoadedRun, store: FeatureStore, weights: dict[str, str], device) -> tuple[list, dict]:
    """The run's backbones built with the settings of its training features. Returns (backbones, extractor
    settings: decoder, dtype, decode_resize, timeline; features without a recorded timeline were decoded on the
    default one)."""
    built, settings = [], {"decoder": "auto", "dtype": "float32", "decode_resize": True,
                           "timeline": DEFAULT_TIMELINE}
    for name in run.backbones:
        built.append(training_backbone(run, store, name, weights=weights.get(name), device=device))
        params = store.extractor_params(run.fingerprints[name])
        decode = params.get("decode") or {}
        settings["decoder"] = decode.get("backend", settings["decoder"])
        settings["decode_resize"] = decode.get("short_side", 1) is not None
        settings["timeline"] = decode.get("timeline", settings["timeline"])
        if params.get("dtype") in ("float32", "float16"):
            settings["dtype"] = params["dtype"]
    return built, settings


def write_outputs(d: Detection, stem: str, out: Path, model: ModelInfo, rule: AlertRule,
                  events: list[dict]) -> list[Path]:
    """``<stem>.csv``, ``<stem>.json`` and ``<stem>.png`` of one video in ``out`` (``events``: its
    :func:`alert_events` under ``rule``, with their boxes when ``d`` has maps, :func:`add_boxes`), and with maps
    ``<stem>.maps.npz`` (:func:`pipeline.detect.maps.write_maps_npz`), which the JSON names (``maps_file``, with
    the ``grid``). Returns the paths, in that order."""
    threshold = rule.threshold
    frames = pd.DataFrame({"frame": np.arange(d.n_frames), "time_s": d.frame_times,
                           "snippet": np.minimum(np.arange(d.n_frames) // SNIPPET_FRAMES, len(d.snippet_scores) - 1),
                           "score": d.frame_scores})
    atomic_write(out / f"{stem}.csv", lambda f: f.write(frames.to_csv(index=False).encode("utf-8")))
    best = int(np.argmax(d.frame_scores))
    spatial = {}
    if d.maps is not None:
        write_maps_npz(out / f"{stem}{MAPS_SUFFIX}", d.maps, grid=d.grid, fps=d.fps)
        spatial = {"maps_file": f"{stem}{MAPS_SUFFIX}", "grid": list(d.grid)}
    atomic_write_json(out / f"{stem}.json", {
        **spatial,
        "video": str(d.path), "run": model.run, "stage": model.stage, "backbones": list(model.backbones),
        "engine": model.engine, "timeline": d.timeline,
        "fps": d.fps, "n_frames": d.n_frames, "n_snippets": len(d.snippet_scores), "snippet_frames": SNIPPET_FRAMES,
        "threshold": threshold, "max_score": float(d.frame_scores[best]), "max_frame": best,
        "smoothing_snippets": d.smoothing,
        "alert_rule": rule.to_json(), "events": events,
        # null when the container declares no frame rate (JSON has no NaN)
        "snippet_scores": d.snippet_scores.tolist(), "frame_time_s": d.frame_times.tolist() if d.fps > 0 else None,
        "frame_score": d.frame_scores.tolist(),
    })
    plot_detection(d.snippet_scores, d.n_frames, d.fps, out / f"{stem}.png", threshold=threshold,
                   title=f"{d.path.name}: {model.label}")
    suffixes = (".csv", ".json", ".png") + ((MAPS_SUFFIX,) if d.maps is not None else ())
    return [out / f"{stem}{suffix}" for suffix in suffixes]


@dataclass
class OnnxExport:
    """An export folder ready to score: the onnxruntime session and, from export.json, how to make its input."""

    folder: Path
    scorer: OnnxScorer
    model: ModelInfo
    preprocessing: Preprocessing
    frame_indices: tuple[int, ...]
    crops: int
    decoder: str  # data.decode backend
    short_side: int | None  # resize while decoding to this short side; None: decode at full size
    input_hw: tuple[int, int] | None = None  # (h, w) the backbone graph was traced for (full view: one frame size)
    square: bool = False  # decode the whole frame to short_side x short_side (squash view alone)
    timeline: str = DEFAULT_TIMELINE  # data.decode timeline of the run's training features
    decode_timeout_s: float = DECODE_STALL_TIMEOUT_S  # a video decoding no snippet for this long fails (watchdog)

    @property
    def max_snippets(self) -> int:
        """The longest video the export accepts (its head graph's metadata)."""
        return self.scorer.max_snippets


def _not_readable(folder: Path, why: str) -> UserError:
    return UserError(f"{folder / EXPORT_JSON} is not an export this version can read ({why}): export the run again "
                     f"with {EXPORT_FIX} --out {folder}")


def export_decode(info: dict, preprocessing: Preprocessing) -> tuple[str, int | None]:
    """(decoder backend, short side) the run's training features were decoded with, from export.json."""
    decode = info.get("decode")
    if not decode:
        # Older exports have no "decode" entry (and runs on imported features have none to give): assume the
        # extract stage's defaults, which the run's features were made with unless --decoder /
        # --no-decode-resize were passed.
        return FALLBACK_DECODER, preprocessing.decode_short_side
    if decode.get("short_side") and decode.get("filter") not in (None, DECODE_RESIZE_FILTER):
        log.warning("the run's training videos were resized with %s while decoding, this version resizes with %s; "
                    "scores may be shifted", decode["filter"], DECODE_RESIZE_FILTER)
    return decode.get("backend", FALLBACK_DECODER), decode.get("short_side")  # short_side None: full size


def load_export(folder: str | Path, providers: list[str] | None = None) -> OnnxExport:
    """Open ``folder`` (written by ``pipeline.export``). Raises UserError naming the fix when it holds no checked
    export or onnxruntime is missing."""
    folder = Path(folder)
    missing = [name for name in (EXPORT_JSON, BACKBONE_ONNX, HEAD_ONNX) if not (folder / name).is_file()]
    if missing:
        raise UserError(f"{folder} holds no checked export (no {' and no '.join(missing)}; only an export that "
                        f"passed its equality check has {EXPORT_JSON}): export the run with {EXPORT_FIX} --out "
                        f"{folder}")
    try:
        import onnxruntime  # noqa: F401 - only to name the fix; OnnxScorer imports it itself
    except ImportError:
        raise UserError(f"`onnx` needs onnxruntime, which is not installed: {ONNX_INSTALL_FIX}") from None
    try:
        info = json.loads((folder / EXPORT_JSON).read_text())
        p = info["preprocessing"]
        preprocessing = Preprocessing(**{**p, "mean": tuple(p["mean"]), "std": tuple(p["std"])})
        frame_indices, crops = tuple(int(i) for i in info["frame_indices"]), int(info["crops"])
        input_hw = tuple(int(v) for v in info["input"]["shape"][-2:]) if "input" in info else None
        square = bool((info.get("decode") or {}).get("square"))
        timeline = (info.get("decode") or {}).get("timeline", DEFAULT_TIMELINE)  # absent: the default
        if timeline not in TIMELINES:
            raise ValueError(f"unknown timeline {timeline!r}")
        kind = info["backbone_kind"]
        model = ModelInfo(info.get("run"), info.get("stage", "export"), (info["backbone"],), ENGINE_ONNX, folder)
        decoder, short_side = export_decode(info, preprocessing)
        maps = maps_output(info)  # None: the head gives scores alone
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OSError) as exc:  # JSONDecodeError and
        # UnicodeDecodeError are ValueErrors; AttributeError: a JSON list or number where an object belongs
        raise _not_readable(folder, f"{type(exc).__name__}: {exc}") from None
    if kind not in SCORABLE_KINDS:
        raise _not_readable(folder, f"a {kind} backbone's input is not made by preprocess_snippets")
    try:
        scorer = OnnxScorer(folder, providers=providers, maps=maps)
    except Exception as exc:  # onnxruntime's own error types for a damaged or foreign file
        raise UserError(f"onnxruntime cannot load the graphs in {folder} ({type(exc).__name__}: {exc}): export the "
                        f"run again with {EXPORT_FIX} --out {folder}") from None
    return OnnxExport(folder, scorer, model, preprocessing, frame_indices, crops, decoder, short_side, input_hw,
                      square, timeline)


def embed_chunk(snippets: list[np.ndarray], export: OnnxExport) -> np.ndarray:
    """uint8 snippets, each ``[16, H, W, 3]`` -> features ``[n, crops, D]`` (preprocessed, then the backbone graph);
    a spatial run's export gives each snippet's cells, ``[n, C, D]``."""
    x = preprocess_snippets(torch.from_numpy(np.stack(snippets)), export.preprocessing, export.frame_indices,
                            export.crops)  # [n * crops, 3, F, h, w]
    if export.input_hw is not None and tuple(x.shape[-2:]) != export.input_hw:
        h, w = export.input_hw
        raise VideoError("", f"its frames become {x.shape[-1]}x{x.shape[-2]} inputs but the export was traced for "
                             f"{w}x{h} (the whole frame, view full)", "export the run again for this camera's "
                             "frame size: dakd export RUN --store S --frame-size WIDTHxHEIGHT")
    features = export.scorer.embed(x)  # [n * crops, D], or cells [n, C, D]
    return features if export.scorer.cells else features.reshape(len(snippets), export.crops, -1)


def video_features(path: Path, export: OnnxExport,
                   chunk: int) -> tuple[np.ndarray, int, float, tuple[int, int] | None]:
    """Decode ``path`` as the run's training videos were and embed it ``chunk`` snippets at a time, so memory holds
    one chunk of frames and the video's features.

    Returns (float32 ``[T, crops, D]``, frames on the export's timeline, its fps, (height, width) of the source
    frames or None). Raises :class:`TooManySnippets` as soon as snippet ``max_snippets + 1`` is decoded (the rest of
    a long video is never decoded) and VideoError when the video is too short for one snippet.
    """
    rows: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    with open_video(path, backend=export.decoder, short_side=export.short_side,
                    needed=export.frame_indices, square=export.square, timeline=export.timeline,
                    stall_timeout_s=export.decode_timeout_s) as video:
        for t, snippet in enumerate(video.snippets(SNIPPET_FRAMES), start=1):
            if t > export.max_snippets:
                raise TooManySnippets(too_many_message(f"more than {export.max_snippets}", export.max_snippets))
            pending.append(snippet)
            if len(pending) == chunk:
                rows.append(embed_chunk(pending, export))
                pending = []
        if pending:
            rows.append(embed_chunk(pending, export))
        info = video.info
    if not rows:
        raise VideoError(str(path), f"too short: {info.n_frames} frames, a snippet needs {SNIPPET_FRAMES}",
                         f"use videos of at least {SNIPPET_FRAMES} frames")
    return np.concatenate(rows), int(info.n_frames), float(info.fps or 0.0), _known_size(info.height, info.width)


def onnx_detect(path: Path, export: OnnxExport, chunk: int) -> Detection:
    """One video scored by the exported graphs: the backbone a chunk at a time, the head over every snippet at
    once (the attention sees the whole video), each crop as its own sequence, crops averaged (a spatial export: the
    cells together, with the maps)."""
    features, n_frames, fps, frame_hw = video_features(path, export, chunk)
    scores, maps = export.scorer.score_crops_maps(features)  # maps None: an export without maps
    return Detection(path, scores, n_frames, fps, export.timeline, maps, frame_hw)


def describe_failure(exc: BaseException, export: OnnxExport) -> tuple[str, str]:
    """(reason, fix) of a video the exported model could not score."""
    if isinstance(exc, TooManySnippets):
        run = f" --model {export.model.run[:12]}" if export.model.run else " --model RUN"
        return str(exc), f"run dakd detect without --onnx, with --store S{run}, which scores any length"
    return failure_reason(exc)


def find_inputs(paths: list[str], overlay: Path | None) -> list[Path]:
    """The videos to score; checks the ``overlay`` destination against their number. Raises UserError."""
    found = find_videos(paths)
    if not found.videos:
        raise InputError(f"no videos found in {', '.join(paths)}")
    if overlay and overlay.suffix.lower() == ".mp4" and len(found.videos) > 1:
        raise UsageError(f"`overlay` {overlay} names one file but there are {len(found.videos)} videos: pass a "
                         "folder")
    return found.videos


@dataclass
class Written:
    """What :func:`write_all` wrote for one video: ``<out>/<stem>`` and its files (csv, json, png, the maps with a
    spatial run, then the overlay when asked), and its events (with their boxes with a spatial run)."""

    stem: Path
    files: list[Path]
    overlay: Path | None
    events: list[dict]


def write_all(detections: list[Detection], model: ModelInfo, out: Path, rule: AlertRule,
              overlay: Path | None) -> list[Written]:
    """Every scored video's files (and overlay) under ``out``, its events under ``rule``. One :class:`Written` per
    detection."""
    out.mkdir(parents=True, exist_ok=True)
    names = [d.path.stem for d in detections]
    names = names if len(set(names)) == len(names) else [str(d.path) for d in detections]
    written = []
    for detection, stem in zip(detections, unique_stems(names)):
        events = alert_events(detection, rule)
        if detection.maps is not None:
            add_boxes(events, detection.maps, rule.threshold, detection.frame_hw or frame_size(detection.path))
        files = write_outputs(detection, stem, out, model, rule, events)
        dest = None
        if overlay:
            dest = overlay if overlay.suffix.lower() == ".mp4" else overlay / f"{stem}.mp4"
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_overlay(detection.path, dest, detection.frame_scores, fps=detection.fps,
                          rule=rule, timeline=detection.timeline, cell_maps=detection.maps,
                          boxes=event_frames(detection, events))
            files.append(dest)
        written.append(Written(out / stem, files, dest, events))
    return written


def event_frames(d: Detection, events: list[dict]) -> list[tuple[int, int, tuple[int, int, int, int]]]:
    """``(first frame, end frame, box)`` of each event with a box (:func:`add_boxes`): the frames ``[first, end)``
    of its first to last snippet (the last snippet's trailing frames included, as :func:`alert_events`), on which
    the overlay draws its box."""
    n = len(d.snippet_scores)
    return [(e["first_snippet"] * SNIPPET_FRAMES,
             d.n_frames if e["last_snippet"] == n - 1 else (e["last_snippet"] + 1) * SNIPPET_FRAMES, tuple(e["box"]))
            for e in events if "box" in e]


def score_video(run: LoadedRun, model, arrays: list[np.ndarray], device,
                grids: list[tuple[int, int]] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """One video scored by a run's model: (snippet scores ``[T]``, anomaly maps ``[T, rows, cols]`` or None).
    ``arrays``: the video's aligned features, one per backbone (:func:`stored_inputs`): a global run's ``[T, crops,
    D_b]``, scored as evaluation scores them, without maps; a spatial run's cells ``[T, C_b, D_b]`` on ``grids``,
    scored on the run's grid (``pipeline.evaluate.scoring.score_cells``, every backbone brought to it), the maps
    ``[T, rows, cols]`` with ``(rows, cols) = run.grid``; a map student (``run.map_student``) its low-resolution
    frames as a global run, with its maps on its grid (``score_snippet_maps``)."""
    if run.spatial:
        return score_cells(model, arrays, grids, device, n_heads=run.attention_heads, grid=run.grid)
    if run.map_student:
        return score_snippet_maps(model, arrays, device, grid=run.grid)
    return score_snippets(model, arrays, device, n_heads=run.attention_heads), None


def stored_inputs(run: LoadedRun, store: FeatureStore, keys: list[str]) -> tuple[list[np.ndarray],
                                                                                 list[tuple[int, int]] | None]:
    """One video's stored features (``keys``: one feature key per backbone, the run's order) as
    :func:`score_video` takes them: a global run's ``[T, crops, D_b]`` as stored (aligned by ``align_snippets``;
    grids None); a spatial run's cells ``[T, C_b, D_b]`` and grids, read as evaluation reads them
    (``LoadedRun.scoring_inputs``: a global feature's crops averaged, one cell), aligned by ``align_cells``.
    Raises DamagedFeature (a UserError) or KeyError for a feature damaged or gone since extraction."""
    if not run.spatial:
        return align_snippets([store.load_feature(key).astype(np.float32) for key in keys])[0], None
    records = {}
    for name, key in zip(run.backbones, keys):
        record = store.get_feature(key)
        if record is None:
            store.load_feature(key)  # raises, naming what is wrong with it (missing or damaged)
        records[name] = record
    # no dataset entry: the readers of VideoFeatures use its records alone
    cells, grids = run.scoring_inputs(VideoFeatures(None, records))
    return align_cells(cells)[0], grids


def score_store(paths: list[str], store_dir, *, run: str | None, weights: dict[str, str], device: str,
                timeline: str | None, batch_size: int, progress: bool, overlay: Path | None = None,
                decode_timeout_s: float = DECODE_STALL_TIMEOUT_S):
    """Score with a run of the store, in torch (features cached in the store). Returns (detections, model,
    failures, warnings, frames decoded, seconds). Raises UserError."""
    # named: a file, no store, a damaged manifest (a read-only store scores the videos it has features of)
    store = open_run_store(store_dir)
    try:
        dev = auto_device(device)
        loaded = load_run(store, run or latest_run(store, DEFAULT_STAGE))
        backbones, settings = backbones_for(loaded, store, weights, dev)
        settings["timeline"] = timeline or settings["timeline"]
        videos = find_inputs(paths, overlay)
        start = time.perf_counter()
        extractor = Extractor(store, backbones, batch_size=batch_size, progress=progress, record_infos=True,
                              decode_timeout_s=decode_timeout_s, **settings)
        warnings = [f"the {name} features of these videos come from other extractor settings than the run's "
                    "training features (weights, crops, decoding or timeline differ); scores may be shifted"
                    for name, fp in zip(loaded.backbones, extractor.fingerprints) if fp != loaded.fingerprints[name]]
        outcome = extractor.run(videos)  # the store's faults (full disk, damaged manifest) raise; written is kept
        failures = list(outcome.failures)
        failed = {path for path, _, _ in failures}
        model = loaded.model.to(dev)
        detections = []
        for path in [v for v in videos if str(v) not in failed]:
            video_key = store.video_key(path)
            try:
                arrays, grids = stored_inputs(loaded, store, [feature_key(video_key, fp)
                                                              for fp in extractor.fingerprints])
            except (UserError, ValueError, OSError) as exc:
                # a stored feature damaged since the extractor checked it: this video fails alone, the others go on
                failed.add(str(path))
                failures.append((str(path), f"its stored features cannot be read ({exc})",
                                 STORED_FEATURE_FIX.format(store=store_dir)))
                continue
            n_frames, fps, frame_hw = video_timeline(store, video_key, outcome.infos.get(str(path)))
            scores, maps = score_video(loaded, model, arrays, dev, grids)
            detections.append(Detection(path, scores, n_frames, fps, extractor.timeline, maps, frame_hw))
        return (detections, ModelInfo.of_run(loaded), failures, warnings, outcome.frames,
                time.perf_counter() - start)
    finally:
        store.close()


def score_onnx(paths: list[str], folder, *, run: str | None, weights: dict[str, str], device: str,
               timeline: str | None, batch_size: int, progress: bool, overlay: Path | None = None,
               decode_timeout_s: float = DECODE_STALL_TIMEOUT_S):
    """Score with an exported student in onnxruntime: only the export folder, no store. Returns as
    :func:`score_store` (frames: those scored)."""
    warnings = [f"`{name}` is not used with `onnx` (the export holds its run's model and weights)"
                for name, value in (("run", run), ("weights", weights)) if value]
    providers = ["CPUExecutionProvider"] if device == "cpu" else None  # None: CUDA when available
    export = load_export(folder, providers)
    export.decode_timeout_s = decode_timeout_s
    if timeline and timeline != export.timeline:
        warnings.append(f"the export's run was trained on features decoded on the {export.timeline} timeline, "
                        f"these videos are decoded on the {timeline} one; scores may be shifted")
        export.timeline = timeline
    videos = find_inputs(paths, overlay)
    start = time.perf_counter()
    detections, failures = [], []
    for path in tqdm(videos, unit="video", disable=not progress, dynamic_ncols=True, desc="detect (onnx)"):
        try:
            detections.append(onnx_detect(path, export, batch_size))
        except Exception as exc:  # VideoError, TooManySnippets, a decoder's own types: one bad video fails alone
            failures.append((str(path), *describe_failure(exc, export)))
    frames = sum(d.n_frames for d in detections)
    return detections, export.model, failures, warnings, frames, time.perf_counter() - start
