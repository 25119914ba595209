"""Spatial MIL (``models.spatial``, method.md §12): the wrapper's shapes for every method's network in both temporal
modes, the top-k rule, the starting point (every cell at the inner's score), prepared batches, bringing backbones to
one grid, the principal components and the config's checks."""

from __future__ import annotations

import pytest
import torch

from models.lanet import LANet, LANetConfig
from models.spatial import (CellFeatures, CellReduction, SpatialConfig, SpatialMIL, SpatialOutput, cell_topk,
                            grid_of, principal_components, to_grid)
from models.vad_model import ModelConfig, VADModel

TINY = ModelConfig(d_model=16, n_heads=2, projection_hidden=16, ffn_dim=32, classifier_hidden=16,
                   classifier_bottleneck=8, k=4)
TINY_LANET = LANetConfig(d_model=16, n_heads=2, ffn_dim=32, classifier_hidden=8, classifier_kernel=3)


def networks(dims: list[int]) -> dict[str, torch.nn.Module]:
    """The teacher's (several backbones), the student's (the first one) and LA-Net's networks, tiny."""
    return {"teacher": VADModel(dims, TINY), "student": VADModel(dims[:1], TINY), "lanet": LANet(dims, TINY_LANET)}


@pytest.mark.parametrize("temporal", ["pooled", "cells"])
@pytest.mark.parametrize("method", ["teacher", "student", "lanet"])
def test_shapes_of_every_method_in_both_modes(method, temporal):
    torch.manual_seed(0)
    dims = [12, 8]
    inner = networks(dims)[method]
    used = dims[:len(inner.input_dims)]
    model = SpatialMIL(inner, used, SpatialConfig(temporal=temporal, reduce_dim=4, hidden=8)).eval()
    n, length, cells = 3, 5, 6
    # the second backbone global (one cell), which broadcasts over the first one's six
    features = [torch.randn(n, length, cells if b == 0 else 1, d) for b, d in enumerate(used)]
    out = model(features)
    assert isinstance(out, SpatialOutput)
    assert out.scores.shape == (n, length) and out.cell_scores.shape == (n, length, cells)
    assert out.h.shape == (n, length, 16)
    assert bool(((out.cell_scores > 0) & (out.cell_scores < 1)).all())
    assert torch.allclose(out.scores, cell_topk(out.cell_scores, 3), atol=1e-6)
    # a whole video (one long sequence) scores too, and the mode's cost-bounding chunks change nothing
    chunked = model(features, cell_chunk=2)
    assert torch.allclose(chunked.scores, out.scores, atol=1e-5)


def test_the_cell_scorer_reads_only_the_scored_backbones_cells():
    """scored = (True, False): the second backbone reaches the inner through its cells' mean only, so moving its cells
    about that mean changes no score; moving the first backbone's cells does."""
    torch.manual_seed(2)
    model = SpatialMIL(VADModel([12, 8], TINY), [12, 8], SpatialConfig(reduce_dim=4, hidden=8),
                       scored=(True, False)).eval()
    assert len(model.cell_inputs) == 1 and model.cell_inputs[0].in_features == 4
    a, b = torch.randn(2, 5, 6, 12), torch.randn(2, 5, 6, 8)
    out = model([a, b])
    swing = torch.randn(2, 5, 6, 8)
    swing = swing - swing.mean(2, keepdim=True)  # the cells' mean is unchanged
    assert torch.allclose(model([a, b + swing]).cell_scores, out.cell_scores, atol=1e-6)
    swing_a = torch.randn_like(a)
    swing_a = swing_a - swing_a.mean(2, keepdim=True)
    assert not torch.allclose(model([a + swing_a, b]).cell_scores, out.cell_scores, atol=1e-3)
    with pytest.raises(ValueError, match="at least one"):
        SpatialMIL(VADModel([12, 8], TINY), [12, 8], SpatialConfig(), scored=(False, False))


def test_pooled_logit_fusion_runs_the_inner_on_the_cells_mean_and_starts_at_its_scores():
    torch.manual_seed(1)
    inner = VADModel([12], TINY).eval()
    model = SpatialMIL(inner, [12], SpatialConfig(reduce_dim=4, hidden=8, fusion="logit")).eval()
    x = torch.randn(2, 7, 6, 12)
    out = model([x])
    expected = inner([x.mean(2)])
    assert torch.allclose(out.h, expected.h) and torch.allclose(out.scores, expected.scores, atol=1e-5)
    assert torch.allclose(out.cell_scores, expected.scores.unsqueeze(-1).expand(-1, -1, 6), atol=1e-5)
    # once the cell scorer has weights, cells differ, each around the inner's logit
    for layer in model.output_layers():
        torch.nn.init.normal_(layer.weight)
    out = model([x])
    delta = torch.logit(out.cell_scores) - torch.logit(expected.scores).unsqueeze(-1)
    assert float(delta.detach().std()) > 0.01


