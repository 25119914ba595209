"""Streaming AUC next to offline AUC on real footage (UCSD Ped1's weak split), for each model a live stream can run.

    python benchmarks/streaming.py --data UCSD_PED1 [--store DIR] [--seeds 3] [--jobs 2] [--windows 32,8]
                                   [--out benchmarks/results] [--readme docs/results.md]

Offline, a model scores a test video with its attention over the whole video, the future included
(``pipeline.evaluate``). Live, snippet t is scored from snippets ``t - W + 1 .. t`` only
(``pipeline.watch.scoring.windowed_scores``, what a live stream computes one snippet at a time). Both are measured
here on the same runs and the same stored features: pooled frame AUC over the test split, each snippet's score on
its 16 frames (the frames of the snippets, as ``benchmarks/accuracy.py``'s references count them). The runs are
trained (or found, content-keyed)
through ``benchmarks/accuracy.py``'s rows, on the same extractions (i3d and effnet_lite0 in the full view, lowres
squashed). Writes ``streaming.json`` and ``streaming.md`` to ``--out``.
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

from benchmarks import accuracy  # noqa: E402

ROWS = ("teacher", "student-effnet", "student-i3d", "lanet", "lightning")  # accuracy.py's rows a stream can run
SEEDS = 3
WINDOWS = (32, 8)
README_BEGIN, README_END = "<!-- streaming:begin -->", "<!-- streaming:end -->"


def extractions(data: Path, store: Path) -> dict:
    """The extractions accuracy.py's methods rows train on (cached; accuracy.extract_all without the centre-crop
    ablation's): the full view on the native grid, whose cells' mean the global rows read, and lowres. The grid
    rows (``*-grid``) read the same features' cells, so every row here is the row accuracy.py trains."""
    return accuracy.extract_all(data, store, [])


def frame_auc(store: Path, run_key: str, stage: str, windows: list[int]) -> dict:
    """{"offline": AUC, "W=<w>": AUC, ...} of one run over the test split."""
    import torch
    from sklearn.metrics import roc_auc_score

    from data.datasets import load_dataset
    from data.decode import SNIPPET_FRAMES
    from pipeline.evaluate.scoring import align_snippets, score_snippets
    from pipeline.features import resolve_features
    from pipeline.watch.scoring import LIGHTNING_WINDOW, windowed_scores
    from pipeline.runs import load_run
    from pipeline.store import FeatureStore

    spec = load_dataset(accuracy.DATASET)
    s = FeatureStore(store)
    try:
        run = load_run(s, run_key, stage)
        found = resolve_features(s, spec.split("test"), run.backbones, run.fingerprints).found
        kinds = {"offline": None} | ({f"W={LIGHTNING_WINDOW}": LIGHTNING_WINDOW} if stage == "lightning"
                                     else {f"W={w}": w for w in windows})
        scores = {k: [] for k in kinds}
        gt = []
        for vf in found:
            arrays, _ = align_snippets([vf.load(b).astype(np.float32) for b in run.backbones])
            for kind, w in kinds.items():
                snippet = (score_snippets(run.model, arrays, torch.device("cpu"), n_heads=run.attention_heads)
                           if w is None else windowed_scores(run.model, arrays, w))
                scores[kind].append(np.repeat(snippet, SNIPPET_FRAMES))
            gt.append(spec.frame_labels(vf.entry, len(arrays[0])))  # [16 T], the protocol of evaluation
    finally:
        s.close()
    gt = np.concatenate(gt)
    return {kind: float(roc_auc_score(gt, np.concatenate(v))) for kind, v in scores.items()}


def markdown(result: dict) -> str:
    kinds = ["offline"] + [f"W={w}" for w in result["windows"]]
    lines = ["| model | " + " | ".join(f"{k} AUC" if k == "offline" else f"streaming {k}" for k in kinds) + " |",
             "|---|" + "---|" * len(kinds)]
    for row in result["rows"]:
        cells = []
        for k in kinds:
            k_row = k if k in row["auc"] or row["name"] != "lightning" else "W=1"
            stat = row["auc"].get(k_row)
            cells.append(f"{stat['mean']:.3f} ± {stat['std']:.3f}" + (" (W=1)" if k_row == "W=1" else "")
                         if stat else "-")
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/streaming.py", allow_abbrev=False,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("DAKD_UCSD_PED1"),
                   help="UCSD Ped1 (official layout or videos/; default: $DAKD_UCSD_PED1)")
    p.add_argument("--store", default="ped1-store", help="feature store (features and runs are cached)")
    p.add_argument("--seeds", type=int, default=SEEDS)
    p.add_argument("--jobs", type=int, default=accuracy.JOBS)
    p.add_argument("--windows", default=",".join(map(str, WINDOWS)))
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--readme", help="README to update between the streaming markers")
    p.add_argument("--from-results", action="store_true",
                   help="only rewrite streaming.md and the README table from --out's streaming.json")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.from_results:
        accuracy.write_results(out, "streaming", None, markdown, args.readme, README_BEGIN, README_END)
        return 0
    if not args.data:
        p.error("--data is required (or set $DAKD_UCSD_PED1)")
    started = time.perf_counter()
    store, windows = Path(args.store), [int(w) for w in args.windows.split(",")]
    fps = extractions(Path(args.data), store)
    by_name = {r.name: r for r in accuracy.ROWS}
    seeds = list(range(args.seeds))
    done = accuracy.train_rows([by_name[n] for n in ROWS], seeds, store, fps, args.jobs)
    rows = []
    for name in ROWS:
        per_seed = [frame_auc(store, r["run"], by_name[name].stage, windows) for r in done[name].values() if "run" in r]
        kinds = sorted({k for d in per_seed for k in d})
        rows.append({"name": name, "what": by_name[name].what,
                     "auc": {k: accuracy._stats([d[k] for d in per_seed if k in d]) for k in kinds},
                     "per_seed": per_seed})
        print(f"streaming: {name}: " + ", ".join(f"{k} {rows[-1]['auc'][k]['mean']:.3f}" for k in kinds), flush=True)
    result = {"dataset": accuracy.DATASET, "seeds": seeds, "windows": windows, "rows": rows,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "seconds": round(time.perf_counter() - started, 1)}
    print(accuracy.write_results(out, "streaming", result, markdown, args.readme, README_BEGIN, README_END))
    return 0


if __name__ == "__main__":
    sys.exit(main())
