"""Stage 4: score the test videos with trained runs and compute the community's frame-level metrics.

    python -m pipeline.evaluate RUN [RUN ...] --store DIR [--dataset ucf-crime] [--out DIR]
                                [--summary FILE.json] [--fingerprint BACKBONE=PREFIX ...] [--pixel-masks DIR]

Protocol (method.md §7): every snippet of each test video is scored (the full length, not 32 segments), crops
averaged; each snippet score covers its 16 frames; the ground truth has ``16 * T`` frames per video with T from
the feature file; videos are concatenated in the dataset's canonical test order; pooled AUC and AP, AUC on the
anomalous videos, false-alarm rate on the normal ones, per-class AUC.

Writes, per run, ``<store>/runs/evaluate/<key>/`` (or ``--out``): ``metrics.json``, ``scores.csv`` (one row per
snippet), ``videos.csv`` (one row per video), ``roc.png``, ``pr.png`` and ``videos/<name>.png`` (score over time,
GT shaded); for a spatial run also ``maps/<name>.npz`` (its per-snippet anomaly maps) and, when the test videos
have pixel masks (``--pixel-masks``), ``metrics.json``'s ``localization``. The key hashes the run, the test labels,
the test features (and the masks' names and shapes), so re-running is a cache hit.

The test videos are scored with the features of the extraction the run was trained on (its fingerprint per
backbone). When they are stored under another extraction only (e.g. a test list imported with another
``--source``), the error names both and the fixes; ``--fingerprint BACKBONE=PREFIX`` scores them with another
stored extraction, which ``metrics.json`` records (``other_extractions``) and the key includes.

With several runs, runs are grouped by everything but the seed (the resolved config, the teacher run, the dataset,
the training features' fingerprints and any other test extraction): each group's mean ± std of each metric is
printed with what sets it apart from the other groups (``model.temporal=none, ...``) and written to
``--summary`` (per group: the runs, the config without the seed, the differing keys).
"""

from __future__ import annotations

import argparse
import sys

from pipeline import api
from pipeline import defaults as d
from pipeline.atomic import atomic_write_json
from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, error, say
from pipeline.cli.parser import DEVICE_HELP, add_common, add_store, call_api
from pipeline.defaults import EXIT_SOME_FAILED
from pipeline.errors import UserError

# pipeline.evaluate.evaluator imports torch: the helpers below import it when they run (after api.evaluate has
# loaded the runs), so a missing store or an unknown run is named before torch loads.


OWN_FLAGS = ("summary",)  # flags this module consumes itself: --summary is a file the command writes


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd evaluate``."""
    p.add_argument("runs", nargs="+", help="run key prefixes or run folders (several: mean ± std over them)")
    add_store(p, "the store holding the runs and the test features")
    p.add_argument("--dataset", help="default: the dataset each run was trained on")
    p.add_argument("--out", help="output folder (default: <store>/runs/evaluate/<key>; one run only)")
    p.add_argument("--summary", help="write the mean ± std over the runs, one group per configuration (all but "
                                     "the seed), to this JSON file")
    p.add_argument("--fingerprint", dest="fingerprints", action="append", default=[], metavar="BACKBONE=PREFIX",
                   help="score the test videos with this stored extraction of BACKBONE instead of the run's own "
                        "(repeatable; recorded in metrics.json)")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    p.add_argument("--precision", default=d.DEFAULT_SCORING_PRECISION, choices=d.SCORING_PRECISIONS,
                   help="scoring precision (default: fp32, the reference)")
    p.add_argument("--allow-missing", action="store_true", help="evaluate the test videos that have features "
                                                                "(the metrics are then not comparable)")
    p.add_argument("--no-video-plots", dest="video_plots", action="store_false", help="skip the per-video PNGs")
    p.add_argument("--force", action="store_true", help="recompute even if this evaluation exists")
    p.add_argument("--pixel-masks", metavar="DIR",
                   help="folder of the test videos' pixel masks (<video>.npz, array mask [T, H, W]) against which "
                        "a spatial run's anomaly maps are scored: pixel AUC, pointing game, RBDC, TBDC (default: "
                        "the dataset folder's pixel_masks/, if any)")
    p.add_argument("--smoothing", type=int, default=d.SMOOTHING_SNIPPETS, metavar="N",
                   help="also report auc_smoothed and ap_smoothed: each video's scores smoothed by a centred moving "
                        f"mean over N snippets, N odd (default: {d.SMOOTHING_SNIPPETS}; 1: not reported). Not the "
                        "RTFM-family protocol, whose auc and ap stay unsmoothed")
    add_common(p, json_help="print each run's metrics and the groups' mean ± std as JSON on stdout")


def _group_line(summary: dict) -> str:
    from pipeline.evaluate.evaluator import REPORTED, _show

    apart = ", ".join(f"{k}={_show(v)}" for k, v in summary["differing"].items())
    stats = ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in summary.items()
                      if k in REPORTED and isinstance(v, dict))
    return (f"{summary['stage']} {','.join(summary['backbones'])}" + (f" [{apart}]" if apart else "")
            + f", mean ± std over {len(summary['runs'])} runs: {stats}")


def _line(m: dict) -> str:
    from pipeline.evaluate.evaluator import REPORTED

    parts = [f"{k} {m[k]:.4f}" for k in REPORTED if m.get(k) is not None]
    return ", ".join(parts)


def _localization_line(report: dict) -> str:
    def num(key: str) -> str:
        return "n/a" if report.get(key) is None else f"{report[key]:.3f}"

    return (f"pointing game {num('pointing_game')} (chance {num('pointing_game_chance')}, "
            f"{report['anomalous_snippets']} anomalous snippets), pixel AUC {num('pixel_auc')}, RBDC {num('rbdc')}, "
            f"TBDC {num('tbdc')} over {report['masked_videos']} videos with masks")


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("evaluate")


def run(args: argparse.Namespace) -> int:
    """The command: flags -> :func:`pipeline.api.evaluate` -> one line per run and per group of seeds."""
    configure_logging(args)

    def report(m: api.Metrics) -> None:
        from pipeline.evaluate.evaluator import SHORT_KEY

        other = "".join(f"; {b} scored with extraction {o['evaluated_on'][:SHORT_KEY]}, not the run's "
                        f"{str(o['trained_on'])[:SHORT_KEY]}"
                        for b, o in m.values.get("other_extractions", {}).items())
        say(args, f"evaluate {m.stage} {m.run[:12]} on {m.dataset}: {_line(m.values)}; {m.values['n_videos']} "
                  f"videos{other}{' (cached)' if m.cached else ''}; plots and CSVs in {m.folder}")
        if "localization" in m.values:
            say(args, f"  localisation: {_localization_line(m.values['localization'])}")

    try:
        result = call_api(api.evaluate, args, progress=not args.quiet, on_metrics=report)
    except UserError as exc:  # flags, the store, runs, test labels that break §7 (named in the message)
        return error(exc, args=args)
    for summary in result.groups:
        if len(summary["runs"]) > 1:  # one run's metrics are printed above
            say(args, _group_line(summary))
    if args.summary:
        atomic_write_json(args.summary, result.groups)
    if result.incomplete:
        print("warning: some test videos had no features; the metrics cover the rest (see missing_videos)",
              file=sys.stderr)
    emit_json(args, {"runs": [{"run": m.run, "stage": m.stage, "dataset": m.dataset, "folder": str(m.folder),
                               "cached": m.cached, "metrics": m.values} for m in result.metrics],
                     "groups": result.groups})
    return EXIT_SOME_FAILED if result.incomplete else 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
