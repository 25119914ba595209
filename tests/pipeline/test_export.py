"""Export of backbone + head (``pipeline.export``): TorchScript and ONNX give the eager scores, at every supported
length, and the eager scorer equals the project's own path (``forward_preprocessed`` then ``score_snippets``).

The real EfficientNet-Lite0 (ImageNet weights) is the backbone; the head is a tiny untrained ``VADModel`` (an
equality check needs no training). The T-range checks run the backbone at 16 x 16 crops so videos longer than two
attention blocks (T = 513) stay fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch

from extractors.effnet_lite import EffNetLite0Backbone
from extractors.registry import build_backbone
from models.attention import QUERY_BLOCK
from models.spatial import SpatialConfig, SpatialMIL
from models.vad_model import ModelConfig, VADModel
from pipeline.cli import export
from pipeline.export import exporter
from pipeline.detect import onnx_scorer
from pipeline.errors import UsageError
from pipeline.evaluate.scoring import score_cells, score_snippets

TINY = ModelConfig(d_model=16, n_heads=2, projection_hidden=16, ffn_dim=32, classifier_hidden=16, k=4)
LENGTHS = (1, 5, 40)  # checked by the export itself; the test adds 7, 33 and LONG
LONG = 2 * QUERY_BLOCK + 1  # the eager attention takes it in 3 row blocks, the exported head in one
MAX = 600


def _head(seed: int = 0) -> VADModel:
    torch.manual_seed(seed)
    return VADModel([1280], TINY).eval()


@pytest.fixture(scope="module")
def real_backbone():
    return build_backbone("effnet_lite0", view="crop")  # crops of a square: the 5-crop exports below


@pytest.fixture(scope="module")
def small_backbone(real_backbone):
    """The real weights at 16 x 16 crops, 5 crops and 2 frames per snippet (any input size works for the CNN)."""
    prep = dataclasses.replace(real_backbone.preprocessing, resize_size=20, crop_size=16)
    return EffNetLite0Backbone(real_backbone.model, prep, crops=5, frame_indices=(4, 12),
                               weights_id=real_backbone.weights_id)


@pytest.fixture(scope="module")
def exported(small_backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    scorer = exporter.SnippetScorer(small_backbone, _head())
    info = exporter.export_scorer(scorer, small_backbone, out, example_snippets=8, check_lengths=LENGTHS,
                                max_snippets=MAX)
    return out, scorer, info


def _snippets(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 16, 48, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_exports_equal_eager_at_every_length(exported):
    out, scorer, info = exported
    for name in (onnx_scorer.TORCHSCRIPT_FILE, onnx_scorer.BACKBONE_ONNX, onnx_scorer.HEAD_ONNX):
        assert (out / name).is_file()
    on_disk = json.loads((out / onnx_scorer.EXPORT_JSON).read_text())
    assert on_disk["T_range"] == [1, MAX] and on_disk["input"]["shape"] == ["n", 3, 2, 16, 16]
    assert on_disk["features"]["shape"] == ["T", 1280]
    assert on_disk["tolerance"]["max_abs_diff_scores"] == onnx_scorer.TOLERANCE == 1e-4
    assert sorted(r["T"] for r in on_disk["check"].values()) == sorted([*LENGTHS, 8, exporter.HEAD_CHECK_LENGTH])
    # Independently of the export's own check: fresh inputs, loaded files, lengths past the eager model's blocks.
    scripted = exporter.load_torchscript(out / onnx_scorer.TORCHSCRIPT_FILE)
    onnx_model = onnx_scorer.OnnxScorer(out)
    gen = torch.Generator().manual_seed(7)
    for t in (1, 7, 33, LONG):
        x = torch.randn(t, 3, 2, 16, 16, generator=gen)
        with torch.no_grad():
            eager = scorer(x).numpy()
            assert eager.shape == (t,)
            np.testing.assert_allclose(scripted(x).numpy(), eager, rtol=0, atol=onnx_scorer.TOLERANCE)
        np.testing.assert_allclose(onnx_model(x.numpy()), eager, rtol=0, atol=onnx_scorer.TOLERANCE)
    # The scores vary along the video, so equality is not trivially met by constants.
    assert np.ptp(eager) > 1e-4


def test_a_head_traced_with_the_attention_blocks_on_fails_the_check(small_backbone, tmp_path, monkeypatch):
    """Tracing unrolls the eager model's block loop for the example's length: such a head is wrong past one block,
    and the export's check on features longer than two blocks must refuse it."""
    monkeypatch.setattr(exporter, "attention_unblocked", lambda module: contextlib.nullcontext())
    with pytest.raises(ValueError, match=f"onnx export fails on head_features_T{exporter.HEAD_CHECK_LENGTH}"):
        exporter.export_scorer(exporter.SnippetScorer(small_backbone, _head()), small_backbone, tmp_path,
                             example_snippets=8, check_lengths=(1,), max_snippets=MAX)
    assert not (tmp_path / onnx_scorer.EXPORT_JSON).exists()


