"""Config layering: defaults are the paper's, YAML then --set then flags override, unknown keys are errors."""

import pytest

from pipeline.config import ConfigError, build_config, config_from_dict, load_yaml, parse_assignments


def test_defaults_are_the_papers_values():
    c = build_config("teacher")
    assert c.backbones == ("i3d", "s3d", "clip")
    assert (c.train.epochs, c.train.batch_anomalous, c.train.batch_normal) == (100, 30, 30)
    assert (c.train.lr_temporal, c.train.lr_other, c.train.weight_decay) == (1e-4, 1e-3, 1e-3)
    assert (c.model.k, c.model.n_heads, c.model.d_model) == (25, 8, 512)
    assert (c.mil.smoothness, c.mil.sparsity, c.mil.pairing) == (8e-5, 8e-5, "one-to-one")
    assert (c.distill.alpha, c.distill.tau, c.distill.delta, c.distill.smoothing_e) == (7.5, 10.0, 0.9, 2)
    assert build_config("student").backbones == ("clip",)


def test_layers_override_in_order_and_are_typed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {k: 10}\ntrain: {lr_other: 1e-4, epochs: 7}\n")
    c = build_config("teacher", layers=[load_yaml(path), parse_assignments(["train.epochs=3", "model.c2p=false"])])
    assert c.model.k == 10 and c.train.epochs == 3 and c.train.lr_other == 1e-4 and c.model.c2p is False
    assert isinstance(c.train.lr_other, float)


@pytest.mark.parametrize("layer, message", [
    ({"train": {"epoch": 3}}, "unknown key"),
    ({"optim": {"lr": 1}}, "unknown section"),
    ({"train": {"epochs": "many"}}, "expected int"),
    ({"mil": {"pairing": "random"}}, "pairing"),
    ({"model": {"n_heads": 7}}, "model"),  # the model config's own check, reported as a config error
    ({"model": {"c2p": "maybe"}}, "expected bool"),
])
def test_mistakes_are_errors(layer, message):
    with pytest.raises(ConfigError, match=message):
        build_config("teacher", layers=[layer])


def test_student_takes_one_backbone_and_round_trips():
    with pytest.raises(ConfigError, match="exactly one"):
        build_config("student", ("clip", "i3d"))
    c = build_config("teacher", ("i3d", "clip"), layers=[{"train": {"seed": 4}}])
    assert config_from_dict(c.to_dict()) == c
