"""Choose a run's alert threshold from a target false-alarm rate on normal footage.

    python -m pipeline.calibrate RUN --store DIR (--normal VIDEO_OR_FOLDER... | --split val)
                                 [--false-alarms-per-hour 1] [--open-after 2] [--close-after 3] [--window W]
                                 [--smoothing 3] [--out FILE]

The normal footage (``--normal``: videos extracted with the run's settings as ``pipeline.detect`` does, features
cached in the store; ``--split val``: the normal videos of the run's own validation split, made again from its
config and dataset) is scored twice: ``live``, causally over a window of the last W snippets as ``dakd watch``
scores a stream, and ``offline``, over the whole video and smoothed over ``--smoothing`` snippets as ``dakd
detect`` does (recorded as ``smoothing_snippets``; detect warns when its own differs). For each, the threshold is the
lowest at which the hysteresis rule (``pipeline.alert_rule``) raises at most the target number of events per
hour of that footage, at it and at every threshold above it (``pipeline.calibrate.calibrator`` says why), midway between
two snippet scores, never on one; ``dakd detect`` on the same footage at that threshold reports as many events.
The result goes to ``<run folder>/calibration.json`` (and into the run's ``export/export.json`` when it has one);
``dakd detect`` and ``dakd watch`` use it unless ``--threshold`` is given. Footage shorter than 1 / target hours can
only be calibrated to zero events; a warning says so and the JSON's ``zero_events_only`` is true. A video that fails
is named with the reason and the fix, the others are calibrated, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from pipeline import api
from pipeline import defaults as d
from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, error, print_failures, say, warn
from pipeline.cli.parser import (RULE_FLAGS, DEVICE_HELP, add_common, add_live_scoring, add_offline_smoothing,
                                 add_store, alert_rule, call_api)
from pipeline.defaults import EXIT_SOME_FAILED
from pipeline.errors import UserError


OWN_FLAGS = RULE_FLAGS  # consumed here: the flags of the alert rule become one `rule` (alert_rule)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd calibrate``."""
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
    add_offline_smoothing(p)
    p.add_argument("--out", help="write the calibration to this JSON file instead of <run folder>/calibration.json "
                                 "(needed with a read-only store)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights file per backbone, as for detect (repeatable)")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=d.CALIBRATE_BATCH_SIZE,
                   help=f"snippets per backbone forward pass (default: {d.CALIBRATE_BATCH_SIZE})")
    add_common(p, json_help="print the calibration (calibration.json's content) as JSON on stdout")


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("calibrate")


def run(args: argparse.Namespace) -> int:
    """The command: flags -> :func:`pipeline.api.calibrate` -> a summary line per score kind."""
    configure_logging(args)
    try:
        result = call_api(api.calibrate, args, progress=not args.quiet, rule=alert_rule(args))
    except UserError as exc:
        return error(exc, args=args)
    for w in result.warnings:
        warn(args, w)
    c = result.calibration
    say(args, f"calibrate: {c['stage']} {c['run'][:12]} on {len(c['videos'])} normal videos ({c['source']}, "
              f"{c['hours']:.3g} h, {c['n_snippets']} snippets), target {c['target_false_alarms_per_hour']:g} false "
              f"alarm(s)/h, events open after {c['open_after']} and close after {c['close_after']} snippets")
    for kind, threshold in c["thresholds"].items():
        say(args, f"calibrate: {kind} threshold {threshold:.6g}: {c['false_alarms'][kind]} false alarm(s) on the "
                  f"footage, {c['margins'][kind]:.2g} from the nearest snippet score"
                  + (f" (window {c['window']})" if kind == "live" else ""))
    say(args, f"calibrate: written to {result.path}" + (f" and {result.export}" if result.export else "")
        + (f"; {len(result.failures)} video(s) failed" if result.failures else ""))
    print_failures(result.failures, args)
    emit_json(args, {**c, "path": str(result.path), "export": str(result.export) if result.export else None,
                     "failures": [dataclasses.asdict(f) for f in result.failures]})
    return EXIT_SOME_FAILED if result.failures else 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