def test_too_long_videos_raise_a_clear_error(exported):
    out, _, _ = exported
    x = np.zeros((MAX + 1, 3, 2, 16, 16), np.float32)
    with pytest.raises(onnx_scorer.TooManySnippets, match=f"{MAX + 1} snippets.*at most {MAX}"):
        onnx_scorer.OnnxScorer(out)(x)
    with pytest.raises(Exception, match=f"1 to {MAX} snippets at once, got {MAX + 1}"):
        exporter.load_torchscript(out / onnx_scorer.TORCHSCRIPT_FILE)(torch.from_numpy(x))
    with pytest.raises(ValueError, match="expected preprocessed snippets"):
        onnx_scorer.OnnxScorer(out)(x[:4, :, :1])
    with pytest.raises(ValueError, match="max_snippets and batch must be at least 1"):
        exporter.export_scorer(None, None, out, max_snippets=0)  # checked before anything is built


def test_onnx_with_crops_equals_the_projects_scoring_path(exported, small_backbone):
    out, scorer, _ = exported
    snippets = _snippets(6)
    pre = small_backbone.preprocess(snippets)  # [6 * 5, 3, 2, 16, 16]
    feats = small_backbone.forward_preprocessed(pre, n_snippets=6).numpy()  # [6, 5, 1280]
    expected = score_snippets(scorer.head, [feats], torch.device("cpu"), n_heads=TINY.n_heads)
    got = onnx_scorer.OnnxScorer(out).score_preprocessed(pre, crops=5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=onnx_scorer.TOLERANCE)


def test_snippet_scorer_equals_the_projects_path_on_real_preprocessing(real_backbone):
    head = _head(1)
    snippets = _snippets(5, seed=3)
    pre = real_backbone.preprocess(snippets)  # [5, 3, 1, 224, 224]
    feats = real_backbone.forward_preprocessed(pre, n_snippets=5).numpy()
    expected = score_snippets(head, [feats], torch.device("cpu"), n_heads=TINY.n_heads)
    with torch.no_grad():
        got = exporter.SnippetScorer(real_backbone, head).eval()(pre).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_a_different_export_fails_the_check_naming_the_difference(exported, small_backbone):
    out, scorer, _ = exported
    other = exporter.SnippetScorer(small_backbone, _head(seed=5)).eval()  # other head weights
    with pytest.raises(ValueError, match=r"torchscript export's scores differ from the eager model's by [0-9.e-]+"):
        exporter.check_equal(scorer, other, out, [("x", torch.randn(4, 3, 2, 16, 16))])


def test_cli_rejects_a_folder_that_is_not_a_store(tmp_path, capsys):
    assert export.main(["abcdef", "--store", str(tmp_path)]) == 2
    assert f"{tmp_path} is not a feature store" in capsys.readouterr().err


