"""The method registry (``pipeline.methods``): a method registered at run time trains, evaluates, is a choice of
``dakd train`` and a row of the grid's "methods" table, and unregistering it restores the table; every row's
builder and objective resolve; the built-in methods keep the run keys and saved sections they had before the
registry.

The toy method is a real network defined here (a per-snippet MLP scorer, sized from the run config) trained with
the teacher's MIL objective on a synthetic feature set imported into a store (``tests/feature_sets.py``).
"""

from __future__ import annotations

import json

import pytest
import torch
from feature_sets import feature_store
from torch import nn

from models.vad_model import ModelOutput
from pipeline import api, methods
from pipeline.cli.commands import stage_parser
from pipeline.config import build_config
from pipeline.errors import UsageError
from pipeline.grid import runner
from pipeline.runs import load_run, run_key
from pipeline.store import FeatureStore

TOY = "snippet-mlp"


class SnippetMLP(nn.Module):
    """Each snippet scored on its own: the backbones' features concatenated and standardised with the training
    set's statistics (saved with the model), one hidden layer, a sigmoid. ``[N, L, D_b]`` per backbone ->
    ``ModelOutput(h [N, L, hidden], scores [N, L])``."""

    def __init__(self, input_dims: list[int], hidden: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(sum(input_dims)))
        self.register_buffer("std", torch.ones(sum(input_dims)))
        self.hidden = nn.Sequential(nn.Linear(sum(input_dims), hidden), nn.ReLU())
        self.score = nn.Linear(hidden, 1)
        # Every snippet starts at 0.5: a random start that happens to score the anomalies low keeps MIL's top-k on
        # normal snippets, a trap that a per-snippet scorer (no attention across snippets) falls into by chance.
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def set_input_statistics(self, statistics: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Per backbone ``(mean [D_b], std [D_b])`` of the training snippets (the trainer calls it)."""
        self.mean.copy_(torch.cat([mean for mean, _ in statistics]))
        self.std.copy_(torch.cat([std for _, std in statistics]).clamp_min(1e-6))

    def forward(self, features: list[torch.Tensor]) -> ModelOutput:
        h = self.hidden((torch.cat(features, dim=-1) - self.mean) / self.std)
        return ModelOutput(h=h, scores=torch.sigmoid(self.score(h)).squeeze(-1))

    def temporal_parameters(self) -> list[nn.Parameter]:
        return []  # nothing runs over time

    def other_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())


def build_snippet_mlp(config, input_dims: list[int], n_teachers: int = 1) -> SnippetMLP:
    """The toy method's builder (``pipeline.methods.MethodRow.network``): its width is the model section's
    ``classifier_hidden``."""
    return SnippetMLP(input_dims, config.model.classifier_hidden)


TOY_ROW = methods.MethodRow(TOY, "per-snippet MLP with MIL (a test's method)", ("model", "train", "mil"), ("i3d",),
                            f"{__name__}:build_snippet_mlp", "pipeline.train.objectives:TeacherObjective", heads=1,
                            window=1)
FAST = {"train.batch_anomalous": 8, "train.batch_normal": 8, "train.lr_other": 1e-2, "model.classifier_hidden": 16}


@pytest.fixture
def toy_method():
    """The toy method registered for one test, and the table restored after it, whatever the test did."""
    before = dict(methods.REGISTRY)
    methods.register(TOY_ROW)
    try:
        yield TOY_ROW
    finally:
        if TOY in methods.REGISTRY:
            methods.unregister(TOY)
        assert methods.REGISTRY == before


def _stage_choices() -> tuple[str, ...]:
    parser = stage_parser("train")
    return tuple(next(a for a in parser._actions if a.dest == "stage").choices)


def test_a_registered_method_trains_evaluates_and_is_a_stage_choice(tmp_path, toy_method):
    store, labels = feature_store(tmp_path, dims={"i3d": 32}, signal={"i3d": 2.0}, n_train=(12, 12), n_test=(6, 6))
    assert TOY in _stage_choices() and TOY in stage_parser("train").format_help()

    runs = api.train(TOY, store=store, dataset=str(labels), epochs=20, overrides=FAST)
    run = runs[0]
    assert run.stage == TOY and not run.cached and run.folder.parent.name == TOY
    assert set(json.loads((run.folder / "config.json").read_text())) == {"stage", "backbones", "model", "train",
                                                                          "mil"}
    fs = FeatureStore(store)
    try:
        loaded = load_run(fs, run.key)
    finally:
        fs.close()
    assert isinstance(loaded.model, SnippetMLP) and loaded.model.score.in_features == 16
    assert loaded.attention_heads == 1

    metrics = api.evaluate(run, store=store, dataset=str(labels), video_plots=False)[0]
    assert metrics.stage == TOY and metrics.auc > 0.9  # the signal is strong: a working scorer separates it
    assert api.train(TOY, store=store, dataset=str(labels), epochs=20, overrides=FAST)[0].key == run.key  # cached

    methods.unregister(TOY)
    assert TOY not in _stage_choices() and TOY not in methods.METHODS
    with pytest.raises(UsageError, match=TOY):
        api.train(TOY, store=store, dataset=str(labels))


def test_the_grid_methods_table_takes_registered_methods(toy_method):
    row = {v.name: v for v in runner.variants()}[TOY]
    assert (row.table, row.stage, row.description, row.teachers) == ("methods", TOY, TOY_ROW.description, ())
    grid = runner.GridSettings(store="S", dataset="D")
    assert runner.train_kwargs(row, 3, grid, [])["backbones"] == "i3d"  # its own default, not the grid's
    methods.unregister(TOY)
    assert TOY not in {v.name for v in runner.variants()}


def test_register_refuses_a_taken_name_and_a_malformed_row(toy_method):
    with pytest.raises(ValueError, match="already registered"):
        methods.register(TOY_ROW)
    with pytest.raises(ValueError, match="teacher_stage"):
        methods.MethodRow("x", "x", ("train",), ("i3d",), "m:f", "m:c", teachers=methods.ONE_TEACHER)
    with pytest.raises(ValueError, match="unknown method"):
        methods.unregister("no-such-method")


def test_every_row_resolves_its_network_and_objective(toy_method):
    for name, row in methods.REGISTRY.items():
        assert callable(methods.resolve(row.network)), name
        assert hasattr(row.objective_class(), "loss") and hasattr(row.objective_class(), "validate"), name
        config = build_config(name)  # its sections exist and its defaults pass the checks
        assert set(config.to_dict()) == {"stage", "backbones", *row.sections}
        assert isinstance(row.attention_heads(config), int) and row.attention_heads(config) >= 1


# Run keys of the built-in methods with their default configs, computed before the registry replaced the
# per-module tables (commit ccd53df): the registry must not change what a run is keyed by.
KEYS_BEFORE = {"teacher": "1c6d810ea43dd9f802766331637f3a7a90fd6f2171d18958dd6fc0018d4be333",
               "student": "ac8ae732e7811e3fa66b33971d36654a4a8723426113a643bc161f57b072b6ee",
               "lanet": "3f8b7ea730b8653f5dff9f46f1b1a58f4c8f36cb801f62695777179b1d553d52",
               "lightning": "01f29c1d1654a18a067abde29ec82ce617d31fb2ffc72e492f9bd67ec7e19ecb"}


def test_built_in_methods_keep_their_run_keys():
    assert tuple(methods.METHODS)[:4] == tuple(KEYS_BEFORE)
    for stage, key in KEYS_BEFORE.items():
        teacher = {"student": "t" * 64, "lightning": ["a" * 64, "b" * 64]}.get(stage)
        assert run_key(build_config(stage), train_entries=[["v0", 1], ["v1", 0]], feature_keys=["f0", "f1"],
                       teacher=teacher) == key, stage
