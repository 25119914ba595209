"""The command line of every stage, built without importing torch, torchvision or sklearn, so that ``dakd --help``
and ``dakd STAGE --help`` answer at once (``benchmarks/startup.py`` measures it).

One vocabulary for every subcommand (README "Command line"):

- ``--store DIR`` is an option everywhere a store is used, its default ``$DAKD_STORE`` (``pipeline.store`` also
  takes the store positionally, the spelling of before);
- ``--quiet`` (no progress bars), ``--verbose`` (log the library's INFO messages), ``--json`` (a machine-readable
  summary on stdout; the human-readable lines then go to stderr) on every subcommand;
- ``NAME=VALUE`` options (``--weights``, ``--fingerprint``, ``--view``, ``--set``) go through :func:`parse_pairs`;
- a flag taking one backbone is ``--backbone``, several ``--backbones`` (comma-separated); a qualified list keeps
  the qualifier (``grid --teacher-backbones``, ``--student-backbone``);
- exit codes: 0 ok, 1 some inputs of a batch failed, 2 a user error (:mod:`pipeline.defaults`).

Renamed flags keep their old spelling as an alias: ``extract --clip-frames`` is ``--frames-per-snippet`` (it drives
every image backbone, effnet_lite0 as well as clip).

Each stage module's ``build_parser()`` is :func:`stage_parser` (``python -m pipeline.STAGE``) and ``dakd`` puts the
same arguments under subcommands (:func:`dakd_parser`, :mod:`pipeline.cli`). The defaults come from
:mod:`pipeline.defaults` and from ``data.decode`` / ``data.datasets.registry`` (the datasets' names and help), which
import numpy only.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable, Iterable

from data.decode import BACKENDS, DECODE_RESIZE_FILTER, DEFAULT_TIMELINE, FRAME_FOLDER_FPS, TIMELINES
from data.datasets import registry as dataset_registry
from data.watchdog import DECODE_STALL_TIMEOUT_S
from pipeline import defaults as d
from pipeline.errors import UsageError

DEVICE_HELP = "auto (CUDA when present), cpu, cuda, cuda:1, ... (default: auto)"


def dataset_help() -> str:
    """What ``--dataset`` takes, from the dataset registry (read when a parser is built, so a dataset registered
    before shows): ``ucf-crime | ... | avenue | a labels CSV | ...``."""
    return dataset_registry.spec_forms()


# -- the parser class: no abbreviations, "did you mean" -------------------------------------------------------
SUGGEST_CUTOFF = 0.7  # difflib similarity an option or command must reach to be suggested (--bogus is no --verbose)
_NUMBER = re.compile(r"^-\d+(\.\d*)?$|^-\.\d+$")  # "-1", "-0.5": values, not flags


class Parser(argparse.ArgumentParser):
    """Every parser of the command line: abbreviations refused (``allow_abbrev=False``: ``--stor`` is not taken
    for ``--store``), and an unknown flag answered with the usage of the (sub)command that was given it and a
    "did you mean --X?" from that command's own options (exit code 2, as argparse)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._argv: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)  # what error() looks through for unknown flags
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse would name them under the top-level usage: name them under the subcommand's
            self._chosen_subparser(namespace).error(_unrecognized(extras, self._chosen_subparser(namespace)))
        return namespace

    def error(self, message: str):
        if self._subparsers_action() is None:  # a leaf: flags it does not know are the likely cause of any error
            unknown = self.unknown_flags(self._argv)
            if unknown:
                message = _unrecognized(unknown, self)
        elif (m := re.search(r"invalid choice: '([^']*)'", message)) and (close := difflib.get_close_matches(
                m.group(1), list(self._subparsers_action().choices), n=1, cutoff=SUGGEST_CUTOFF)):
            message = f"{message}; did you mean {close[0]}?"
        super().error(message)

    def option_strings(self) -> list[str]:
        """This parser's long and short option strings (``--store``, ``-h``, ...)."""
        return list(self._option_string_actions)

    def unknown_flags(self, argv: Iterable[str]) -> list[str]:
        """The flag-like tokens of ``argv`` (before a ``--``) that are none of this parser's options."""
        unknown = []
        for token in argv:
            if token == "--":
                break
            if token.startswith("-") and len(token) > 1 and not _NUMBER.match(token):
                name = token.split("=", 1)[0]
                if name not in self._option_string_actions:
                    unknown.append(name)
        return unknown

    def suggest(self, flag: str) -> str | None:
        """The closest of this parser's long options to ``flag``, or None."""
        longs = [o for o in self._option_string_actions if o.startswith("--")]
        close = difflib.get_close_matches(flag, longs, n=1, cutoff=SUGGEST_CUTOFF)
        return close[0] if close else None

    def _subparsers_action(self) -> argparse._SubParsersAction | None:
        return next((a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None)

    def _chosen_subparser(self, namespace: argparse.Namespace) -> argparse.ArgumentParser:
        action = self._subparsers_action()
        chosen = getattr(namespace, action.dest, None) if action is not None else None
        return action.choices[chosen] if chosen in (action.choices if action is not None else {}) else self


def _unrecognized(tokens: list[str], parser: argparse.ArgumentParser) -> str:
    """``unrecognized arguments: --stor (did you mean --store?)``."""
    hints = []
    for token in tokens:
        name = token.split("=", 1)[0]
        if name in parser._option_string_actions:  # a flag of the subcommand, given before it (dakd --json extract)
            hints.append(f"{name} goes after the command")
            continue
        close = parser.suggest(name) if isinstance(parser, Parser) and name.startswith("-") else None
        if close and close != name:
            hints.append(f"did you mean {close}?" if len(tokens) == 1 else f"{name}: did you mean {close}?")
    return f"unrecognized arguments: {' '.join(tokens)}" + (f" ({'; '.join(hints)})" if hints else "")


# -- NAME=VALUE -------------------------------------------------------------------------------------------------
def parse_pairs(values: Iterable[str], flag: str, form: str = "NAME=VALUE", *, split_commas: bool = False,
                empty_value: bool = False) -> dict[str, str]:
    """The one ``NAME=VALUE`` parser: ``["i3d=a.pt", "clip=b.pt"]`` -> ``{"i3d": "a.pt", "clip": "b.pt"}`` (a
    later value for a name wins). ``split_commas``: one value may hold several pairs (``--weights
    i3d=a.pt,s3d=b.pt``). Raises :class:`UsageError` naming ``flag`` and ``form`` (exit code 2)."""
    out: dict[str, str] = {}
    for value in values:
        for item in (value.split(",") if split_commas else [value]):
            name, sep, rest = (part.strip() for part in item.partition("="))
            if not sep or not name or not (rest or empty_value):
                raise UsageError(f"{flag} takes {form}, got {item!r}")
            out[name] = rest
    return out


def split_list(text: str | None) -> list[str]:
    """``"i3d, s3d,"`` -> ``["i3d", "s3d"]``; None -> []."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


# -- the options every subcommand shares -----------------------------------------------------------------------
def add_store(p: argparse.ArgumentParser, help: str, *, required: bool = True) -> None:
    """``--store DIR``, default ``$DAKD_STORE``; required (when that is unset) unless ``required`` is False."""
    env = os.environ.get(d.STORE_ENV) or None
    p.add_argument("--store", default=env, required=required and env is None, metavar="STORE",
                   help=f"{help} (default: ${d.STORE_ENV}" + (f", now {env})" if env else ", unset)"))


def add_common(p: argparse.ArgumentParser, *, json_help: str = "print a machine-readable summary (JSON) on "
               "stdout; the other lines go to stderr") -> None:
    """``--quiet``, ``--verbose``, ``--json``: on every subcommand."""
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--verbose", action="store_true", help="log the library's progress messages (INFO) on stderr")
    p.add_argument("--json", action="store_true", help=json_help)


# -- the stages ------------------------------------------------------------------------------------------------
def extract_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="video files, folders (searched recursively), folders of frames, "
                                            "or dataset roots with --dataset")
    add_store(p, "feature store folder (created if missing)")
    p.add_argument("--backbones", default=d.EXTRACT_BACKBONES,
                   help=f"comma-separated, from {', '.join(d.BACKBONE_NAMES)} (default: {d.EXTRACT_BACKBONES})")
    p.add_argument("--crops", type=int, default=d.DEFAULT_CROPS, choices=d.CROP_CHOICES,
                   help="1 centre, 5 corners+centre, 10 with flips (default: 1)")
    p.add_argument("--view", action="append", default=[], metavar="[NAME=]VIEW",
                   help=f"how frames become each backbone's input: {', '.join(d.VIEW_NAMES)} (crop: resize then "
                        "--crops crops, the published pipelines'; full: the whole frame, aspect kept, for i3d, s3d, "
                        "effnet_lite0; squash: the whole frame resized to a square). VIEW alone applies to every "
                        "backbone, NAME=VIEW to one (repeatable; default with --crops 1: full for i3d and "
                        "effnet_lite0, squash for lowres, crop for the others; with 5 or 10 crops: crop)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights file per backbone, or NAME=random for untrained weights (repeatable)")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=d.EXTRACT_BATCH_SIZE,
                   help=f"snippets per forward pass, across videos (default: {d.EXTRACT_BATCH_SIZE})")
    p.add_argument("--frames-per-snippet", "--clip-frames", dest="frames_per_snippet", type=int,
                   default=d.DEFAULT_FRAMES_PER_SNIPPET, metavar="K",
                   help="frames per snippet embedded by the image backbones (clip, clip_b32, effnet_lite0), "
                        "averaged (default: 1, the centre frame; --clip-frames is the old spelling)")
    p.add_argument("--dtype", default=d.DTYPES[0], choices=d.DTYPES, help=f"stored dtype (default: {d.DTYPES[0]})")
    p.add_argument("--decoder", default="auto", choices=BACKENDS,
                   help="auto: decord, PyAV when decord cannot open a file (default: auto)")
    p.add_argument("--timeline", default=DEFAULT_TIMELINE, choices=TIMELINES,
                   help="constant: frames as a player shows them, on the stream's constant-rate grid (a gap in the "
                        "timestamps repeats the previous frame, duplicates are dropped, as ffmpeg -vsync cfr), the "
                        "timeline annotations and detect's alerts refer to; decoded: every decoded frame once, "
                        "whatever its timestamp. Constant-rate files give the same features either way "
                        f"(default: {DEFAULT_TIMELINE})")
    p.add_argument("--fps", type=float, default=FRAME_FOLDER_FPS,
                   help=f"frame rate of folders of frames (default: {FRAME_FOLDER_FPS})")
    p.add_argument("--no-decode-resize", action="store_true",
                   help="decode at full size and resize in torch (slower on a CPU; default: resize while decoding "
                        f"with {DECODE_RESIZE_FILTER} to the size each backbone needs)")
    p.add_argument("--decode-workers", type=int, help="videos decoded at once (default: one per core, up to "
                   f"{d.MAX_DECODE_WORKERS}, when every backbone is decode-bound, i.e. lowres alone; else 1)")
    add_decode_timeout(p)
    p.add_argument("--dataset", choices=dataset_registry.DATASETS,
                   help=f"treat PATHS as the root of this dataset (its official lists): {dataset_registry.describe()}")
    p.add_argument("--force", action="store_true", help="recompute features the store already holds")
    p.add_argument("--engine", default=d.ENGINES[0], choices=d.ENGINES,
                   help="local: this process; ray: the videos spread over the workers of a Ray cluster (pip install "
                        "-e '.[ray]'), one per GPU, which send their features back to this process, the only one "
                        "opening --store; every machine must see the videos at the same paths (default: local)")
    p.add_argument("--address", help="with --engine ray: the cluster to join (host:6379, ray://host:10001 or auto; "
                                     "default: $RAY_ADDRESS if set, else a Ray instance started on this machine)")
    p.add_argument("--workers", type=int, help="with --engine ray: number of workers (default: one per GPU of the "
                                               "cluster; without GPUs, one per machine)")
    p.add_argument("--cpus-per-worker", type=int,
                   help="with --engine ray: CPUs each worker reserves, for decoding and torch threads (default: "
                        "the cluster's CPUs shared evenly between the workers)")
    add_common(p)


def train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("stage", choices=d.TRAIN_STAGES)
    add_store(p, "the feature store (runs are kept in <store>/runs)")
    p.add_argument("--dataset", help=f"{dataset_help()} (student: default the teacher's)")
    defaults = "; ".join(f"{s} {','.join(b)}" for s, b in d.STAGE_BACKBONES.items() if s != "lightning")
    p.add_argument("--backbones", help=f"comma-separated (default: {defaults}; lightning: {d.LOWRES}, always)")
    p.add_argument("--teacher", help="student only: the teacher run (key prefix or run folder)")
    p.add_argument("--teachers", help="lightning only: comma-separated teacher runs of any stage (teacher, "
                                      "student, lanet), each a key prefix or run folder")
    p.add_argument("--config", help="YAML file with model/train/mil/distill/lanet/ddl/lightning/adversarial "
                                    "sections (each stage reads its own), or 'paper' for the papers' recipe")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set model.k=10 (repeatable)")
    p.add_argument("--epochs", type=int, help="exactly this many epochs (sets train.min_steps=0; default: 100 "
                                              "epochs and at least train.min_steps steps)")
    p.add_argument("--seed", type=int, help="first seed (default: 0)")
    p.add_argument("--seeds", type=int, default=d.DEFAULT_SEEDS,
                   help=f"train this many seeds and report mean ± std (default: {d.DEFAULT_SEEDS})")
    p.add_argument("--val-fraction", type=float, help="validation share of the training videos (default: 0.1)")
    p.add_argument("--crops", choices=d.CROP_MODES, help="average crops (default) or one sample per crop")
    p.add_argument("--precision", choices=d.PRECISIONS,
                   help="auto: fp32 on CPU, bf16/fp16 autocast on GPU (default: auto)")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    p.add_argument("--fingerprint", action="append", default=[], metavar="BACKBONE=PREFIX",
                   help="which stored extraction to use when the store holds several for a backbone")
    p.add_argument("--allow-missing", action="store_true",
                   help="train on the videos that have features instead of stopping when some are missing")
    p.add_argument("--checkpoint-every", type=int,
                   help=f"epochs between resumable saves (default: {d.DEFAULT_CHECKPOINT_EVERY}, and at least "
                        f"{d.CHECKPOINT_MIN_STEPS} steps)")
    p.add_argument("--force", action="store_true", help="retrain even if the run exists")
    add_common(p, json_help="print the runs' metrics as JSON on stdout; the other lines go to stderr")


def evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run key prefixes or run folders (several: mean ± std over them)")
    add_store(p, "the store holding the runs and the test features")
    p.add_argument("--dataset", help="default: the dataset each run was trained on")
    p.add_argument("--out", help="output folder (default: <store>/runs/evaluate/<key>; one run only)")
    p.add_argument("--summary", help="write the mean ± std over the runs, one group per configuration (all but "
                                     "the seed), to this JSON file")
    p.add_argument("--fingerprint", action="append", default=[], metavar="BACKBONE=PREFIX",
                   help="score the test videos with this stored extraction of BACKBONE instead of the run's own "
                        "(repeatable; recorded in metrics.json)")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    p.add_argument("--precision", default=d.DEFAULT_SCORING_PRECISION, choices=d.SCORING_PRECISIONS,
                   help="scoring precision (default: fp32, the reference)")
    p.add_argument("--allow-missing", action="store_true", help="evaluate the test videos that have features "
                                                                "(the metrics are then not comparable)")
    p.add_argument("--no-video-plots", action="store_true", help="skip the per-video PNGs")
    p.add_argument("--force", action="store_true", help="recompute even if this evaluation exists")
    add_common(p, json_help="print each run's metrics and the groups' mean ± std as JSON on stdout")


def detect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="video files, folders (searched recursively) or folders of frames")
    add_store(p, "the store holding the run (features of these videos are cached there too); required unless "
                 "--onnx is given, which needs no store (a --store passed with --onnx is not used)", required=False)
    p.add_argument("--onnx", metavar="EXPORT_DIR",
                   help="score with an exported student (the folder dakd export wrote) in onnxruntime: needs only "
                        "that folder, no store, run or backbone weights (--store, --model and --weights are not "
                        "used); videos longer than the export's T range fail (score them without --onnx)")
    p.add_argument("--model", help=f"run key prefix or folder (default: the most recent {d.DETECT_STAGE} run)")
    p.add_argument("--out", default=d.DETECT_OUT,
                   help=f"folder for the CSV, JSON and PNG files (default: {d.DETECT_OUT})")
    p.add_argument("--overlay", help="write a copy of the video with a score bar: a .mp4 path (one video) or a "
                                     "folder (one <name>.mp4 per video)")
    p.add_argument("--threshold", type=float, default=None,
                   help="alert threshold of the events (a score at or above it counts), the plot and the overlay "
                        "(default: the run's or the --onnx export's calibration by dakd calibrate, its offline "
                        f"threshold; uncalibrated: {d.FALSE_ALARM_THRESHOLD})")
    add_hysteresis(p)
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


def add_decode_timeout(p: argparse.ArgumentParser) -> None:
    """``--decode-timeout``: extract and detect share it."""
    p.add_argument("--decode-timeout", type=float, default=DECODE_STALL_TIMEOUT_S, metavar="SECONDS",
                   help="a video whose decoding makes no progress (no snippet) for this long fails by name and the "
                        f"others go on (default: {DECODE_STALL_TIMEOUT_S:g})")


def add_hysteresis(p: argparse.ArgumentParser) -> None:
    """``--open-after``, ``--close-after``: the alert rule (``pipeline.live.hysteresis``) that detect, calibrate
    and watch share."""
    from pipeline.live.hysteresis import CLOSE_AFTER, OPEN_AFTER  # numpy only, as data.decode

    p.add_argument("--open-after", type=int, default=OPEN_AFTER,
                   help=f"snippets at or above the threshold in a row that open an event (default: {OPEN_AFTER})")
    p.add_argument("--close-after", type=int, default=CLOSE_AFTER,
                   help=f"snippets below it in a row that close one (default: {CLOSE_AFTER})")


def add_live_scoring(p: argparse.ArgumentParser, window_help: str) -> None:
    """The hysteresis (:func:`add_hysteresis`) and ``--window``: calibrate and watch share them."""
    add_hysteresis(p)
    p.add_argument("--window", type=int, help=window_help)


def calibrate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run key prefix (6+ characters) or run folder")
    add_store(p, "the store holding the run (features of --normal videos are cached there too)")
    footage = p.add_mutually_exclusive_group(required=True)
    footage.add_argument("--normal", nargs="+", metavar="VIDEO_OR_FOLDER",
                         help="normal footage (no anomaly in it): video files or folders, extracted with the run's "
                              "settings as detect does")
    footage.add_argument("--split", choices=d.CALIBRATE_SPLITS,
                         help="the normal videos of the run's own validation split, made again from its config and "
                              "dataset (features from the store)")
    p.add_argument("--false-alarms-per-hour", type=float, default=d.CALIBRATE_FALSE_ALARMS_PER_HOUR,
                   help="the target: alarm events per hour of normal footage "
                        f"(default: {d.CALIBRATE_FALSE_ALARMS_PER_HOUR:g})")
    add_live_scoring(p, "snippets the live scores attend over (default: the run's train.n_segments; 1 for the "
                        "lightning student)")
    p.add_argument("--out", help="write the calibration to this JSON file instead of <run folder>/calibration.json "
                                 "(needed with a read-only store)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights file per backbone, as for detect (repeatable)")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=d.CALIBRATE_BATCH_SIZE,
                   help=f"snippets per backbone forward pass (default: {d.CALIBRATE_BATCH_SIZE})")
    add_common(p, json_help="print the calibration (calibration.json's content) as JSON on stdout")


def watch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="*", metavar="[NAME=]SOURCE",
                   help="camera streams: rtsp:// rtmp:// http(s):// udp:// tcp:// URLs, a capture device (with "
                        "--format, e.g. v4l2 /dev/video0) or a video file; NAME= names the camera (default: cam1, "
                        "cam2, ...)")
    p.add_argument("--cameras", metavar="FILE.yaml",
                   help="a YAML list of cameras, each {name, source} and optionally realtime, follow, format, "
                        "options (FFmpeg options, e.g. {rtsp_transport: tcp})")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--store", metavar="STORE", help="the store holding the run to score with")
    model.add_argument("--onnx", metavar="EXPORT_DIR", help="an export folder (dakd export): no store "
                                                            "needed")
    p.add_argument("--model", help="run key prefix or folder (default: the store's most recent student)")
    p.add_argument("--realtime", action="store_true", help="play video files at their native rate (a rehearsal "
                                                           "of a camera)")
    p.add_argument("--follow", action="store_true", help="video files are still being written: read them as they "
                                                         "grow")
    p.add_argument("--format", help="FFmpeg input format for every source (e.g. v4l2, dshow, avfoundation)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="FFmpeg option for every source (repeatable; e.g. rtsp_transport=tcp)")
    p.add_argument("--threshold", type=float, default=None,
                   help="alert threshold (default: the run's or export's calibration by dakd calibrate, its live "
                        f"threshold; uncalibrated: {d.FALSE_ALARM_THRESHOLD})")
    add_live_scoring(p, "snippets the model attends over (default: the run's train.n_segments; 1 for the lightning "
                        "student)")
    p.add_argument("--out", default=d.WATCH_OUT, help="folder for events.jsonl, scores/, clips/ and summary.json "
                                                      f"(default: {d.WATCH_OUT})")
    p.add_argument("--webhook", metavar="URL", help="POST every event (opened and closed) as JSON to this URL")
    p.add_argument("--clips", action="store_true", help="save each event as an mp4 clip with pre- and post-roll")
    p.add_argument("--pre-roll", type=float, default=d.WATCH_PRE_ROLL_S,
                   help=f"seconds of clip before an event (default: {d.WATCH_PRE_ROLL_S:g})")
    p.add_argument("--post-roll", type=float, default=d.WATCH_POST_ROLL_S,
                   help=f"seconds of clip after an event (default: {d.WATCH_POST_ROLL_S:g})")
    p.add_argument("--keep-days", type=int, default=d.WATCH_KEEP_DAYS,
                   help=f"days of per-camera score CSVs kept (default: {d.WATCH_KEEP_DAYS})")
    p.add_argument("--give-up-after", type=int, default=None,
                   help="failed connects in a row after which a camera is given up (default: never)")
    p.add_argument("--stall-timeout", type=float, default=d.WATCH_STALL_TIMEOUT_S,
                   help=f"seconds without data after which a stream is reconnected (default: "
                        f"{d.WATCH_STALL_TIMEOUT_S:g})")
    p.add_argument("--batch-size", type=int, default=d.WATCH_BATCH_SIZE,
                   help=f"snippets of all cameras scored in one forward pass (default: {d.WATCH_BATCH_SIZE})")
    p.add_argument("--queue-size", type=int, default=d.WATCH_QUEUE_SIZE,
                   help=f"snippets waiting to be scored; beyond it the oldest is dropped (default: "
                        f"{d.WATCH_QUEUE_SIZE})")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights file per backbone, as for detect (repeatable)")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    add_common(p, json_help="print the exit summary (summary.json's content) as JSON on stdout")


def export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run key prefix (6+ characters) or run folder")
    add_store(p, "the store holding the run")
    p.add_argument("--out", help="output folder (default: <run folder>/export)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights file of the backbone, as for extract")
    p.add_argument("--frame-size", metavar="WIDTHxHEIGHT",
                   help="frame size of the videos to score, for a backbone that takes the whole frame (view full): "
                        "the graph is traced for it (default: the size of most of the run's training videos)")
    p.add_argument("--max-snippets", type=int, default=d.DEFAULT_MAX_SNIPPETS,
                   help="longest video (in snippets) the export accepts; the head's attention holds heads x T^2 "
                        f"floats per map (default: {d.DEFAULT_MAX_SNIPPETS})")
    add_common(p, json_help="print export.json's content (files, check, tolerance) as JSON on stdout")


def store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store_positional", nargs="?", metavar="STORE_DIR",
                   help="the store folder, positionally (the spelling of before; --store is the same)")
    add_store(p, "the store folder", required=False)
    p.add_argument("--backbone", help="only this backbone's features")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--failures", action="store_true", help="list recorded failures instead of features")
    what.add_argument("--runs", action="store_true", help="list training and evaluation runs instead of features")
    what.add_argument("--verify", action="store_true",
                      help="hash every feature file against the hash recorded at write; each damaged one is named and "
                           "marked missing, so the next extract recomputes it (exit 1 if any)")
    what.add_argument("--repair", action="store_true",
                      help="rebuild a damaged manifest.sqlite from the store's files (feature sidecars, run "
                           "folders), after moving it aside as manifest.sqlite.damaged-<time>")
    add_common(p, json_help="machine-readable output")


def import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("lists", nargs="+", metavar="LIST",
                   help="feature lists: one .npy path per line, or a VadCLIP 'path,label' CSV")
    p.add_argument("--backbone", required=True,
                   help="backbone name to file the features under (e.g. i3d, clip); a folder name in the store")
    add_store(p, "feature store folder (created if missing)")
    p.add_argument("--root", help="folder holding the downloaded .npy files; each listed file is looked up "
                                  "below it by file name (the lists carry the authors' paths)")
    p.add_argument("--source", help="label of where the features came from; enters the fingerprint "
                                    "(default: the first list's file name without its extension and the "
                                    "train/test words, so a release's train and test lists agree: "
                                    "ucf-i3d-test.list -> ucf-i3d)")
    p.add_argument("--force", action="store_true", help="import again features that are already stored")
    add_common(p)


def grid_args(p: argparse.ArgumentParser) -> None:
    add_store(p, "the store with the dataset's features")
    p.add_argument("--dataset", required=True, help=dataset_help())
    p.add_argument("--seeds", type=int, default=d.GRID_SEEDS,
                   help=f"seeds per variant (default: {d.GRID_SEEDS}, as the paper reports)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    p.add_argument("--tables", default=",".join(d.GRID_TABLES),
                   help=f"comma-separated from {', '.join(d.GRID_TABLES)} (default: all)")
    p.add_argument("--variants", default="", help="extra variants by name (e.g. temporal-lstm); with --tables '' "
                                                  "only these")
    teacher = ",".join(d.STAGE_BACKBONES["teacher"])
    student = d.STAGE_BACKBONES["student"][0]
    p.add_argument("--teacher-backbones", default=teacher,
                   help=f"backbones of the teacher variants (default: {teacher})")
    p.add_argument("--student-backbone", default=student,
                   help=f"the single backbone of the students, Sultani's MLP and LA-Net (default: {student})")
    p.add_argument("--epochs", type=int, help="epochs of every run (default: each stage's config)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a config override for every variant; each stage reads its own sections (repeatable)")
    p.add_argument("--fingerprint", action="append", default=[], metavar="BACKBONE=PREFIX",
                   help="which stored extraction to use when the store holds several for a backbone")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    p.add_argument("--out", help="folder for grid.json and grid.md (default: <store>/grid)")
    add_common(p, json_help="print grid.json's rows on stdout")


def fetch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-footage", action="store_true", help="weights only, no sample video")
    add_common(p, json_help="print what was fetched (name -> local path) as JSON on stdout")


def demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=d.DEMO_OUT, help=f"working folder (default: ./{d.DEMO_OUT})")
    p.add_argument("--store", metavar="STORE", help="the store to fill (default: <out>/store; $DAKD_STORE is not "
                                                    "used, so the demo never writes into a real store by accident)")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    add_common(p, json_help="print the runs and their test metrics as JSON on stdout")


# name -> (module, one-line help, arguments); the order is the order of ``dakd --help``.
STAGES: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = {
    "extract": ("pipeline.extract", "stage 1: videos -> per-snippet backbone features in the store", extract_args),
    "train": ("pipeline.train", "stages 2-3: train the teacher, distill a student, LA-Net, the lightning student",
              train_args),
    "evaluate": ("pipeline.evaluate", "stage 4: frame-level metrics of runs on the test split", evaluate_args),
    "detect": ("pipeline.detect", "score new videos with a trained run (or an ONNX export)", detect_args),
    "calibrate": ("pipeline.calibrate", "the threshold of a target false-alarm rate on normal footage",
                  calibrate_args),
    "watch": ("pipeline.watch", "score live camera streams as they arrive and raise alerts", watch_args),
    "export": ("pipeline.export", "a single-backbone run as ONNX graphs + TorchScript", export_args),
    "store": ("pipeline.store", "what a store holds; verify its files; repair its manifest", store_args),
    "import": ("pipeline.import_features", "community .npy feature lists into the store", import_args),
    "grid": ("pipeline.grid", "baselines and ablations: train and evaluate a grid of variants", grid_args),
    "fetch": ("pipeline.fetch", "set-up: real weights and sample footage into the user cache", fetch_args),
    "demo": ("pipeline.demo", "the whole chain on synthetic videos with real weights", demo_args),
}
ALIASES = {"import-features": "import"}  # the Docker entrypoint's names of before


def _description(module: str, summary: str) -> str:
    return f"{summary[0].upper()}{summary[1:]}. Exit codes: 0 ok, 1 some inputs failed, 2 user error."


def stage_parser(stage: str) -> argparse.ArgumentParser:
    """The parser of ``python -m pipeline.<module>`` for ``stage`` (a key of :data:`STAGES`)."""
    module, summary, add = STAGES[stage]
    p = Parser(prog=f"python -m {module}", description=_description(module, summary))
    add(p)
    return p


def dakd_parser() -> argparse.ArgumentParser:
    """``dakd STAGE ...``: one subcommand per stage, with the arguments of ``python -m pipeline.<stage>``."""
    p = Parser(
        prog="dakd", description="Weakly-supervised video anomaly detection: extract -> train -> evaluate -> detect. "
        f"Every subcommand takes --quiet, --verbose and --json; --store defaults to ${d.STORE_ENV}. Exit codes: 0 "
        "ok, 1 some inputs failed, 2 user error.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for stage, (module, summary, add) in STAGES.items():
        aliases = [a for a, target in ALIASES.items() if target == stage]
        add(sub.add_parser(stage, aliases=aliases, help=summary, description=_description(module, summary)))
    return p