def test_pooled_mean_fusion_averages_the_inner_score_and_each_cells_own_score():
    torch.manual_seed(1)
    inner = VADModel([12], TINY).eval()
    model = SpatialMIL(inner, [12], SpatialConfig(reduce_dim=0, hidden=8, fusion="mean")).eval()
    model.set_cell_reduction([(torch.zeros(12), torch.ones(12))], [None])
    x = torch.randn(2, 7, 6, 12)
    out = model([x])
    inner_scores = inner([x.mean(2)]).scores
    own = torch.sigmoid(model.cell_output(torch.relu(model.cell_inputs[0](x))).squeeze(-1))  # [2, 7, 6]
    assert torch.allclose(out.cell_scores, (inner_scores.unsqueeze(-1) + own) / 2, atol=1e-5)
    assert torch.allclose(out.scores, cell_topk(out.cell_scores, 3), atol=1e-6)
    # the cells carry half of every score from the first step: they differ before any training
    assert float(out.cell_scores.detach().std(dim=-1).min()) > 1e-4


def test_per_backbone_scorers_average_each_backbones_own_cell_score():
    """Two scored backbones, ``cell_scorers = per_backbone``: a scorer each, a cell's evidence the mean of their
    sigmoids; ``shared``: one output layer over the summed hidden layers."""
    torch.manual_seed(4)
    inner = VADModel([12, 5], TINY).eval()
    model = SpatialMIL(inner, [12, 5], SpatialConfig(reduce_dim=0, hidden=8)).eval()
    model.set_cell_reduction([(torch.zeros(12), torch.ones(12)), (torch.zeros(5), torch.ones(5))], [None, None])
    assert len(model.output_layers()) == 2
    a, b = torch.randn(2, 7, 6, 12), torch.randn(2, 7, 6, 5)
    out = model([a, b])
    inner_scores = inner([a.mean(2), b.mean(2)]).scores
    own = [torch.sigmoid(head(torch.relu(layer(x))).squeeze(-1))
           for head, layer, x in zip(model.output_layers(), model.cell_inputs, (a, b))]  # each [2, 7, 6]
    expected = (inner_scores.unsqueeze(-1) + (own[0] + own[1]) / 2) / 2
    assert torch.allclose(out.cell_scores, expected, atol=1e-5)
    assert torch.allclose(out.scores, cell_topk(out.cell_scores, 3), atol=1e-6)
    parameters = {id(p) for p in model.cell_parameters()}
    assert all(id(p) in parameters for head in model.output_layers() for p in head.parameters())

    shared = SpatialMIL(VADModel([12, 5], TINY), [12, 5], SpatialConfig(reduce_dim=0, cell_scorers="shared"))
    assert len(shared.output_layers()) == 1
    # with one scored backbone the two choices are one network: the same parameters, so the same checkpoints
    names = [sorted(SpatialMIL(VADModel([12, 5], TINY), [12, 5], SpatialConfig(reduce_dim=0, cell_scorers=choice),
                               scored=(True, False)).state_dict()) for choice in ("per_backbone", "shared")]
    assert names[0] == names[1]


def test_cells_mode_scores_each_cell_sequence_with_the_inner():
    torch.manual_seed(2)
    inner = VADModel([10], TINY).eval()
    model = SpatialMIL(inner, [10], SpatialConfig(temporal="cells", k=2)).eval()
    x = torch.randn(2, 5, 4, 10)
    out = model([x])
    for c in range(4):
        assert torch.allclose(out.cell_scores[:, :, c], inner([x[:, :, c]]).scores, atol=1e-5)
    top = out.cell_scores.topk(2, dim=-1)
    assert torch.allclose(out.scores, top.values.mean(-1), atol=1e-6)
    h_cells = torch.stack([inner([x[:, :, c]]).h for c in range(4)], dim=2)  # [N, L, C, d]
    picked = torch.stack([h_cells[i, t, top.indices[i, t]].mean(0) for i in range(2) for t in range(5)])
    assert torch.allclose(out.h.reshape(10, -1), picked, atol=1e-5)


