"""Causal windowed scoring (pipeline.watch.scoring) and the alert rule (pipeline.alert_rule)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.lanet import LANet, LANetConfig
from models.lightning_student import LightningStudent
from models.vad_model import ModelConfig, VADModel
from pipeline.evaluate.scoring import score_snippets
from pipeline.alert_rule import CLOSE, CLOSE_AFTER, OPEN, OPEN_AFTER, AlertRule, at_or_above
from pipeline.watch.scoring import WindowState, default_window, score_last, windowed_scores


def tiny_teacher(dims=(12, 8)) -> VADModel:
    torch.manual_seed(0)
    return VADModel(list(dims), ModelConfig(d_model=16, projection_hidden=16, n_heads=2, ffn_dim=32,
                                            classifier_hidden=16)).eval()


def features(t: int, dims=(12, 8), crops: int = 2, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(t, crops, d)).astype(np.float32) for d in dims]


def test_window_scores_equal_one_snippet_at_a_time():
    model, feats = tiny_teacher(), features(20)
    offline = windowed_scores(model, feats, window=6)
    state = WindowState(2, 6)
    live = [score_last(model, [state.push([f[t] for f in feats])])[0] for t in range(20)]
    np.testing.assert_allclose(live, offline, atol=1e-5)


def test_scores_are_causal_and_bounded_by_the_window():
    model, feats = tiny_teacher(), features(16)
    base = windowed_scores(model, feats, window=5)
    future = [f.copy() for f in feats]
    for f in future:
        f[10:] += 3.0  # change the future from snippet 10 on
    changed = windowed_scores(model, future, window=5)
    np.testing.assert_allclose(changed[:10], base[:10], atol=1e-6)  # the past never sees the future
    assert np.abs(changed[10:] - base[10:]).max() > 1e-3
    past = [f.copy() for f in feats]
    for f in past:
        f[:3] -= 3.0  # outside the window of snippets >= 3 + 5 - 1
    np.testing.assert_allclose(windowed_scores(model, past, window=5)[7:], base[7:], atol=1e-6)


def test_a_window_as_long_as_the_video_ends_on_the_offline_score():
    model, feats = tiny_teacher(), features(9)
    offline = score_snippets(model, feats, torch.device("cpu"), n_heads=2)
    assert windowed_scores(model, feats, window=9)[-1] == pytest.approx(offline[-1], abs=1e-5)


def test_lanet_and_lightning_score_causally():
    torch.manual_seed(0)
    lanet = LANet([12, 8], LANetConfig(d_model=16, n_heads=2, ffn_dim=32)).eval()
    feats = features(10)
    assert windowed_scores(lanet, feats, window=4).shape == (10,)
    lightning = LightningStudent(2).eval()
    frames = [np.random.default_rng(1).integers(0, 256, size=(6, 1, lightning.config.input_dim)).astype(np.float32)]
    per_snippet = windowed_scores(lightning, frames, window=default_window("lightning"))
    np.testing.assert_allclose(per_snippet, score_snippets(lightning, frames, torch.device("cpu"), n_heads=1),
                               atol=1e-5)


def test_default_window_follows_the_run():
    assert default_window("lightning", 32) == 1
    assert default_window("teacher", 32) == 32
    assert default_window("student", 16) == 16
    with pytest.raises(ValueError):
        windowed_scores(tiny_teacher(), features(3), window=0)


def test_the_rule_opens_after_n_and_closes_after_m():
    rule = AlertRule(0.5, open_after=2, close_after=3)
    scores = np.array([0.9, 0.1, 0.8, 0.9, 0.2, 0.7, 0.1, 0.1, 0.1, 0.6, 0.0, 0.9, 0.9])
    # one snippet above is noise; 2..5 is one event (0.7 bridges the dip); 11..12 stays open at the end
    assert rule.events(scores) == [(2, 5), (11, 12)]
    stream = rule.stream()
    decisions = [stream.update(s) for s in scores]
    assert decisions.index(OPEN) == 3 and decisions.index(CLOSE) == 8
    assert AlertRule(0.95).events(scores) == []
    assert rule.count([scores, scores[:4], scores[:2]]) == 2 + 1 + 0  # the rule restarts with each sequence
    for bad in ({"open_after": 0}, {"close_after": 0}, {"open_after": 1.5}, {"threshold": float("nan")}):
        with pytest.raises(ValueError):
            AlertRule(**{"threshold": 0.5, **bad})


def test_a_rule_without_a_threshold_has_its_defaults_and_is_applied_only_once_given_one():
    rule = AlertRule()
    assert (rule.threshold, rule.open_after, rule.close_after) == (None, OPEN_AFTER, CLOSE_AFTER)
    for apply in (rule.stream, lambda: rule.events(np.ones(4)), lambda: rule.above(0.9), rule.to_json):
        with pytest.raises(ValueError, match="no threshold"):
            apply()
    given = AlertRule(open_after=4).with_threshold(0.3)
    assert given == AlertRule(0.3, 4, CLOSE_AFTER) and given.to_json() == {"threshold": 0.3, "open_after": 4,
                                                                            "close_after": CLOSE_AFTER}


def _streamed(scores, rule: AlertRule) -> list[tuple[int, int]]:
    """The events :class:`AlertStream` gives one snippet at a time, as ``dakd watch`` runs it."""
    stream, events = rule.stream(), []
    for s in scores:
        if stream.update(s) == CLOSE:
            events.append((stream.start, stream.last_above))
    return events + ([(stream.start, stream.last_above)] if stream.active else [])


def test_the_vectorised_events_are_the_streamed_rule_event_for_event():
    """AlertRule.events / .count (detect's events, calibrate's count) and AlertStream (watch's alerts) are one
    rule, on random sequences."""
    rng = np.random.default_rng(0)
    for trial in range(400):
        scores = rng.random(int(rng.integers(1, 60))).astype(np.float32)
        rule = AlertRule(float(rng.random()), int(rng.integers(1, 4)), int(rng.integers(1, 5)))
        streamed = _streamed(scores, rule)
        assert rule.events(scores) == streamed, (trial, scores.tolist(), rule)
        assert rule.count([scores]) == len(streamed)


def test_a_score_equal_to_the_threshold_is_above_and_ties_are_decided_in_float64():
    score = np.float32(0.7)
    assert at_or_above(score, float(score)) and at_or_above(np.array([score]), float(score)).all()
    # a threshold between two adjacent float32 scores (cast to float32 it would round onto one of them)
    above = np.nextafter(score, np.float32(1))
    assert np.float32((float(score) + float(above)) / 2) in (score, above)
    upper = np.nextafter(score, np.float32(1))
    between = (float(score) + float(upper)) / 2
    assert not at_or_above(score, between) and at_or_above(upper, between)
    assert AlertRule(between, 1, 1).events(np.array([score, score], np.float32)) == []
    assert _streamed([score, score], AlertRule(between, 1, 1)) == []
    assert AlertRule(between, 2, 1).events(np.array([upper, upper], np.float32)) == [(0, 1)]
    assert not AlertRule(between).above(score) and AlertRule(between).above(upper)
    assert AlertRule(0.25, 2, 3).describe() == "hysteresis: open after 2 snippets >= 0.25, close after 3 below"


@pytest.mark.parametrize("temporal", ["pooled", "cells"])
def test_a_spatial_runs_windows_of_one_length_are_scored_at_once_as_one_by_one(temporal):
    """Several streams' windows go through one forward pass; the scores and maps are those of scoring each window
    alone (the mixed-length path), on the run's grid, with a global backbone broadcast over the cells."""
    from models.spatial import SpatialConfig, SpatialMIL
    from pipeline.watch.scoring import score_last_cells

    torch.manual_seed(0)
    model = SpatialMIL(tiny_teacher(), [12, 8], SpatialConfig(temporal=temporal, reduce_dim=0, hidden=8)).eval()
    rng = np.random.default_rng(3)
    windows = [[rng.normal(size=(5, 6, 12)).astype(np.float32), rng.normal(size=(5, 2, 8)).astype(np.float32)]
               for _ in range(4)]  # a 2x3 grid backbone and a global one (2 crops)
    grids = [(2, 3), None]
    scores, maps = score_last_cells(model, windows, grids, grid=(2, 3))
    assert scores.shape == (4,) and maps.shape == (4, 2, 3)
    alone = [score_last_cells(model, [w, [w[0][:4], w[1][:4]]], grids, grid=(2, 3)) for w in windows]  # 2 lengths
    np.testing.assert_allclose(scores, [s[0] for s, _ in alone], atol=1e-5)
    np.testing.assert_allclose(maps, np.stack([m[0] for _, m in alone]), atol=1e-5)
    assert float(maps.std()) > 0  # cells differ: the maps are not the broadcast score
