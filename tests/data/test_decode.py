"""The decoder: exact frames, both backends, real footage, frame folders, bounded snippets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from videos import encode, pattern_frames

from data.decode import SNIPPET_FRAMES, open_video
from data.errors import VideoError


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_lossless_video_decodes_to_the_written_frames(tmp_path, backend):
    frames = pattern_frames(50, 48, 64, seed=1)
    path = encode(tmp_path / "lossless.mkv", frames)
    with open_video(path, backend=backend) as video:
        snippets = list(video.snippets())
    assert video.info.backend == backend
    assert video.info.n_frames == 50
    assert len(snippets) == 50 // SNIPPET_FRAMES
    np.testing.assert_array_equal(np.concatenate(snippets), frames[:48])


def test_decord_and_pyav_agree_on_b_frame_h264(tmp_path):
    # libx264's default GOP uses B-frames: display order differs from decode order.
    path = encode(tmp_path / "bframes.mp4", pattern_frames(64, 64, 96, seed=2), codec="libx264", lossless=False)
    outs = {}
    for backend in ("decord", "pyav"):
        with open_video(path, backend=backend) as video:
            outs[backend] = np.concatenate(list(video.snippets())).astype(int)
    assert outs["decord"].shape == outs["pyav"].shape == (64, 64, 96, 3)
    # Same decoded YUV; the two libraries' YUV->RGB conversions may round differently by a level or two.
    assert np.abs(outs["decord"] - outs["pyav"]).max() <= 3
    frame_means = outs["pyav"].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(outs["decord"].mean(axis=(1, 2, 3)), frame_means, atol=0.5)


def test_vtest_decodes_fully_into_49_snippets(vtest_path):
    with open_video(vtest_path) as video:
        count = sum(1 for s in video.snippets() if s.shape == (16, 576, 768, 3))
    assert video.info.n_frames == 795
    assert video.info.declared_frames == 795
    assert (video.info.width, video.info.height, video.info.fps) == (768, 576, 10.0)
    assert video.info.codec == "msmpeg4"
    assert count == 795 // 16 == 49


def test_vtest_backends_agree(vtest_path):
    firsts = {}
    for backend in ("decord", "pyav"):
        with open_video(vtest_path, backend=backend) as video:
            firsts[backend] = [s.astype(int) for _, s in zip(range(3), video.snippets())]
    for a, b in zip(firsts["decord"], firsts["pyav"]):
        assert np.abs(a - b).mean() < 0.05


def test_frame_folder_is_a_video_in_natural_order(tmp_path):
    frames = pattern_frames(20, 32, 40, seed=3)
    folder = tmp_path / "01_0014"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i}.png")  # 10.png must come after 9.png
    with open_video(folder, fps=24.0) as video:
        snippets = list(video.snippets())
    assert (video.info.fps, video.info.n_frames, video.info.backend) == (24.0, 20, "frames")
    np.testing.assert_array_equal(snippets[0], frames[:16])


def test_truncated_file_is_reported(tmp_path, vtest_path):
    cut = tmp_path / "cut.avi"
    cut.write_bytes(vtest_path.read_bytes()[:1_000_000])
    with pytest.raises(VideoError, match="truncated"):
        with open_video(cut) as video:
            for _ in video.snippets():
                pass


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"hello, not a video\n", "not a readable video")])
def test_unreadable_files_raise_video_error(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match=reason):
        open_video(path)


def test_snippets_hold_one_buffer_at_a_time(tmp_path):
    # Streaming: the generator never materialises the video; peak memory is a snippet plus a decode batch.
    import tracemalloc

    path = encode(tmp_path / "long.mkv", pattern_frames(160, 48, 64, seed=4))
    tracemalloc.start()
    with open_video(path, backend="pyav") as video:
        for _ in video.snippets():
            pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    whole_video = 160 * 48 * 64 * 3
    assert peak < whole_video / 2


def test_resize_while_decoding_is_the_same_bilinear_in_both_backends(vtest_path):
    outs = {}
    for backend in ("decord", "pyav"):
        with open_video(vtest_path, backend=backend, short_side=256) as video:
            outs[backend] = next(video.snippets()).astype(int)
        assert (video.info.width, video.info.height) == (768, 576)  # the original size stays recorded
        assert (video.info.out_width, video.info.out_height) == (341, 256)
    assert outs["decord"].shape == (16, 256, 341, 3)
    assert np.abs(outs["decord"] - outs["pyav"]).max() <= 1


def test_resize_while_decoding_is_antialiased_like_torchvision(tmp_path):
    import torch
    import torchvision.transforms.functional as TF

    frames = pattern_frames(16, 192, 256, seed=5)
    path = encode(tmp_path / "big.mkv", frames)
    with open_video(path, short_side=96) as video:
        small = next(video.snippets()).astype(float)
    ref = TF.resize(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), 96, antialias=True)
    ref = ref.permute(0, 2, 3, 1).numpy()
    aliased = frames[:, ::2, ::2].astype(float)  # plain subsampling, what a non-antialiased filter resembles
    assert np.abs(small - ref).mean() < 0.5 * np.abs(aliased - ref).mean()


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_needed_positions_decode_exactly_and_keep_the_snippet_layout(tmp_path, backend):
    # 3 snippets and 5 trailing frames of a B-frame video: the needed positions must hold exactly the frames a
    # full decode gives, the frame count (and so the truncation check) must not change.
    path = encode(tmp_path / "b.mp4", pattern_frames(53, 64, 96, seed=4), codec="libx264", lossless=False)
    with open_video(path, backend=backend) as full:
        expected = list(full.snippets())
    needed = (0, 7, 15)
    with open_video(path, backend=backend, needed=needed) as part:
        got = list(part.snippets())
        assert part.info.n_frames == 53 and part.needed == needed
    assert len(got) == len(expected) == 3
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert np.array_equal(g[list(needed)], e[list(needed)])
