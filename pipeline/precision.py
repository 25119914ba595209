"""Numeric precision of training and scoring: fp32, or bf16 / fp16 autocast (mixed precision)."""

from __future__ import annotations

import contextlib

import torch


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto``: fp32 on a CPU (bitwise reproducible), bf16 on GPUs that support it, else fp16."""
    if requested != "auto":
        return requested
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(device: torch.device, precision: str):
    """Mixed precision context for ``precision`` in fp32 | bf16 | fp16 (fp32: no autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
