"""What every benchmark writes: its result plus the machine it ran on, as JSON in a file and on stdout."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch


def write_report(result: dict, out: str | Path) -> None:
    report = {**result, "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
              "python": platform.python_version(), "torch": torch.__version__}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
