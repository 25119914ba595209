"""How many live 25 fps camera streams one machine keeps up with, per model: ``dakd watch``'s engine on N loopback
streams of real footage (UCSD Ped1 test videos, served as MPEG-TS over TCP on 127.0.0.1 at 25 fps, looped).

    python benchmarks/live.py --data UCSD_PED1 [--store ped1-store] [--models lightning,student-effnet]
                              [--duration 30] [--soak 0] [--out benchmarks/results] [--readme docs/results.md]

For each model, N = 1, 2, 4, ... streams (``LADDERS``) run for ``--duration`` seconds each; per N: each stream's
latency from a frame's arrival to its snippet's score (p50 / p95 / p99; the worst stream is reported), the
snippets dropped because scoring fell behind, the snippets scored against those due, the process's CPU share
(CPU seconds / wall seconds / cores) and its resident memory. N keeps real time when nothing was dropped, at least
``REALTIME_FRACTION`` of the due snippets were scored, and the worst p99 is under ``P99_LIMIT_S``; the ladder
stops at the first N that does not. The streams' decoding (PyAV, in the camera threads) and the loopback servers
run in this same process: on a camera box the decode is the watcher's work too. ``--soak S`` also runs one stream
for S seconds with the resident memory sampled every ``SOAK_SAMPLE_S`` (is it flat?).

The runs are accuracy.py's rows (seed 0) on Ped1, trained or found content-keyed in ``--store`` through
``benchmarks/streaming.py``'s extractions. Writes ``live.json`` and ``live.md`` to ``--out``.

``--window-scoring GLOBAL,SPATIAL`` (two run keys of ``--store``) times instead only the scoring of live windows,
a spatial run's with its maps, against a global run's (:func:`window_scoring`; ``live_windows.json``):
``benchmarks/spatial_speed.py`` calls it on its own runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import accuracy, streaming  # noqa: E402

MODELS = ("lightning", "student-effnet")
LADDERS = {"lightning": (1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 40), "student-effnet": (1, 2, 4, 6, 8, 10, 12, 16)}
# accuracy.py's spatial version of the student (7x11 cells, maps on): the same ladder, once watch scores its maps
LADDERS["student-effnet-grid"] = LADDERS["student-effnet"]
LADDERS["lightning-grid"] = LADDERS["lightning"]  # the map student (7x11 maps of spatial teachers)
GOALS = {"lightning": 16, "student-effnet": 1}  # the goal on 2 cores
STREAM_FPS = 25
DURATION_S = 30.0  # per N; the first snippet is due 0.64 s in, so 30 s gives 46 snippets per stream
WARMUP_S = 2.0  # the first seconds of each N are left out of the due count (connects, first forward passes)
REALTIME_FRACTION = 0.95
P99_LIMIT_S = 2.0
SOAK_SAMPLE_S = 10.0
WINDOW_REPEATS = 5  # window_scoring: timed calls per run and stream count (median)
README_BEGIN, README_END = "<!-- live:begin -->", "<!-- live:end -->"


def ped1_runs(data: Path, store: Path, names: list[str]) -> dict[str, str]:
    """name -> run key of accuracy.py's row (seed 0), trained if the store does not hold it yet."""
    fps = streaming.extractions(data, store)
    by_name = {r.name: r for r in accuracy.ROWS}
    done = accuracy.train_rows([by_name[n] for n in names], [0], store, fps, accuracy.JOBS)
    return {n: done[n][0]["run"] for n in names}


def test_videos(data: Path, n: int) -> list[Path]:
    videos = sorted((data / "videos").glob("test_*"))
    if not videos:
        raise SystemExit(f"{data / 'videos'} holds no test_* videos: pass --data a UCSD Ped1 folder")
    return [videos[i % len(videos)] for i in range(n)]


