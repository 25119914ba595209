"""Speed and memory of the grid path (feature grids, spatial MIL, anomaly maps) against the global path on the same
real videos: extraction, training, scoring and live window scoring (issue 22).

    python benchmarks/speed.py --spatial --data UCSD_PED1 [--clips 4] [--epochs 20] [--rounds 2]
                               [--out benchmarks/results] [--readme docs/results.md]
    (or python benchmarks/spatial_speed.py ... with the same flags)

``--data`` is UCSD Ped1 converted to videos (``videos/train_01.mp4``, ``videos/test_01.mp4``; read in place, never
copied: the dataset folders made here hold links). ``--clips N`` takes train_01, test_01, train_02, test_02, ...
(N / 2 normal and N / 2 anomalous clips, 200 frames each). Every measure runs in its own process, started from here,
so that its peak resident memory is its own (``os.wait4``'s ``ru_maxrss``) and a variant never inherits another's
allocations:

1. Extraction (``dakd extract``, i3d + effnet_lite0 + motion, the ``full`` view, the default batch size): global vs
   ``--grid native`` vs ``--grid 3x4``. Round r extracts clip r with each variant into that variant's store, the
   variants' order rotated each round, so a machine busy with other work slows each variant alike (paired: the
   ratio to global is taken round by round). frames/s = frames / the command's own extraction seconds (its
   ``--json`` report; the process start and weight loading are in ``command_s``).
2. Training (``dakd train teacher`` on i3d + effnet_lite0, ``--epochs`` epochs = steps here: the few clips make one
   batch per epoch): global (``--set spatial.cells=off``: the cells' mean, exactly a global run) and spatial (the
   default ``spatial`` section: pooled) on the native store, and spatial on the 3x4 store; ``--rounds`` interleaved
   rounds (``--force`` after the first). Reported: the run's own wall time (``metrics.json``), seconds per step,
   the command's wall time and its peak resident memory.
3. Scoring (``dakd evaluate`` of each run on the same clips, as a test split; ``--force`` each round): snippets/s
   of evaluate's scoring loop (its ``wall_time_s``: ``score_video`` over every video, the maps written for a
   spatial run) and the command's peak resident memory. The clips were trained on, so the AUC means nothing
   here and is not reported.
4. Live windows (``benchmarks/live.py``'s :func:`~benchmarks.live.window_scoring`, in this process): a live
   window of each run scored as the watcher scores it, global by ``score_last``, spatial by
   ``score_last_cells`` (with the last snippet's map), for 1 and 8 streams' windows per call; the streams that
   scoring alone could serve at 25 fps. It does not run the watcher: see that function.

The small setting (the defaults: 4 clips, 20 epochs, 2 rounds) took 12.5 minutes on the 2-core CPU machine under
other jobs' load (10.5 minutes with 3 rounds at a lighter moment); extraction is most of it (one i3d pass per clip
and variant). A real run passes ``--clips 8 --epochs 100 --rounds 3``. Writes ``spatial_speed.json`` and ``.md``
to ``--out`` and, with ``--readme``, the table between ``<!-- spatial_speed:begin -->`` and
``<!-- spatial_speed:end -->``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import accuracy  # noqa: E402
from data.decode import SNIPPET_FRAMES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLIPS = 4  # the small setting: 2 normal + 2 anomalous Ped1 clips
EPOCHS = 20  # training steps per run (one batch per epoch on so few clips)
ROUNDS = 2  # interleaved rounds of training and scoring (extraction: one round per clip)
EXTRACT_BACKBONES = ("i3d", "effnet_lite0", "motion")
TEACHER_BACKBONES = ("i3d", "effnet_lite0")
GRIDS = {"global": None, "native": "native", "3x4": "3x4"}  # extraction variant -> --grid
# training / scoring variants: name -> (the extraction store it reads, extra train flags)
RUNS = {"global": ("native", ["--set", "spatial.cells=off"]), "spatial": ("native", []),
        "spatial-3x4": ("3x4", [])}
LIVE_STREAMS = (1, 8)  # windows scored per call (one per stream)
README_BEGIN, README_END = "<!-- spatial_speed:begin -->", "<!-- spatial_speed:end -->"


def measured(args: list[str]) -> dict:
    """Run ``python -m ...args`` in its own process (this worktree's code first on the path); returns its wall
    seconds, peak resident MB (``ru_maxrss`` of that child alone, via ``os.wait4``), exit code and stdout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", *args], stdout=out, stderr=subprocess.PIPE, env=env,
                                cwd=ROOT)
        stderr = proc.stderr.read()  # drained while it runs; the outputs are small
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    return {"command_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "stdout": stdout}


def clips(data: Path, n: int) -> list[Path]:
    """train_01, test_01, train_02, test_02, ... (``n`` of them) from ``data/videos``."""
    names = [f"{kind}_{i // 2 + 1:02d}" for i, kind in zip(range(n), ["train", "test"] * n)]
    paths = [data / "videos" / f"{name}.mp4" for name in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"{missing[0]} not found: pass --data a UCSD Ped1 folder converted to videos/")
    return paths


def dataset_folder(data: Path, videos: list[Path], dest: Path, split: str) -> Path:
    """A frame-label dataset folder of links to ``videos`` (and their labels), every clip in ``split``."""
    (dest / "videos").mkdir(parents=True)
    (dest / "labels").mkdir()
    for v in videos:
        (dest / "videos" / v.name).symlink_to(v)
        label = data / "labels" / f"{v.stem}.npy"
        if label.is_file():
            (dest / "labels" / label.name).symlink_to(label)
    (dest / "split.csv").write_text("name,split\n" + "".join(f"{v.stem},{split}\n" for v in videos))
    return dest


def _median(values) -> float:
    return float(np.median(values))


def extraction(videos: list[Path], work: Path) -> dict:
    """Round r: clip r extracted with every variant (order rotated) into the variant's store."""
    names = list(GRIDS)
    rounds: dict[str, list[dict]] = {n: [] for n in names}
    for r, video in enumerate(videos):
        for name in names[r % len(names):] + names[:r % len(names)]:
            grid = ["--grid", GRIDS[name]] if GRIDS[name] else []
            m = measured(["pipeline.cli.extract", str(video), "--backbones", ",".join(EXTRACT_BACKBONES), *grid,
                          "--store", str(work / f"store-{name}"), "--quiet", "--json"])
            report = json.loads(m.pop("stdout"))
            rounds[name].append({"video": video.name, **m, "frames": report["frames"],
                                 "extract_s": round(report["seconds"], 2)})
            print(f"spatial_speed: extract {name} {video.name}: {report['frames'] / report['seconds']:.1f} "
                  f"frames/s, peak {m['peak_rss_mb']:.0f} MB", flush=True)
    out = {}
    for name in names:
        rs = rounds[name]
        frames, seconds = sum(x["frames"] for x in rs), sum(x["extract_s"] for x in rs)
        out[name] = {"grid": GRIDS[name] or "global", "frames": frames, "extract_s": round(seconds, 2),
                     "fps": round(frames / seconds, 2),
                     "time_ratio_to_global": round(_median([x["extract_s"] / g["extract_s"]
                                                            for x, g in zip(rs, rounds["global"])]), 3),
                     "peak_rss_mb": max(x["peak_rss_mb"] for x in rs),
                     "rss_ratio_to_global": round(_median([x["peak_rss_mb"] / g["peak_rss_mb"]
                                                           for x, g in zip(rs, rounds["global"])]), 3),
                     "rounds": rs}
    return out


def training(work: Path, dataset: Path, epochs: int, rounds: int) -> tuple[dict, dict[str, str]]:
    """Each of ``RUNS`` trained ``rounds`` times (interleaved, order rotated). Returns (measures, name -> run key)."""
    names = list(RUNS)
    measures: dict[str, list[dict]] = {n: [] for n in names}
    keys: dict[str, str] = {}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            store, extra = RUNS[name]
            m = measured(["pipeline.cli.train", "teacher", "--store", str(work / f"store-{store}"), "--dataset",
                          str(dataset), "--backbones", ",".join(TEACHER_BACKBONES), "--epochs", str(epochs),
                          "--checkpoint-every", str(epochs), "--seed", "0", *extra, "--quiet", "--json",
                          *(["--force"] if r else [])])
            metrics = _one(json.loads(m.pop("stdout")))
            keys[name] = metrics["run"] if "run" in metrics else metrics["key"]
            steps = metrics.get("steps") or epochs
            measures[name].append({**m, "run_wall_s": metrics["wall_time_s"], "steps": steps,
                                   "s_per_step": round(metrics["wall_time_s"] / steps, 4)})
            print(f"spatial_speed: train {name}: {metrics['wall_time_s']:.1f} s for {steps} steps, peak "
                  f"{m['peak_rss_mb']:.0f} MB", flush=True)
    grids = {name: run_grid(work / f"store-{RUNS[name][0]}", keys[name]) for name in names}
    out = {}
    for name in names:
        rs = measures[name]
        out[name] = {"store": RUNS[name][0], "flags": " ".join(RUNS[name][1]) or "(defaults)",
                     "run": keys[name], "grid": grids[name], "steps": rs[-1]["steps"],
                     "s_per_step": round(_median([x["s_per_step"] for x in rs]), 4),
                     "time_ratio_to_global": round(_median([x["run_wall_s"] / g["run_wall_s"]
                                                            for x, g in zip(rs, measures["global"])]), 3),
                     "peak_rss_mb": max(x["peak_rss_mb"] for x in rs), "rounds": rs}
    return out, keys


def run_grid(store: Path, key: str) -> list[int]:
    """(rows, cols) a run of ``store`` trained on: [1, 1] for a global run."""
    from pipeline.runs import load_run, open_run_store

    fs = open_run_store(store)
    try:
        return list(load_run(fs, key).grid)
    finally:
        fs.close()


def _one(printed) -> dict:
    """The one run's metrics from a command's ``--json`` output (a list of runs, or a dict holding them)."""
    if isinstance(printed, list):
        return printed[0]
    for field in ("runs", "metrics"):
        if isinstance(printed.get(field), list):
            return printed[field][0]
    return printed


def scoring(work: Path, dataset: Path, keys: dict[str, str], rounds: int) -> dict:
    """Each run evaluated on the clips ``rounds`` times (interleaved, ``--force``): evaluate's snippets/s."""
    names = list(keys)
    measures: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            m = measured(["pipeline.cli.evaluate", keys[name][:12], "--store", str(work / f"store-{RUNS[name][0]}"),
                          "--dataset", str(dataset), "--no-video-plots", "--force", "--quiet", "--json"])
            metrics = _one(json.loads(m.pop("stdout")))["metrics"]
            snippets = metrics["n_frames"] // SNIPPET_FRAMES
            measures[name].append({**m, "scoring_s": metrics["wall_time_s"], "snippets": snippets})
            print(f"spatial_speed: evaluate {name}: {metrics['wall_time_s']:.2f} s, peak {m['peak_rss_mb']:.0f} MB",
                  flush=True)
    out = {}
    for name in names:
        rs = measures[name]
        seconds = _median([x["scoring_s"] for x in rs])
        snippets = rs[-1]["snippets"]
        out[name] = {"snippets": snippets, "scoring_s": seconds,
                     "snippets_per_s": round(snippets / seconds, 1) if snippets and seconds else None,
                     "time_ratio_to_global": round(_median([x["scoring_s"] / max(g["scoring_s"], 1e-9)
                                                            for x, g in zip(rs, measures["global"])]), 3),
                     "peak_rss_mb": max(x["peak_rss_mb"] for x in rs), "rounds": rs}
    return out


def markdown(result: dict) -> str:
    ex, tr, sc = result["extract"], result["train"], result["score"]
    lines = [f"Ped1, {result['clips']} clips ({', '.join(result['videos'])}), {result['machine']['cpus']} CPU cores "
             f"shared with other jobs (load average {result['load_average_before'][0]:.1f} before, "
             f"{result['load_average_after'][0]:.1f} after). Extraction of "
             f"{' + '.join(EXTRACT_BACKBONES)}, full view, one clip per round; training "
             f"{result['epochs']} steps of the teacher on {' + '.join(TEACHER_BACKBONES)}; medians of "
             f"{result['rounds']} interleaved rounds; peak RSS of each command's process.", "",
             "| stage | variant | grid | speed | time vs global (paired) | whole command (median) | peak RSS |",
             "|---|---|---|---|---|---|---|"]

    def command(m: dict) -> str:
        return f"{_median([x['command_s'] for x in m['rounds']]):.1f} s"

    for name, m in ex.items():
        lines.append(f"| extract | {name} | {m['grid']} | {m['fps']:.1f} frames/s | {m['time_ratio_to_global']:.2f}x | "
                     f"{command(m)} per clip | {m['peak_rss_mb']:.0f} MB |")
    for name, m in tr.items():
        grid = "x".join(str(x) for x in m["grid"])
        lines.append(f"| train | {name} ({m['store']} store) | {grid} | {m['s_per_step']:.3f} s/step | "
                     f"{m['time_ratio_to_global']:.2f}x | {command(m)} | {m['peak_rss_mb']:.0f} MB |")
    for name, m in sc.items():
        grid = "x".join(str(x) for x in tr[name]["grid"])
        lines.append(f"| score (evaluate) | {name} | {grid} | {m['snippets_per_s']:.0f} snippets/s | "
                     f"{m['time_ratio_to_global']:.2f}x | {command(m)} | {m['peak_rss_mb']:.0f} MB |")
    live = result.get("live")
    if live:
        for name, m in live["runs"].items():
            for n, s in m["per_call"].items():
                lines.append(f"| live window (W={m['window']}) | {name}, {n} per call | "
                             f"{'x'.join(str(x) for x in m['grid'])} | {s['ms_per_window']:.1f} ms/window | "
                             f"{s['time_ratio_to_global']:.2f}x | - | - |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/speed.py --spatial", allow_abbrev=False,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("DAKD_UCSD_PED1"),
                   help="UCSD Ped1 converted to videos/ (default: $DAKD_UCSD_PED1)")
    p.add_argument("--clips", type=int, default=CLIPS, help="clips (and extraction rounds): train_01, test_01, ...")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="training steps per run")
    p.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds of training and scoring")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--readme", help="results page to update between the spatial_speed markers")
    p.add_argument("--from-results", action="store_true", help="only rewrite the tables from spatial_speed.json")
    args = p.parse_args(argv)
    result = None
    if not args.from_results:
        if not args.data:
            p.error("--data is required (or set $DAKD_UCSD_PED1)")
        from benchmarks.live import window_scoring

        data = Path(args.data)
        videos = clips(data, args.clips)
        started = time.perf_counter()
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            train_set = dataset_folder(data, videos, work / "train-set", "train")
            test_set = dataset_folder(data, videos, work / "test-set", "test")  # the same files: the same features
            ex = extraction(videos, work)
            tr, keys = training(work, train_set, args.epochs, args.rounds)
            sc = scoring(work, test_set, keys, args.rounds)
            live = window_scoring(work / "store-native", {n: keys[n] for n in ("global", "spatial")},
                                  streams=LIVE_STREAMS)
        result = {"benchmark": "spatial_speed", "dataset": "UCSD Ped1", "clips": args.clips,
                  "videos": [v.stem for v in videos], "epochs": args.epochs, "rounds": args.rounds,
                  "extract_backbones": list(EXTRACT_BACKBONES), "teacher_backbones": list(TEACHER_BACKBONES),
                  "extract": ex, "train": tr, "score": sc, "live": live,
                  "load_average_before": [round(x, 2) for x in load_before],
                  "load_average_after": [round(x, 2) for x in os.getloadavg()],
                  "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                              "note": "a shared CPU machine: other jobs ran during the measurement, hence the "
                                      "interleaved rounds and paired ratios"},
                  "seconds": round(time.perf_counter() - started, 1)}
    print(accuracy.write_results(Path(args.out), "spatial_speed", result, markdown, args.readme, README_BEGIN,
                                 README_END))
    return 0


if __name__ == "__main__":
    sys.exit(main())
