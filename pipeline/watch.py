"""Score live camera streams as they arrive and raise alerts.

    python -m pipeline.watch [NAME=]SOURCE... (--store DIR [--model RUN] | --onnx EXPORT_DIR)
                             [--cameras cameras.yaml] [--realtime] [--follow] [--threshold T] [--out watch]
                             [--webhook URL] [--clips] [--open-after 2] [--close-after 3] [--window W]

Sources are network streams (rtsp, rtmp, http, udp, tcp), capture devices (``--format v4l2 /dev/video0``) or video
files (``--realtime`` plays them at their native rate, ``--follow`` reads one that is still being written). Each
16-frame snippet is scored as soon as its frames have arrived, over the last W snippets (``pipeline.live.scoring``);
the threshold is ``--threshold``, else the live threshold of the run's calibration (``dakd calibrate``), else 0.5.
Events (``pipeline.live.hysteresis``) go to ``<out>/events.jsonl``, optionally to a webhook and as mp4 clips;
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

from pipeline.cli import configure_logging, emit_json, error, say
from pipeline.defaults import EXIT_SOME_FAILED
from pipeline.errors import InputError, UsageError, UserError
from pipeline.parsers import parse_pairs, stage_parser


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("watch")


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGINT / SIGTERM set ``stop``: the watch closes its events and files and returns (exit 0)."""
    def handler(signum, _frame):
        logging.getLogger("pipeline.live").warning("watch: %s received, stopping", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    """The command: flags -> cameras, model, config -> :class:`pipeline.live.engine.Watch`."""
    configure_logging(args)
    if not args.quiet:  # a long-running service: its per-camera lines are the point, not library chatter
        logging.getLogger("pipeline.live").setLevel(logging.INFO)
    from pipeline.api import watch

    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        summary = watch(args.sources, cameras=args.cameras, store=args.store, run=args.model, onnx=args.onnx,
                        realtime=args.realtime, follow=args.follow, format=args.format,
                        options=parse_pairs(args.option, "--option", "KEY=VALUE"), threshold=args.threshold,
                        open_after=args.open_after, close_after=args.close_after, window=args.window, out=args.out,
                        webhook=args.webhook, clips=args.clips, pre_roll_s=args.pre_roll,
                        post_roll_s=args.post_roll, keep_days=args.keep_days, give_up_after=args.give_up_after,
                        stall_timeout_s=args.stall_timeout, batch_size=args.batch_size, queue_size=args.queue_size,
                        weights=parse_pairs(args.weights, "--weights", "NAME=PATH", split_commas=True),
                        device=args.device, stop=stop)
    except (UserError, UsageError, InputError) as exc:
        return error(exc)
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