def run_streams(model, videos: list[Path], duration_s: float, out: Path) -> dict:
    """N = len(videos) loopback streams watched for ``duration_s``; the measures of one rung."""
    import numpy as np

    from pipeline.alert_rule import AlertRule
    from pipeline.watch.watcher import Watch, WatchConfig, resident_mb
    from pipeline.testing.replay import ReplayServer
    from pipeline.watch.sources import Camera, ReconnectPolicy

    servers = [ReplayServer(v, fps=STREAM_FPS, loop=True) for v in videos]
    stop = threading.Event()
    try:
        for s in servers:
            s.start()
        cameras = [Camera(f"cam{i + 1}", s.url) for i, s in enumerate(servers)]
        config = WatchConfig(out, rule=AlertRule(0.5), threshold_source="benchmark", policy=ReconnectPolicy(
            initial_s=0.2, stall_timeout_s=5.0))
        watch = Watch(cameras, model, config, stop)
        timer = threading.Timer(duration_s, stop.set)
        timer.start()
        summary = watch.run()
        timer.cancel()
    finally:
        for s in servers:
            s.stop()
    due = max(0.0, duration_s - WARMUP_S) * STREAM_FPS / 16 * len(videos)
    scored = sum(c.snippets_scored for c in summary.cameras)
    dropped = sum(c.snippets_dropped for c in summary.cameras)
    p99 = [c.latency_p99_s for c in summary.cameras if c.latency_p99_s is not None]
    worst = max(range(len(summary.cameras)), key=lambda i: summary.cameras[i].latency_p99_s or np.inf)
    c = summary.cameras[worst]
    rung = {"streams": len(videos), "seconds": round(summary.seconds, 1), "snippets_scored": scored,
            "snippets_due": round(due, 1), "snippets_dropped": dropped,
            "latency_s": {"p50": c.latency_p50_s, "p95": c.latency_p95_s, "p99": c.latency_p99_s},
            "reconnects": sum(cam.reconnects for cam in summary.cameras),
            "cpu_share": round(summary.cpu_s / summary.seconds / (os.cpu_count() or 1), 3),
            # near 1: the one scoring loop is the limit (it embeds and scores every camera's snippets in turn)
            "scoring_busy": round(summary.scoring_busy_s / summary.seconds, 3),
            "rss_mb": summary.rss_mb, "rss_now_mb": round(resident_mb(), 1)}
    rung["realtime"] = bool(dropped == 0 and scored >= REALTIME_FRACTION * due and len(p99) == len(videos)
                            and max(p99) < P99_LIMIT_S)
    return rung


def ladder(name: str, model, data: Path, duration_s: float, work: Path) -> dict:
    rungs = []
    for n in LADDERS[name]:
        rung = run_streams(model, test_videos(data, n), duration_s, work / f"{name}-{n}")
        rungs.append(rung)
        lat = rung["latency_s"]
        print(f"live: {name}: {n} streams: p50/p95/p99 {lat['p50'] or float('nan'):.2f}/"
              f"{lat['p95'] or float('nan'):.2f}/{lat['p99'] or float('nan'):.2f} s, {rung['snippets_scored']} of "
              f"{rung['snippets_due']:.0f} due snippets scored, {rung['snippets_dropped']} dropped, CPU "
              f"{rung['cpu_share']:.0%}: {'real time' if rung['realtime'] else 'NOT real time'}", flush=True)
        if not rung["realtime"]:
            break
    kept = [r["streams"] for r in rungs if r["realtime"]]
    return {"name": name, "window": model.window, "goal": GOALS.get(name), "max_realtime_streams": max(kept or [0]),
            "rungs": rungs}


