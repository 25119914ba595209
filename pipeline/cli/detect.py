"""Score new videos with a trained run: per-frame anomaly scores, a plot, and optionally an overlaid copy.

    dakd detect VIDEO_OR_FOLDER... --store DIR [--model RUN] [--out detections]
                [--overlay OUT.mp4|FOLDER] [--weights NAME=PATH] [--threshold T]
                [--timeline constant|decoded] [--open-after 2] [--close-after 3] [--smoothing 3]
    dakd detect VIDEO_OR_FOLDER... --onnx EXPORT_DIR [--out detections] [--overlay ...]

The run (default: the store's most recent student) names its backbones; each video goes through the extract
stage with the settings the run's training features were made with (crops, frames, decoder, dtype, read from the
store), so its features are cached in the store like any other, then through the run's model over every snippet
(crops averaged, as evaluation scores). Works for teacher, student, LA-Net and lightning runs. Each video's snippet
scores are then smoothed by a centred moving mean over ``--smoothing`` snippets (default 3, one each side; 1: the
model's own), the rule of evaluate's ``auc_smoothed`` (docs/method.md §7.3): everything below (events, CSV, JSON,
plot, overlay) uses the smoothed scores, and the JSON records ``smoothing_snippets``. The maps are not smoothed.

With ``--onnx EXPORT_DIR`` (a folder written by ``dakd export``) the exported student scores the
videos in onnxruntime, and only that folder is needed: no store, run checkpoint or backbone weights (a deployment
machine). Each video is decoded as the run's training features were (decoder, resize while decoding and
timeline, from the export's ``decode`` entry), preprocessed with the export's preprocessing
(``extractors.base.preprocess_snippets``) and run through the backbone graph ``--batch-size`` snippets at a time;
the head graph then scores all its snippets at once, since the attention sees the whole video. An export takes
at most its ``T_range`` maximum
(``--max-snippets`` at export, by default above UCF-Crime's longest video): decoding stops at the first snippet
past it and the video fails (``pipeline.detect.onnx_scorer.TooManySnippets``). The scores equal the eager ones to within
``pipeline.detect.onnx_scorer.TOLERANCE``.

Per video, in ``--out``: ``<name>.csv`` (frame, time_s, snippet, score), ``<name>.json`` (the same scores as
arrays plus the run, the frame rate, the ``alert_rule`` and its ``events``) and ``<name>.png`` (score over time);
the summary line names them and the overlay. A spatial run's anomaly maps add ``<name>.maps.npz``, a box per event
and a heatmap in the overlay (``pipeline.detect.maps``). Events are those of the hysteresis rule ``dakd watch``
alerts with and ``dakd calibrate`` counts (``pipeline.alert_rule``: an event opens after ``--open-after`` snippets at or
above the threshold and closes after ``--close-after`` below it), each with its start and end in seconds, its
first and last snippet and its peak score; so detect on the calibration footage finds the false alarms calibrate
counted. The threshold is ``--threshold``, else the offline threshold of the run's calibration
(``dakd calibrate``; with ``--onnx``, the one export.json carries), else 0.5; the summary line says
which and states the rule. Frames are those of the presentation timeline the run's training features were decoded on
(``data.decode``: by default the stream's constant-rate grid, so frame j is shown at ``time_s = j / fps`` by every
player, gaps in a variable-frame-rate file's timestamps included; ``--timeline`` overrides it, with a warning
that the features differ from the run's). Snippet t covers frames [16t, 16t + 16); the last < 16 frames, which
form no snippet, take the last snippet's score, so every frame has one; the JSON also names the ``engine`` (``torch`` or
``onnxruntime``). Videos are decoded snippet by snippet and the overlay frame by frame, so memory stays bounded for
long videos (with ``--onnx``, by one batch of frames plus the video's features and the head's attention). A
video that fails is reported with the reason and the fix, the others go on, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from data.decode import TIMELINES
from pipeline import api
from pipeline import defaults as d
from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, error, print_failures, say, warn
from pipeline.cli.parser import (RULE_FLAGS, DEVICE_HELP, add_common, add_decode_timeout, add_hysteresis,
                                 add_offline_smoothing, add_store, alert_rule, call_api)
from pipeline.defaults import EXIT_SOME_FAILED
from pipeline.errors import UserError


OWN_FLAGS = RULE_FLAGS  # consumed here: the flags of the alert rule become one `rule` (alert_rule)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd detect``."""
    p.add_argument("videos", nargs="+", metavar="PATHS",
                   help="video files, folders (searched recursively) or folders of frames")
    add_store(p, "the store holding the run (features of these videos are cached there too); required unless "
                 "--onnx is given, which needs no store (a --store passed with --onnx is not used)", required=False)
    p.add_argument("--onnx", metavar="EXPORT_DIR",
                   help="score with an exported student (the folder dakd export wrote) in onnxruntime: needs only "
                        "that folder, no store, run or backbone weights (--store, --model and --weights are not "
                        "used); videos longer than the export's T range fail (score them without --onnx)")
    p.add_argument("--model", dest="run",
                   help=f"run key prefix or folder (default: the most recent {d.DETECT_STAGE} run)")
    p.add_argument("--out", default=d.DETECT_OUT,
                   help=f"folder for the CSV, JSON and PNG files (default: {d.DETECT_OUT})")
    p.add_argument("--overlay", help="write a copy of the video with a score bar (and a spatial run's heatmap and "
                                     "event boxes): a .mp4 path (one video) or a folder (one <name>.mp4 per video)")
    p.add_argument("--threshold", type=float, default=None,
                   help="alert threshold of the events (a score at or above it counts), the plot and the overlay "
                        "(default: the run's or the --onnx export's calibration by dakd calibrate, its offline "
                        f"threshold; uncalibrated: {d.FALSE_ALARM_THRESHOLD})")
    add_hysteresis(p)
    add_offline_smoothing(p)
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights file per backbone, as for extract")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP + "; with --onnx, cpu keeps "
                                                                         "onnxruntime on the CPU")
    p.add_argument("--timeline", choices=TIMELINES,
                   help="how frames are placed in time (as extract --timeline); default: the timeline the run's "
                        "training features (or the export's) were decoded on, which they are scored on")
    p.add_argument("--batch-size", type=int, default=d.DETECT_BATCH_SIZE,
                   help=f"snippets per backbone forward pass (eager, or the backbone graph with --onnx) "
                        f"(default: {d.DETECT_BATCH_SIZE})")
    add_decode_timeout(p)
    add_common(p, json_help="print every video's result (path, max score, intervals, files) as JSON on stdout")


