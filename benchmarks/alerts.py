"""Calibrated alerts on real footage: UCSD Ped1, thresholds chosen on the normal clips of its training split for a
target false-alarm rate, then the events raised on its test clips.

    python benchmarks/alerts.py --data UCSD_PED1 [--store ped1-store] [--seeds 3] [--targets 5,10,30]
                                [--out benchmarks/results] [--readme docs/results.md]

For each model a live stream can run (``benchmarks/streaming.py``'s rows), each seed and each target rate
(events per hour): the live threshold is :func:`pipeline.calibrate.calibrator.choose_threshold` over the causal windowed
scores of the 20 normal clips of the weak training split (400 s at Ped1's 10 fps), the rule of ``dakd calibrate``.
The models were trained on these clips (MIL pushes their scores down), so the threshold is optimistic: the false
alarms on the test split's normal frames are the rate to expect on new footage of the same camera. On the test
clips, with that threshold and the watch's hysteresis (open after 2, close after 3):

- ``detected``: the share of annotated anomalous intervals (runs of snippets holding an anomalous frame) that an
  event overlaps;
- ``false_per_hour``: events that overlap no anomalous snippet, per hour of test footage;
- ``test_normal_per_hour``: the same on the test split's frames, the rate the calibration promised to hold.

Also calibrated ``held-out``: on every other normal test clip (7 clips, 140 s, never seen in training), the events
then counted on the other test clips, as a user calibrates on new recordings of the camera. The target is met on
the calibration footage by construction; ``false_per_hour`` says whether it carries over to
new footage of the same camera. Writes ``alerts.json`` and ``alerts.md`` to ``--out``.

``--offline``: the same protocol on the whole-video scores ``dakd detect`` marks and ``dakd calibrate`` chooses its
offline threshold on (:func:`offline_scores`), each case twice: the model's own scores (smoothing 1) and the scores
smoothed over ``pipeline.defaults.DETECT_SMOOTHING_SNIPPETS`` snippets, detect's default. Rows ``OFFLINE_ROWS`` (the
spatial models detect serves best). Writes ``alerts_offline.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import accuracy, streaming  # noqa: E402

ROWS = streaming.ROWS
SEEDS = 3
TARGETS = (10.0, 30.0, 60.0)  # events per hour: 400 s of calibration footage cannot measure 1/h (one event is 9/h)
CALIBRATE_ON = ("train", "held-out")  # the normal clips the threshold is chosen on (see evaluate)
README_BEGIN, README_END = "<!-- alerts:begin -->", "<!-- alerts:end -->"
OFFLINE_ROWS = ("teacher-grid", "student-i3d-grid", "teacher-motion-grid", "lightning-grid")
OFFLINE_SEEDS = 5  # as accuracy.py's grid rows
OFFLINE_STEM = "alerts_offline"
OFFLINE_BEGIN, OFFLINE_END = "<!-- alerts_offline:begin -->", "<!-- alerts_offline:end -->"


def live_scores(store: Path, run_key: str, stage: str) -> dict[str, list]:
    """split -> [(entry, causal windowed snippet scores [T])] over the run's default window."""
    from data.datasets import load_dataset
    from pipeline.evaluate.scoring import align_snippets
    from pipeline.features import resolve_features
    from pipeline.watch.scoring import default_window, windowed_scores
    from pipeline.runs import load_run
    from pipeline.store import FeatureStore

    spec = load_dataset(accuracy.DATASET)
    s = FeatureStore(store)
    try:
        run = load_run(s, run_key, stage)
        window = default_window(stage, run.config.train.n_segments)
        out = {}
        for split in ("train", "test"):
            found = resolve_features(s, spec.split(split), run.backbones, run.fingerprints).found
            out[split] = []
            for vf in found:
                arrays, _ = align_snippets([vf.load(b).astype(np.float32) for b in run.backbones])
                out[split].append((vf.entry, windowed_scores(run.model, arrays, window)))
    finally:
        s.close()
    return {"spec": spec, **out}


