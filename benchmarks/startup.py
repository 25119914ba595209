"""Start-up time of the command line: ``dakd --help``, every ``dakd STAGE --help``, and the user errors that need
no torch (a missing store, an unknown run, an empty folder), median of 5 runs each.

    python benchmarks/startup.py [--runs 5] [--out benchmarks/results/startup.json]

Each run is a fresh process (the installed ``dakd`` console script, or ``python -m pipeline.cli`` when it is not
installed), timed from start to exit, so the figure is what a user waits for. The parsers import no torch,
torchvision or sklearn (``pipeline.cli.parser``), and the commands check the store, the run and the inputs before
they import torch (``pipeline.run_refs``, ``pipeline.inputs``); the target is under 1 s on the 2-core CPU machine.
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
import tempfile
import time
from pathlib import Path

from pipeline.cli.commands import COMMANDS as STAGES

DEFAULT_RUNS = 5
DEFAULT_OUT = Path(__file__).parent / "results" / "startup.json"
TARGET_S = 1.0  # issue 13: --help under 1 s


def dakd_command() -> list[str]:
    """The console script beside this interpreter (pip install -e .), else the module."""
    script = Path(sysconfig.get_path("scripts")) / "dakd"
    if script.is_file():
        return [str(script)]
    found = shutil.which("dakd")
    return [found] if found else [sys.executable, "-m", "pipeline.cli.main"]


def wall_time(cmd: list[str], *, error: bool = False) -> float:
    """Seconds ``cmd`` takes; it must print its usage (or, ``error``, one ``error:`` line and exit with 2)."""
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    ok = (out.returncode == 2 and out.stderr.startswith("error:")) if error else (
        out.returncode == 0 and "usage:" in out.stdout)
    if not ok:
        raise SystemExit(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr[-500:]}")
    return elapsed


def error_commands(base: list[str], scratch: Path) -> dict[str, list[str]]:
    """User errors answered before torch loads: the commands, on paths below ``scratch``."""
    (scratch / "empty").mkdir(exist_ok=True)
    missing = str(scratch / "no-store")
    return {"dakd extract EMPTY_FOLDER (error)": [*base, "extract", str(scratch / "empty"), "--store", missing],
            "dakd evaluate RUN, no store (error)": [*base, "evaluate", "abcdef12", "--store", missing],
            "dakd train student, no store (error)": [*base, "train", "student", "--store", missing, "--teacher",
                                                     "abcdef12"],
            "dakd detect EMPTY_FOLDER (error)": [*base, "detect", str(scratch / "empty"), "--store", missing]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"runs per command (default: {DEFAULT_RUNS})")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON result file")
    args = p.parse_args(argv)
    base = dakd_command()
    commands = {"dakd --help": [*base, "--help"]}
    commands.update({f"dakd {stage} --help": [*base, stage, "--help"] for stage in STAGES})
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        errors = error_commands(base, Path(scratch))
        for name, cmd in {**commands, **errors}.items():
            times = [wall_time(cmd, error=name in errors) for _ in range(args.runs)]
            results[name] = {"median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4)}
            print(f"{name:<40} median {results[name]['median_s']:.3f} s", flush=True)
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