def test_top_k_is_the_mean_of_the_k_highest_cells_clipped_to_the_count():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.2, 0.2, 0.3, 0.1]])
    assert torch.allclose(cell_topk(scores, 3), torch.tensor([(0.9 + 0.7 + 0.5) / 3, (0.3 + 0.2 + 0.2) / 3]))
    assert torch.allclose(cell_topk(scores, 1), torch.tensor([0.9, 0.3]))
    assert torch.allclose(cell_topk(scores, 10), scores.mean(-1))  # k clipped to the 4 cells
    assert torch.allclose(cell_topk(scores[:, :1], 3), scores[:, 0])  # one cell: its score


def test_prepared_batches_give_the_same_output_as_raw_features():
    torch.manual_seed(3)
    model = SpatialMIL(VADModel([12, 6], TINY), [12, 6], SpatialConfig(reduce_dim=5, hidden=8)).eval()
    for reduction in model.reductions:  # some statistics and components, as training fits them
        dim = reduction.mean.shape[0]
        reduction.set_statistics(torch.randn(dim), torch.rand(dim) + 0.5,
                                 principal_components(torch.randn(50, dim), reduction.out_dim))
    for layer in model.output_layers():
        torch.nn.init.normal_(layer.weight)
    features = [torch.randn(2, 4, 6, 12), torch.randn(2, 4, 6, 6)]
    prepared = model.prepare(features)
    assert isinstance(prepared, CellFeatures) and prepared.cells[0].shape == (2, 4, 6, 5)
    assert torch.allclose(model(prepared).cell_scores, model(features).cell_scores, atol=1e-6)
    rows = torch.tensor([1])
    assert torch.allclose(model(prepared.take(rows, 3)).scores, model([x[1:, :3] for x in features]).scores,
                          atol=1e-6)


def test_backbones_of_different_cell_counts_are_refused():
    model = SpatialMIL(VADModel([4, 4], TINY), [4, 4], SpatialConfig(reduce_dim=0))
    with pytest.raises(ValueError, match="one grid"):
        model([torch.randn(1, 2, 6, 4), torch.randn(1, 2, 4, 4)])


def test_to_grid_keeps_equal_and_global_grids_and_averages_others():
    cells = torch.arange(16 * 2, dtype=torch.float32).reshape(1, 16, 2)  # a 4 x 4 grid, 2 dims
    assert to_grid(cells, (4, 4), (4, 4)) is cells
    one = torch.randn(3, 1, 2)
    assert to_grid(one, (1, 1), (4, 4)) is one  # global: broadcast later
    coarse = to_grid(cells, (4, 4), (2, 2))
    maps = cells.reshape(4, 4, 2)
    expected = torch.stack([maps[r:r + 2, c:c + 2].mean((0, 1)) for r in (0, 2) for c in (0, 2)])
    assert torch.allclose(coarse[0], expected)
    with pytest.raises(ValueError, match="cells"):
        to_grid(cells, (3, 3), (2, 2))
    assert grid_of([(1, 1), (7, 11), (2, 2)]) == (7, 11) and grid_of([(1, 1)]) == (1, 1)


def test_principal_components_are_orthonormal_and_find_the_strongest_direction():
    torch.manual_seed(4)
    direction = torch.nn.functional.normalize(torch.randn(8), dim=0)
    x = torch.randn(500, 8) * 0.1 + torch.randn(500, 1) * 3 * direction
    components = principal_components(x, 3)
    assert components.shape == (8, 3)
    assert torch.allclose(components.T @ components, torch.eye(3), atol=1e-5)
    assert abs(float(components[:, 0] @ direction)) > 0.99
    reduction = CellReduction(8, 3)
    reduction.set_statistics(torch.zeros(8), torch.ones(8), components)
    assert reduction(x).shape == (500, 3) and CellReduction(8, 0)(x).shape == (500, 8)


@pytest.mark.parametrize("change, match", [({"cells": "on"}, "cells"), ({"temporal": "both"}, "temporal"),
                                           ({"k": 0}, "k"), ({"hidden": 0}, "hidden"),
                                           ({"reduce_dim": -1}, "reduce_dim"), ({"map_weight": -1.0}, "map_weight"),
                                           ({"cell_scorers": "each"}, "cell_scorers")])
def test_spatial_config_refuses_bad_values(change, match):
    with pytest.raises(ValueError, match=match):
        SpatialConfig(**change)