def offline_scores(store: Path, run_key: str, stage: str) -> dict[str, list]:
    """split -> [(entry, whole-video snippet scores [T])]: each video scored at once as evaluation and ``dakd
    detect`` score it (``pipeline.evaluate.scoring.score_video``; a spatial run's cells on its grid), unsmoothed."""
    import torch

    from data.datasets import load_dataset
    from pipeline.evaluate.scoring import score_video
    from pipeline.features import resolve_features
    from pipeline.runs import load_run
    from pipeline.store import FeatureStore

    spec = load_dataset(accuracy.DATASET)
    s = FeatureStore(store)
    try:
        run = load_run(s, run_key, stage)
        out = {}
        for split in ("train", "test"):
            found = resolve_features(s, spec.split(split), run.backbones, run.fingerprints).found
            out[split] = [(vf.entry, score_video(run, vf, torch.device("cpu"))[0]) for vf in found]
    finally:
        s.close()
    return {"spec": spec, **out}


def smoothed_scores(scores: dict, window: int) -> dict:
    """``scores`` (:func:`offline_scores`) with every video's scores smoothed as detect smooths them."""
    from pipeline.detect.detector import smooth_scores

    return {"spec": scores["spec"], **{split: [(e, smooth_scores(x, window)) for e, x in scores[split]]
                                       for split in ("train", "test")}}


def anomalous_snippets(spec, entry, n_snippets: int) -> np.ndarray:
    """bool ``[T]``: snippets holding an anomalous frame."""
    from data.decode import SNIPPET_FRAMES

    labels = spec.frame_labels(entry, n_snippets)
    return labels.reshape(n_snippets, SNIPPET_FRAMES).any(axis=1)


def runs_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(first, last)] of the True runs of ``mask``."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def evaluate(scores: dict, target: float, calibrate_on: str) -> dict:
    """``calibrate_on``: ``"train"`` (the training split's normal clips, seen in training) or ``"held-out"`` (every
    other normal test clip, never seen; the events are then counted on the remaining test clips)."""
    from data.decode import SNIPPET_FRAMES
    from pipeline.calibrate.calibrator import SECONDS_PER_HOUR, choose_threshold
    from pipeline.alert_rule import AlertRule

    hours = lambda n: n * SNIPPET_FRAMES / accuracy.FPS / SECONDS_PER_HOUR  # noqa: E731
    test = scores["test"]
    if calibrate_on == "train":
        calibration = [s for entry, s in scores["train"] if entry.label == 0]
    else:
        normals = [i for i, (entry, _) in enumerate(test) if entry.label == 0]
        held = set(normals[::2])
        calibration = [test[i][1] for i in sorted(held)]
        test = [v for i, v in enumerate(test) if i not in held]
    choice = choose_threshold(calibration, hours(sum(len(s) for s in calibration)), target)
    rule = AlertRule(choice.threshold)
    intervals = detected = false = 0
    normal_snippets = 0
    for entry, s in test:
        truth = anomalous_snippets(scores["spec"], entry, len(s))
        normal_snippets += int((~truth).sum())
        events = rule.events(s)
        for first, last in runs_of(truth):
            intervals += 1
            detected += any(a <= last and b >= first for a, b in events)
        false += sum(not truth[a:b + 1].any() for a, b in events)
    test_hours = hours(sum(len(s) for _, s in test))
    return {"calibrate_on": calibrate_on, "target_per_hour": target, "threshold": choice.threshold,
            "calibration_events": choice.events, "calibration_hours": round(hours(sum(len(s) for s in calibration)), 4),
            "intervals": intervals, "detected": detected / max(intervals, 1), "false_events": false,
            "false_per_hour": false / test_hours, "test_normal_hours": round(hours(normal_snippets), 4),
            "test_normal_per_hour": false / max(hours(normal_snippets), 1e-9)}


