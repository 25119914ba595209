"""Score live camera streams as they arrive and raise alerts.

    python -m pipeline.watch [NAME=]SOURCE... (--store DIR [--model RUN] | --onnx EXPORT_DIR)
                             [--cameras cameras.yaml] [--realtime] [--follow] [--threshold T] [--out watch]
                             [--webhook URL] [--clips] [--open-after 2] [--close-after 3] [--window W]

Sources are network streams (rtsp, rtmp, http, udp, tcp), capture devices (``--format v4l2 /dev/video0``) or video
files (``--realtime`` plays them at their native rate, ``--follow`` reads one that is still being written). Each
16-frame snippet is scored as soon as its frames have arrived, over the last W snippets (``pipeline.watch.scoring``);
the threshold is ``--threshold``, else the live threshold of the run's calibration (``dakd calibrate``), else 0.5.
Events (``pipeline.alert_rule``) go to ``<out>/events.jsonl``, optionally to a webhook and as mp4 clips (a model
with anomaly maps adds each event's box and a heatmap snapshot, ``<out>/clips/<camera>/<event_id>.jpg``);
every snippet's score goes to ``<out>/scores/<camera>/scores-<day>.csv``. A dropped or stalled stream is
reconnected with backoff; SIGINT / SIGTERM close open events, flush the files and exit 0. On exit a line per camera
and ``<out>/summary.json`` (frames, snippets scored and dropped, reconnects, corrupt packets, events, latency from a
frame's arrival to its snippet's score). Exit code 1 when a camera never connected or the model could not score
its frames (it is named), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading

from pipeline import defaults as d
from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, error, say
from pipeline.cli.parser import RULE_FLAGS, DEVICE_HELP, add_common, add_live_scoring, alert_rule, call_api
from pipeline.defaults import EXIT_SOME_FAILED
from pipeline.errors import InputError, UsageError, UserError


OWN_FLAGS = RULE_FLAGS  # consumed here: the flags of the alert rule become one `rule` (alert_rule)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd watch``."""
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
    p.add_argument("--model", dest="run", help="run key prefix or folder (default: the store's most recent student)")
    p.add_argument("--realtime", action="store_true", help="play video files at their native rate (a rehearsal "
                                                           "of a camera)")
    p.add_argument("--follow", action="store_true", help="video files are still being written: read them as they "
                                                         "grow")
    p.add_argument("--format", help="FFmpeg input format for every source (e.g. v4l2, dshow, avfoundation)")
    p.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
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
    p.add_argument("--pre-roll", dest="pre_roll_s", type=float, default=d.WATCH_PRE_ROLL_S,
                   help=f"seconds of clip before an event (default: {d.WATCH_PRE_ROLL_S:g})")
    p.add_argument("--post-roll", dest="post_roll_s", type=float, default=d.WATCH_POST_ROLL_S,
                   help=f"seconds of clip after an event (default: {d.WATCH_POST_ROLL_S:g})")
    p.add_argument("--keep-days", type=int, default=d.WATCH_KEEP_DAYS,
                   help=f"days of per-camera score CSVs kept (default: {d.WATCH_KEEP_DAYS})")
    p.add_argument("--give-up-after", type=int, default=None,
                   help="failed connects in a row after which a camera is given up (default: never)")
    p.add_argument("--stall-timeout", dest="stall_timeout_s", type=float, default=d.WATCH_STALL_TIMEOUT_S,
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


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("watch")


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGINT / SIGTERM set ``stop``: the watch closes its events and files and returns (exit 0)."""
    def handler(signum, _frame):
        logging.getLogger("pipeline.watch").warning("watch: %s received, stopping", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    """The command: flags -> cameras, model, config -> :class:`pipeline.watch.watcher.Watch`."""
    configure_logging(args)
    if not args.quiet:  # a long-running service: its per-camera lines are the point, not library chatter
        logging.getLogger("pipeline.watch").setLevel(logging.INFO)
    from pipeline.api import watch

    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        summary = call_api(watch, args, stop=stop, rule=alert_rule(args))
    except (UserError, UsageError, InputError) as exc:
        return error(exc, args=args)
    for c in summary.cameras:
        lat = ("no snippet scored" if c.latency_p50_s is None else
               f"latency p50/p95/p99 {c.latency_p50_s:.2f}/{c.latency_p95_s:.2f}/{c.latency_p99_s:.2f} s")
        say(args, f"watch: {c.name}: {c.frames} frames, {c.snippets_scored} snippets scored, {c.snippets_dropped} "
                  f"dropped, {c.events} events, {c.reconnects} reconnects, {c.corrupt_packets} corrupt packets; {lat}"
                  + (f"; NEVER CONNECTED to {c.source} ({c.last_error})" if c.never_connected else "")
                  + (f"; STALLED: {c.source} made no progress ({c.last_error})" if c.stalled else "")
                  + (f"; {c.snippets_failed} snippets FAILED ({c.last_error})" if c.snippets_failed else ""))
    say(args, f"watch: {len(summary.cameras)} camera(s) with {summary.model} for {summary.seconds:.1f} s, threshold "
              f"{summary.threshold:.4g} ({summary.threshold_source}); "
              + ("stopped" if summary.stopped else "every source ended") + f"; results in {args.out}")
    emit_json(args, dataclasses.asdict(summary))
    return EXIT_SOME_FAILED if summary.failed_cameras else 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
