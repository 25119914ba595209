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



def test_paper_preset_switches_every_measured_choice_back():
    """--config paper: the papers' recipe, including the lightning student's plain network and no augmentation."""
    teacher = build_config("teacher", layers=[load_yaml("paper")])
    assert (teacher.model.input_norm, teacher.mil.topk, teacher.train.min_steps) == ("none", 1, 0)
    assert teacher.train.stretch_short_videos is True and teacher.train.min_val_videos == 1
    light = build_config("lightning", layers=[load_yaml("paper")])
    assert (light.lightning.input_norm, light.lightning.batch_norm, light.lightning.pool) == (False, False, "avg")
    assert (light.adversarial.flip, light.adversarial.shift) == (False, 0)
    default = build_config("lightning")
    assert default.lightning.pool == "topk" and default.adversarial.flip is True

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


def test_each_stage_saves_only_its_own_sections():
    assert set(build_config("teacher").to_dict()) == {"stage", "backbones", "model", "train", "mil"}
    assert set(build_config("student").to_dict()) == {"stage", "backbones", "model", "train", "distill"}
    assert set(build_config("lanet").to_dict()) == {"stage", "backbones", "lanet", "train", "ddl"}
    assert set(build_config("lightning").to_dict()) == {"stage", "backbones", "lightning", "train", "adversarial"}
    # another stage's section is checked but neither used nor saved: one file can configure every stage
    shared = [{"ddl": {"margin": 2}, "distill": {"alpha": 1}}]
    assert build_config("teacher", layers=shared).to_dict() == build_config("teacher").to_dict()
    assert build_config("student", layers=shared).distill.alpha == 1
    with pytest.raises(ConfigError, match="unknown key"):
        build_config("teacher", layers=[{"ddl": {"margn": 2}}])
    for stage in ("lanet", "lightning"):
        c = build_config(stage, layers=[{"train": {"seed": 3}}])
        assert config_from_dict(c.to_dict()) == c


def test_map_scores_is_keyed_for_the_map_student_only():
    import dataclasses

    score_student = build_config("lightning")
    assert "map_scores" not in score_student.to_dict()["lightning"]  # not read: its key stays what it was
    map_student = dataclasses.replace(score_student, grid=(7, 11))  # spatial teachers' grid
    assert map_student.map_student and map_student.to_dict()["lightning"]["map_scores"] == "head"
    assert config_from_dict(map_student.to_dict()) == map_student
    with pytest.raises(ConfigError, match="map_scores"):
        build_config("lightning", layers=[parse_assignments(["lightning.map_scores=max"])])


def test_cell_scorers_is_keyed_only_where_it_decides_the_network():
    """``spatial.cell_scorers`` is saved only for a spatial run whose pooled cell scorer reads several backbones
    and only when not ``shared`` (every earlier run's network), so every other run keeps its key; a saved run that
    reads it and lacks it loads as ``shared``."""
    import dataclasses

    def spatial(backbones, *assignments):
        config = build_config("teacher", backbones, layers=[parse_assignments(list(assignments))])
        return dataclasses.replace(config, grid=(7, 11))

    two = spatial(("i3d", "effnet_lite0", "motion"))  # i3d and motion cells scored (cell_backbones = video)
    assert two.reads_cell_scorers and two.to_dict()["spatial"]["cell_scorers"] == "per_backbone"
    assert config_from_dict(two.to_dict()) == two
    one = spatial(("i3d", "effnet_lite0"))  # i3d's cells only: the choices are one network
    assert not one.reads_cell_scorers and "cell_scorers" not in one.to_dict()["spatial"]
    assert config_from_dict(one.to_dict()) == one
    shared = spatial(("i3d", "effnet_lite0", "motion"), "spatial.cell_scorers=shared")
    assert "cell_scorers" not in shared.to_dict()["spatial"]
    assert config_from_dict(shared.to_dict()).spatial.cell_scorers == "shared"  # as saved before the key
    assert not dataclasses.replace(two, spatial=dataclasses.replace(two.spatial, temporal="cells")).reads_cell_scorers
    assert "spatial" not in build_config("teacher", ("i3d", "motion")).to_dict()  # a global run
    with pytest.raises(ConfigError, match="cell_scorers"):
        build_config("teacher", layers=[parse_assignments(["spatial.cell_scorers=each"])])


def test_every_field_keyed_where_read_is_a_field_of_its_section_with_a_valid_earlier_value():
    """``KEYED_WHERE_READ`` names real fields (a typo would silently key a field everywhere), and a ``before``
    value is one the field accepts."""
    import dataclasses

    from pipeline.config import KEYED_WHERE_READ

    config = build_config("teacher")
    for conditional in KEYED_WHERE_READ:
        section = getattr(config, conditional.section)
        assert conditional.name in {f.name for f in dataclasses.fields(section)}, conditional
        if conditional.before is not None:
            dataclasses.replace(section, **{conditional.name: conditional.before})  # validated by __post_init__


