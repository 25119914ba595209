"""Precision selection: reproducible fp32 on a CPU unless asked; autocast only when asked."""

import torch

from pipeline.precision import autocast, resolve_precision


def test_auto_is_fp32_on_a_cpu_and_explicit_choices_stand():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_autocast_lowers_matmuls_only_when_asked():
    a, b = torch.randn(4, 8), torch.randn(8, 2)
    with autocast(torch.device("cpu"), "fp32"):
        assert (a @ b).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert (a @ b).dtype == torch.bfloat16