def markdown(result: dict) -> str:
    smoothing = any("smoothing" in t for row in result["rows"] for t in row["targets"])  # the --offline table
    lines = ["| model | calibrated on | target false alarms/h | " + ("smoothing | " if smoothing else "") +
             "threshold | anomalous intervals detected | false events/h (test, all footage) | per hour of normal "
             "test footage |", "|---|---|---|" + ("---|" if smoothing else "") + "---|---|---|---|"]
    for row in result["rows"]:
        for t in row["targets"]:
            lines.append(f"| {row['name']} | {t['calibrate_on']} | {t['target_per_hour']:g} | "
                         + (f"{t['smoothing']} | " if smoothing else "") +
                         f"{t['threshold']['mean']:.3f} | "
                         f"{t['detected']['mean']:.0%} ± {t['detected']['std']:.0%} | "
                         f"{t['false_per_hour']['mean']:.1f} ± {t['false_per_hour']['std']:.1f} | "
                         f"{t['test_normal_per_hour']['mean']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/alerts.py", allow_abbrev=False,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("DAKD_UCSD_PED1"))
    p.add_argument("--store", default="ped1-store")
    p.add_argument("--seeds", type=int, help=f"default: {SEEDS}; with --offline {OFFLINE_SEEDS}")
    p.add_argument("--targets", default=",".join(f"{t:g}" for t in TARGETS))
    p.add_argument("--rows", help=f"default: {','.join(ROWS)}; with --offline {','.join(OFFLINE_ROWS)}")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--readme")
    p.add_argument("--from-results", action="store_true")
    p.add_argument("--offline", action="store_true",
                   help="the whole-video scores detect marks, unsmoothed and smoothed (module docstring)")
    args = p.parse_args(argv)
    from pipeline.defaults import DETECT_SMOOTHING_SNIPPETS

    offline = args.offline
    # None: the live scores (no smoothing column); --offline: detect's scores, unsmoothed and smoothed
    windows = (1, DETECT_SMOOTHING_SNIPPETS) if offline else (None,)
    result = None  # --from-results: the table from the JSON already there
    if not args.from_results:
        if not args.data:
            p.error("--data is required (or set $DAKD_UCSD_PED1)")
        started = time.perf_counter()
        store = Path(args.store)
        names = (args.rows or ",".join(OFFLINE_ROWS if offline else ROWS)).split(",")
        seeds = list(range(args.seeds or (OFFLINE_SEEDS if offline else SEEDS)))
        by_name = {r.name: r for r in accuracy.ROWS}
        done = accuracy.train_rows([by_name[n] for n in names], seeds, store,
                                   streaming.extractions(Path(args.data), store), accuracy.JOBS)
        targets = [float(t) for t in args.targets.split(",")]
        cases = [(on, t, w) for on in CALIBRATE_ON for t in targets for w in windows]
        rows = []
        for name in names:
            per_seed = []
            for r in done[name].values():
                if offline:
                    raw = offline_scores(store, r["run"], by_name[name].stage)
                    scores = {w: smoothed_scores(raw, w) for w in windows}
                else:
                    scores = {None: live_scores(store, r["run"], by_name[name].stage)}
                per_seed.append([{**evaluate(scores[w], t, on), **_smoothing(w)} for on, t, w in cases])
            rows.append({"name": name, "targets": [
                {"calibrate_on": on, "target_per_hour": t, **_smoothing(w),
                 **{k: accuracy._stats([s[i][k] for s in per_seed])
                    for k in ("threshold", "detected", "false_per_hour", "test_normal_per_hour")}}
                for i, (on, t, w) in enumerate(cases)], "per_seed": per_seed})
            print(f"alerts{' --offline' if offline else ''}: {name}: " + ", ".join(
                f"{t['calibrate_on']} {t['target_per_hour']:g}/h"
                + (f" w{t['smoothing']}" if offline else "") + f": {t['detected']['mean']:.0%} detected, "
                f"{t['false_per_hour']['mean']:.1f} false/h" for t in rows[-1]["targets"]), flush=True)
        result = {"dataset": accuracy.DATASET, "seeds": seeds, "rows": rows,
                  **({"scores": "offline (dakd detect)", "smoothing": list(windows)} if offline else {}),
                  "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                  "seconds": round(time.perf_counter() - started, 1)}
    stem, begin, end = (OFFLINE_STEM, OFFLINE_BEGIN, OFFLINE_END) if offline else ("alerts", README_BEGIN, README_END)
    print(accuracy.write_results(Path(args.out), stem, result, markdown, args.readme, begin, end))
    return 0


def _smoothing(window: int | None) -> dict:
    """The ``smoothing`` key of an --offline case (none for the live scores)."""
    return {} if window is None else {"smoothing": window}


if __name__ == "__main__":
    sys.exit(main())
