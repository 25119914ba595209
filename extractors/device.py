"""Device selection shared by every stage (kept apart from the backbones so importing it is cheap)."""

from __future__ import annotations

import torch


def auto_device(requested: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else is passed to torch.device."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