def test_a_whole_frame_backbone_is_traced_for_its_videos_frame_size(real_backbone, tmp_path):
    """The full view keeps each video's aspect: the graph is traced (and checked) at the size the videos of the
    export's frame size give, here 48 x 32 frames -> 24 x 16 inputs at a 16-pixel short side."""
    prep = dataclasses.replace(real_backbone.preprocessing, resize_size=20, crop_size=16, view="full")
    backbone = EffNetLite0Backbone(real_backbone.model, prep, crops=1, frame_indices=(8,),
                                   weights_id=real_backbone.weights_id)
    scorer = exporter.SnippetScorer(backbone, _head())
    with pytest.raises(UsageError, match="`frame_size`"):
        exporter.export_scorer(scorer, backbone, tmp_path / "none", example_snippets=4, check_lengths=(1, 5),
                             max_snippets=MAX)
    info = exporter.export_scorer(scorer, backbone, tmp_path / "full", example_snippets=4, check_lengths=(1, 5),
                                max_snippets=MAX, frame_size=(48, 32))
    assert info["input"]["shape"] == ["n", 3, 1, 16, 24]
    assert max(info["max_abs_diff"].values()) <= onnx_scorer.TOLERANCE
    frames = torch.randint(0, 256, (3, 16, 32, 48, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    x = backbone.preprocess(frames)
    torch.testing.assert_close(torch.from_numpy(onnx_scorer.OnnxScorer(tmp_path / "full")(x.numpy())), scorer(x),
                               atol=onnx_scorer.TOLERANCE, rtol=0)
    assert export.parse_frame_size("238x158") == (238, 158)
    with pytest.raises(Exception, match="WIDTHxHEIGHT"):
        export.parse_frame_size("238")


def test_export_and_loading_it_raise_no_future_or_deprecation_warning(small_backbone, tmp_path):
    """The project's own calls (trace, script, save, the ONNX export, load, onnxruntime) under -W error for
    FutureWarning and DeprecationWarning; torch.jit.load itself does warn, so the test can fail."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        info = exporter.export_scorer(exporter.SnippetScorer(small_backbone, _head()), small_backbone, tmp_path,
                                    example_snippets=4, check_lengths=(1, 3), max_snippets=MAX)
        module = exporter.load_torchscript(tmp_path / onnx_scorer.TORCHSCRIPT_FILE)
        x = torch.randn(3, 3, 2, 16, 16)
        with torch.no_grad():
            scores = module(x).numpy()
        np.testing.assert_allclose(onnx_scorer.OnnxScorer(tmp_path)(x.numpy()), scores, rtol=0,
                                   atol=onnx_scorer.TOLERANCE)
    assert max(info["max_abs_diff"].values()) <= onnx_scorer.TOLERANCE
    with pytest.warns(FutureWarning, match=exporter.JIT_LOAD_WARNING):
        torch.jit.load(str(tmp_path / onnx_scorer.TORCHSCRIPT_FILE))


def test_the_summary_line_names_the_files_and_the_checked_difference(exported):
    out, _, info = exported
    line = export.summary_line("0123456789abcdef", "effnet_lite0", out, info)
    assert "\n" not in line and "{" not in line  # one human line, no JSON
    assert line.startswith(f"export: run 0123456789ab (effnet_lite0) -> {out}: {onnx_scorer.TORCHSCRIPT_FILE}, "
                           f"{onnx_scorer.BACKBONE_ONNX}, {onnx_scorer.HEAD_ONNX}, {onnx_scorer.EXPORT_JSON}; "
                           f"T in [1, {MAX}]")
    assert f"checked on {len(info['check'])} inputs" in line
    assert f"onnx {info['max_abs_diff']['onnx']:.2g} (tolerance {onnx_scorer.TOLERANCE:g})" in line


# The keys of an export.json of a scorer without maps (export_student adds run, stage, decode and calibration); a
# spatial export adds outputs, grid and maps.
GLOBAL_KEYS = ["backbone", "backbone_kind", "weights", "frame_indices", "crops", "preprocessing", "input", "features",
               "output", "T_range", "batch", "example_snippets", "opset", "files", "tolerance", "check",
               "max_abs_diff"]


def test_a_global_export_has_no_maps_output(exported):
    out, _, info = exported
    assert sorted(json.loads((out / onnx_scorer.EXPORT_JSON).read_text())) == sorted(GLOBAL_KEYS)
    scorer = onnx_scorer.OnnxScorer(out)
    assert not scorer.cells and [o.name for o in scorer.head.get_outputs()] == [onnx_scorer.OUTPUT_NAME]


def test_a_spatial_export_on_a_grid_that_does_not_divide_the_map_gives_the_eager_scores_and_maps(real_backbone,
                                                                                                  tmp_path):
    """A 2 x 2 grid of effnet_lite0's 3 x 3 map at 96 x 96 (overlapping bins, which ONNX's adaptive pooling refuses)
    and a head on another grid (1 x 2, as a native grid of other frames would be): backbone.onnx gives the
    extractor's cells, head.onnx the scores and maps of the project's scoring path (score_cells, to_grid)."""
    prep = dataclasses.replace(real_backbone.preprocessing, resize_size=96, crop_size=96, view="squash")
    backbone = EffNetLite0Backbone(real_backbone.model, prep, crops=1, frame_indices=(4, 12),
                                   weights_id=real_backbone.weights_id)
    backbone.use_grid("2x2")
    torch.manual_seed(0)
    head = SpatialMIL(VADModel([1280], TINY), [1280], SpatialConfig(hidden=8, reduce_dim=16)).eval()
    for layer in head.output_layers():  # cells that differ (zero at initialisation)
        torch.nn.init.normal_(layer.weight)
    x = backbone.preprocess(_snippets(6))  # [6, 3, 2, 96, 96]
    with torch.no_grad():
        cells = backbone.embed_snippets(x)  # [6, 4, 1280], adaptive pooling of the native 3 x 3 map
        np.testing.assert_allclose(exporter.SnippetEmbedder(backbone)(x), cells, rtol=0, atol=1e-5)
    assert exporter.backbone_cells(backbone, (96, 96)) == (2, 2)
    scorer = exporter.SnippetScorer(backbone, head, grid=(1, 2), cells=(2, 2))
    info = exporter.export_scorer(scorer, backbone, tmp_path, example_snippets=4, check_lengths=(1, 5),
                                  max_snippets=100)
    assert info["outputs"] == ["scores", "maps"] and info["grid"] == [1, 2]
    assert set(info) - set(GLOBAL_KEYS) == {"outputs", "grid", "maps"}
    assert info["features"]["shape"] == ["T", 4, 1280] and info["features"]["cells"] == [2, 2]
    assert max(info["max_abs_diff"].values()) <= onnx_scorer.TOLERANCE
    expected_scores, expected_maps = score_cells(head, [cells.numpy()], [(2, 2)], torch.device("cpu"),
                                                 n_heads=TINY.n_heads, grid=(1, 2))
    graphs = onnx_scorer.OnnxScorer(tmp_path, maps=onnx_scorer.maps_output(info))
    assert graphs.cells
    scores, maps = graphs.score_maps(graphs.embed(x.numpy()))
    assert maps.shape == (6, 1, 2) and np.ptp(maps) > 1e-3
    np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=onnx_scorer.TOLERANCE)
    np.testing.assert_allclose(maps, expected_maps, rtol=0, atol=onnx_scorer.TOLERANCE)
    with torch.no_grad():
        ts_scores, ts_maps = exporter.load_torchscript(tmp_path / onnx_scorer.TORCHSCRIPT_FILE)(x)
    np.testing.assert_allclose(ts_scores.numpy(), expected_scores, rtol=0, atol=onnx_scorer.TOLERANCE)
    np.testing.assert_allclose(ts_maps.numpy(), expected_maps, rtol=0, atol=onnx_scorer.TOLERANCE)
    with pytest.raises(ValueError, match="a spatial head scores the cells of a backbone with a grid"):
        exporter.SnippetScorer(real_backbone, head, grid=(1, 2), cells=(2, 2))