def overlay_of(files: list[Path]) -> Path | None:
    """The overlay among one video's files (the one ``.mp4``: every other file is csv, json, png or npz)."""
    return next((f for f in files if f.suffix.lower() == ".mp4"), None)


def written_files(files: list[Path]) -> str:
    """``out/v.csv, .json, .png and overlay ov/v.mp4``: one video's files (csv, json, png, the maps' .maps.npz of a
    spatial run, then the overlay)."""
    stem, overlay = files[0].stem, overlay_of(files)
    text = f"{files[0]}, " + ", ".join(f.name[len(stem):] for f in files[1:] if f != overlay)
    return text + (f" and overlay {overlay}" if overlay else "")


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("detect")


def run(args: argparse.Namespace) -> int:
    """The command: flags -> :func:`pipeline.api.detect` -> one line per video and a summary."""
    configure_logging(args)
    try:
        result = call_api(api.detect, args, progress=not args.quiet, rule=alert_rule(args))
    except UserError as exc:
        return error(exc, args=args)
    from pipeline.detect.detector import ENGINE_ONNX  # torch: loaded by now, imported here so that errors come first

    for w in result.warnings:
        warn(args, w)
    rule = f"events ({result.rule.describe()})"
    for detection, files, events in zip(result.detections, result.written, result.events):
        say(args, f"detect: {detection.path}: max score {detection.frame_scores.max():.3f}, {len(events)} {rule}; "
                  f"wrote {written_files(files)}")
    n = len(result.detections) + len(result.failures)
    if result.engine == ENGINE_ONNX:
        say(args, f"detect: {n} videos with {result.model} ({ENGINE_ONNX}, {args.onnx}): {len(result.detections)} "
                  f"scored, {len(result.failures)} failed; {result.frames} frames scored in {result.seconds:.1f} s; "
                  f"results in {result.out}")
    else:
        say(args, f"detect: {n} videos with {result.model}: {len(result.detections)} scored, "
                  f"{len(result.failures)} failed; {result.frames} new frames decoded in {result.seconds:.1f} s; "
                  f"results in {result.out}")
    say(args, f"detect: threshold {result.threshold:.6g} ({result.threshold_source}); {rule}")
    print_failures(result.failures, args)
    emit_json(args, {"model": result.model, "engine": result.engine, "out": str(result.out),
                     "threshold": result.threshold, "threshold_source": result.threshold_source,
                     "alert_rule": result.rule.to_json(), "events_are": rule,
                     "videos": [{"path": str(d.path), "max_score": float(d.frame_scores.max()), "n_frames": d.n_frames,
                                 "fps": d.fps, "events": events, "files": [str(f) for f in files],
                                 "overlay": str(overlay_of(files)) if overlay_of(files) else None}
                                for d, files, events in zip(result.detections, result.written, result.events)],
                     "failures": [dataclasses.asdict(f) for f in result.failures]})
    return EXIT_SOME_FAILED if result.failures else 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