def soak(model, data: Path, seconds: float, work: Path) -> dict:
    """One stream for ``seconds``, resident memory sampled every SOAK_SAMPLE_S."""
    from pipeline.watch.watcher import resident_mb

    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    done = threading.Event()

    def sample():
        while not done.wait(SOAK_SAMPLE_S):
            samples.append((round(time.monotonic() - start, 1), round(resident_mb(), 1)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rung = run_streams(model, test_videos(data, 1), seconds, work / "soak")
    done.set()
    half = [mb for t, mb in samples if t >= seconds / 2]
    return {"seconds": seconds, "rss_samples": samples, "rung": rung,
            "rss_growth_second_half_mb": round(max(half) - min(half), 1) if half else None}


def window_scoring(store: Path, runs: dict[str, str], *, streams: tuple[int, ...] = (1, 8),
                   repeats: int = WINDOW_REPEATS, device: str = "cpu") -> dict:
    """The scoring half of a live step, per run of ``store`` (``runs``: name -> run key, the first the global
    reference): ``n`` live windows of W snippets (the run's live window) scored as one call, ``n`` in ``streams``
    (one window per camera, as the watcher scores each batch). A global run scores by ``score_last`` (the torch
    ``LiveModel.score``), a spatial run by ``score_last_cells`` (the torch ``LiveModel.map_scorer``: each window
    through ``score_cells``, its last snippet's score and map). The windows are a stored video's features tiled
    to W snippets (``[W, cells, D_b]``; a global run reads the cells' mean). The runs are timed call by call,
    interleaved. Neither decoding nor the backbones are timed: a grid costs the same forward pass
    (``benchmarks/results/extract_grid.json``). Returns per run its window, grid, and per ``n`` the median ms per
    window, the paired ratio to the first run's, and the streams that scoring alone could serve at
    ``STREAM_FPS`` (a snippet every ``SNIPPET_FRAMES`` frames)."""
    import numpy as np
    import torch

    from data.decode import SNIPPET_FRAMES
    from pipeline.runs import load_run, open_run_store
    from pipeline.watch.scoring import default_window, score_last, score_last_cells

    fs = open_run_store(store)
    try:
        loaded = {name: load_run(fs, key) for name, key in runs.items()}
        rows: dict[str, dict[str, dict]] = {}
        for row in fs.features():
            rows.setdefault(row["video_key"], {})[row["backbone"]] = row
        root = fs.root
    finally:
        fs.close()
    prepared = {}
    for name, run in loaded.items():
        files = next(r for r in rows.values() if all(b in r for b in run.backbones))
        cells = [np.load(root / files[b]["file"]).astype(np.float32) for b in run.backbones]  # [T, C_b, D_b]
        grids = [tuple(int(x) for x in files[b]["grid"].split("x")) if files[b]["grid"] else (1, 1)
                 for b in run.backbones]
        window = default_window(run.checkpoint["stage"], run.config.train.n_segments)
        tiled = [np.concatenate([c] * -(-window // len(c)))[:window] for c in cells]  # [W, C_b, D_b]
        if not run.spatial:
            tiled = [c.mean(axis=1, keepdims=True) for c in tiled]  # the global feature: [W, 1, D_b]
        prepared[name] = (run.model.to(device).eval(), tiled, grids, window)

    def call(name: str, n: int) -> float:
        """Seconds to score ``n`` windows of run ``name`` as the watcher scores one batch."""
        run = loaded[name]
        model, tiled, grids, _ = prepared[name]
        t = time.perf_counter()
        with torch.inference_mode():
            if run.spatial:
                score_last_cells(model, [tiled] * n, grids, device, grid=run.grid, n_heads=run.attention_heads)
            else:
                score_last(model, [tiled] * n, device)
        return time.perf_counter() - t

    names = list(loaded)
    seconds: dict[tuple[str, int], list[float]] = {(m, n): [] for m in names for n in streams}
    for n in streams:
        for name in names:  # the first call (allocations) is not counted
            call(name, n)
        for r in range(repeats):  # interleaved, the order rotated: a busy machine slows each run alike
            for name in names[r % len(names):] + names[:r % len(names)]:
                seconds[name, n].append(call(name, n))
    out: dict = {"stream_fps": STREAM_FPS, "repeats": repeats, "runs": {}}
    for name, run in loaded.items():
        per_call = {}
        for n in streams:
            ms = float(np.median(seconds[name, n])) / n * 1000
            ratio = float(np.median([a / b for a, b in zip(seconds[name, n], seconds[names[0], n])]))
            per_call[str(n)] = {"ms_per_window": round(ms, 2), "time_ratio_to_global": round(ratio, 3),
                                "streams_scoring_alone": int(1000 / ms / (STREAM_FPS / SNIPPET_FRAMES))}
        out["runs"][name] = {"run": run.key, "stage": run.checkpoint["stage"], "spatial": run.spatial,
                             "grid": list(run.grid), "window": prepared[name][3], "per_call": per_call}
    return out


def windows_markdown(result: dict) -> str:
    """The table of :func:`window_scoring`'s result."""
    lines = ["| run | grid | window | windows per call | ms per window | vs global | streams (scoring alone) |",
             "|---|---|---|---|---|---|---|"]
    for name, m in result["runs"].items():
        for n, s in m["per_call"].items():
            grid = "x".join(str(x) for x in m["grid"])
            lines.append(f"| {name} | {grid} | {m['window']} | {n} | {s['ms_per_window']:.1f} | "
                         f"{s['time_ratio_to_global']:.2f}x | {s['streams_scoring_alone']} |")
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    lines = ["| model | window | largest N in real time | goal | at that N: latency p50 / p95 / p99 | CPU | "
             "first N not kept | why |", "|---|---|---|---|---|---|---|---|"]
    for m in result["models"]:
        kept = [r for r in m["rungs"] if r["realtime"]]
        best = kept[-1] if kept else None
        fail = next((r for r in m["rungs"] if not r["realtime"]), None)
        lat = (f"{best['latency_s']['p50']:.2f} / {best['latency_s']['p95']:.2f} / {best['latency_s']['p99']:.2f} s"
               if best else "-")
        why = "-"
        if fail:
            why = (f"{fail['snippets_dropped']} snippets dropped, {fail['snippets_scored']} of "
                   f"{fail['snippets_due']:.0f} scored, p99 {fail['latency_s']['p99'] or float('nan'):.2f} s, CPU "
                   f"{fail['cpu_share']:.0%}, scoring loop busy {fail.get('scoring_busy', float('nan')):.0%}")
        lines.append(f"| {m['name']} | {m['window']} | {m['max_realtime_streams']} | {m['goal']} | {lat} | "
                     f"{best['cpu_share']:.0%} | " if best else f"| {m['name']} | {m['window']} | 0 | {m['goal']} | "
                     "- | - | ")
        lines[-1] += f"{fail['streams'] if fail else '-'} | {why} |"
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/live.py", allow_abbrev=False,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("DAKD_UCSD_PED1"),
                   help="UCSD Ped1 (official layout or videos/; default: $DAKD_UCSD_PED1)")
    p.add_argument("--store", default="ped1-store", help="feature store (features and runs are cached)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--duration", type=float, default=DURATION_S, help="seconds per number of streams")
    p.add_argument("--soak", type=float, default=0.0, help="also run one stream this long, memory sampled")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--readme", help="README to update between the live markers")
    p.add_argument("--from-results", action="store_true", help="only rewrite live.md (and the README) from live.json")
    p.add_argument("--window-scoring", metavar="GLOBAL,SPATIAL",
                   help="instead: time live windows' scoring of these two runs of --store (a spatial run with maps)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.window_scoring:
        glob, spatial = args.window_scoring.split(",")
        result = window_scoring(Path(args.store), {"global": glob, "spatial": spatial}, device=args.device)
        print(accuracy.write_results(out, "live_windows", result, windows_markdown, None, "", ""))
        return 0
    result = None  # --from-results: the table from the JSON already there
    if not args.from_results:
        if not args.data:
            p.error("--data is required (or set $DAKD_UCSD_PED1)")
        import logging

        from pipeline.watch.model import from_run

        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("pipeline.watch").setLevel(logging.ERROR)  # events on every stream: not the point here
        started = time.perf_counter()
        names = args.models.split(",")
        data, store = Path(args.data), Path(args.store)
        keys = ped1_runs(data, store, names)
        result = {"dataset": accuracy.DATASET, "stream_fps": STREAM_FPS, "duration_s": args.duration,
                  "realtime_rule": {"dropped": 0, "scored_fraction": REALTIME_FRACTION, "p99_under_s": P99_LIMIT_S},
                  "models": [], "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
        with tempfile.TemporaryDirectory() as work:
            for name in names:
                model = from_run(store, keys[name], device=args.device)
                result["models"].append({**ladder(name, model, data, args.duration, Path(work)), "run": keys[name]})
            if args.soak > 0:
                result["soak"] = soak(from_run(store, keys[names[-1]], device=args.device), data, args.soak,
                                      Path(work))
                result["soak"]["model"] = names[-1]
        result["seconds"] = round(time.perf_counter() - started, 1)
    print(accuracy.write_results(out, "live", result, markdown, args.readme, README_BEGIN, README_END))
    return 0


if __name__ == "__main__":
    sys.exit(main())
