"""Start-up time of the command line: ``dakd --help`` and every ``dakd STAGE --help``, median of 5 runs each.

    python benchmarks/startup.py [--runs 5] [--out benchmarks/results/startup.json]

Each run is a fresh process (the installed ``dakd`` console script, or ``python -m pipeline.cli`` when it is not
installed), timed from start to exit, so the figure is what a user waits for. The parsers import no torch,
torchvision or sklearn (``pipeline.parsers``); the target is under 1 s on the 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from pipeline.parsers import STAGES

DEFAULT_RUNS = 5
DEFAULT_OUT = Path(__file__).parent / "results" / "startup.json"
TARGET_S = 1.0  # issue 13: --help under 1 s


def dakd_command() -> list[str]:
    """The console script beside this interpreter (pip install -e .), else the module."""
    script = Path(sysconfig.get_path("scripts")) / "dakd"
    if script.is_file():
        return [str(script)]
    found = shutil.which("dakd")
    return [found] if found else [sys.executable, "-m", "pipeline.cli"]


def wall_time(cmd: list[str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    if out.returncode != 0 or "usage:" not in out.stdout:
        raise SystemExit(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr[-500:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"runs per command (default: {DEFAULT_RUNS})")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON result file")
    args = p.parse_args(argv)
    base = dakd_command()
    commands = {"dakd --help": [*base, "--help"]}
    commands.update({f"dakd {stage} --help": [*base, stage, "--help"] for stage in STAGES})
    results = {}
    for name, cmd in commands.items():
        times = [wall_time(cmd) for _ in range(args.runs)]
        results[name] = {"median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4)}
        print(f"{name:<28} median {results[name]['median_s']:.3f} s", flush=True)
    worst = max(r["median_s"] for r in results.values())
    report = {"command": base, "runs": args.runs, "target_s": TARGET_S, "worst_median_s": worst,
              "met": worst < TARGET_S, "commands": results, "machine": platform.machine(),
              "python": platform.python_version()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"worst median {worst:.3f} s (target < {TARGET_S} s); written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