def test_a_saved_shared_cell_scorer_run_rebuilds_the_network_it_was_trained_with():
    """A checkpoint of a motion teacher saved before ``spatial.cell_scorers`` existed (its saved config lacks the
    key) loads into the shared scorer's parameters; a new one into a scorer per backbone."""
    import dataclasses

    from pipeline.runs import build_network

    dims = [1024, 1280, 8]
    for choice, outputs in (("shared", ["cell_output.bias", "cell_output.weight"]),
                            ("per_backbone", [f"cell_outputs.{i}.{p}" for i in (0, 1) for p in ("bias", "weight")])):
        config = build_config("teacher", ("i3d", "effnet_lite0", "motion"),
                              layers=[parse_assignments([f"spatial.cell_scorers={choice}"])])
        config = dataclasses.replace(config, grid=(7, 11))
        trained = build_network(config, dims).state_dict()
        rebuilt = build_network(config_from_dict(config.to_dict()), dims)
        assert sorted(k for k in trained if k.startswith("cell_output")) == outputs
        rebuilt.load_state_dict(trained)  # strict: the same parameters


def test_new_stage_defaults_and_typed_tuples():
    lanet = build_config("lanet", layers=[parse_assignments(["ddl.rank_weight=0.5", "lanet.classifier_kernel=5"])])
    assert lanet.backbones == ("i3d",) and lanet.ddl.rank_weight == 0.5 and lanet.lanet.classifier_kernel == 5
    assert (lanet.ddl.margin, lanet.ddl.k_dynamics, lanet.ddl.topk_divisor) == (1.0, 3, 16)
    light = build_config("lightning", layers=[parse_assignments(["lightning.channels=4,8"])])
    assert light.backbones == ("lowres",) and light.lightning.channels == (4, 8)
    assert (light.adversarial.adversarial_weight, light.adversarial.regression) == (0.1, "l2")
    with pytest.raises(ConfigError, match="expected int"):
        build_config("lightning", layers=[{"lightning": {"channels": "4,x"}}])
    with pytest.raises(ConfigError, match="lowres"):
        build_config("lightning", ("clip",))
    with pytest.raises(ConfigError, match="lowres"):
        build_config("teacher", ("lowres",))
    with pytest.raises(ConfigError, match="regression"):
        build_config("lightning", layers=[{"adversarial": {"regression": "huber"}}])


def test_table4_switches_are_config_values():
    c = build_config("student", layers=[parse_assignments(["distill.bce_weight=0", "distill.min_max=false"])])
    assert c.distill.bce_weight == 0.0 and c.distill.min_max is False
    assert build_config("student").distill.bce_weight == 1.0 and build_config("student").distill.min_max is True


def test_every_numeric_field_has_a_range_and_the_defaults_lie_in_it():
    import dataclasses
    import typing

    from pipeline.config import _SECTIONS, RANGES

    for section, cls in _SECTIONS.items():
        hints = typing.get_type_hints(cls)
        numeric = {f.name for f in dataclasses.fields(cls)
                   if hints[f.name] in (int, float) or typing.get_origin(hints[f.name]) is tuple}
        assert set(RANGES[section]) == numeric, section  # every number has a range, no range names a non-number
    for stage in ("teacher", "student", "lanet", "lightning"):
        build_config(stage).validate()  # the defaults pass their own table


@pytest.mark.parametrize("assignment, message", [
    ("train.lr_temporal=nan", r"config: train\.lr_temporal=nan: out of range, must be a finite number in \(0, 1000\]"),
    ("train.lr_other=-1", r"train\.lr_other=-1: out of range, must be a finite number in \(0, 1000\]"),
    ("train.lr_other=inf", r"train\.lr_other=inf: out of range"),
    ("adversarial.lr=0", r"adversarial\.lr=0: out of range"),
    ("train.val_fraction=1", r"train\.val_fraction=1: out of range, must be a finite number in \[0, 1\)"),
    ("model.dropout=nan", r"model\.dropout=nan: out of range"),
    ("distill.tau=0", r"distill\.tau=0: out of range, must be a finite number in \(0, inf\)"),
    ("distill.flat_eps=0", r"distill\.flat_eps=0: out of range"),
    ("train.epochs=0", r"train\.epochs=0: out of range, must be an integer in \[1, inf\)"),
    ("train.seed=-1", r"train\.seed=-1: out of range, must be an integer in \[0, 4294967295\]"),
    ("lightning.channels=4,0", r"lightning\.channels=4,0: out of range, each value must be an integer in \[1, inf\)"),
    ("lightning.pool_fraction=0", r"lightning\.pool_fraction=0: out of range, must be a finite number in \(0, 1\]"),
    ("adversarial.beta2=1", r"adversarial\.beta2=1: out of range"),
    ("lanet.locality_w_init=nan",
     r"lanet\.locality_w_init=nan: out of range, must be a finite number in \(-inf, inf\)"),
])
def test_values_out_of_range_are_named_with_the_key_the_value_and_the_range(assignment, message):
    with pytest.raises(ConfigError, match=message):
        build_config("teacher", layers=[parse_assignments([assignment])])
    stage_ok = build_config("teacher", layers=[parse_assignments(["train.val_fraction=0", "distill.tau=0.5"])])
    assert stage_ok.train.val_fraction == 0.0 and stage_ok.distill.tau == 0.5  # the ends the ranges include
