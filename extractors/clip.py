"""CLIP image tower via open_clip: ViT-B/16 (``clip``, default) or ViT-B/32 (``clip_b32``), 512-d.

A snippet's feature is the mean of the image embeddings of k of its frames (default 1, the centre frame). The
embedding is the raw ``encode_image`` output (not L2-normalised), as the CLIP-feature VAD works store it.

With a grid (``--grid``), each patch token of the last layer goes through the final layer norm and the projection
that the class token goes through, so the cells live in the same 512-d space as the global feature: ``[M, 512, 7,
7]`` for ViT-B/32 at 224 (14 x 14 for ViT-B/16). A grid extraction's global feature is then the cells' mean, not
the class token: a grid store's CLIP global feature differs from a global extraction's (their fingerprints differ
too, so the two never mix).
"""

from __future__ import annotations

import torch

from extractors import weights as W
from data.decode import SNIPPET_FRAMES
from extractors.base import Backbone, Preprocessing
from extractors.files import BadFile, describe_load_error, one_line, quiet_pickle_warnings

# open_clip's own eval transform for the OpenAI weights: short side 224 bicubic, centre crop 224, CLIP mean/std.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESSING = Preprocessing(resize="short_side", resize_size=224, interpolation="bicubic", crop_size=224,
                              mean=OPENAI_MEAN, std=OPENAI_STD)
MODELS = {"clip": "ViT-B-16", "clip_b32": "ViT-B-32"}
PRETRAINED_TAG = "openai"
DEFAULT_FRAMES = 1


def centre_frames(k: int, snippet: int = SNIPPET_FRAMES) -> tuple[int, ...]:
    """Indices of k frames spread evenly over a snippet, each at the centre of its 1/k share (k=1 -> (8,))."""
    if not 1 <= k <= snippet:
        raise ValueError(f"--clip-frames must be between 1 and {snippet}, got {k}")
    return tuple(int((i + 0.5) * snippet / k) for i in range(k))


class ClipBackbone(Backbone):
    """open_clip's ViT image tower. Unlike the convolutional backbones, :meth:`embed` (the class token) is not the
    mean of :meth:`embed_map`'s cells (the patch tokens): a grid extraction stores the cells, and its global feature
    (``pipeline.features.VideoFeatures.load``) is their mean."""

    dim = 512
    kind = "image"
    grids = True
    version = 1

    def __init__(self, name: str, *args, **kwargs):
        self.name = name
        super().__init__(*args, **kwargs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, 224, 224] -> [M, 512]``: the image tower's projected embedding (the class token)."""
        return self.model(x)

    def use_grid(self, choice: str | None) -> None:
        """:meth:`Backbone.use_grid`, after checking that this open_clip's tower is the layout :meth:`embed_map`
        reads (ValueError naming the fix otherwise)."""
        if choice is not None:
            _check_token_grid(self.model, self.name)
        super().use_grid(choice)

    def embed_map(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, 224, 224] -> [M, 512, 224 / P, 224 / P]`` (P the patch size: 7 x 7 for ViT-B/32, 14 x 14 for
        ViT-B/16): the last layer's patch tokens through the final layer norm and the projection, as the class
        token goes through them in :meth:`embed`."""
        visual = self.model
        # open_clip's forward_intermediates gives the last block's patch tokens as [M, width, rows, cols], ln_post
        # applied (normalize_intermediates); ViT-B applies ln_post to every token and then takes the class token.
        out = visual.forward_intermediates(x, indices=1, stop_early=True, normalize_intermediates=True,
                                           intermediates_only=True, output_fmt="NCHW")
        tokens = out["image_intermediates"][-1]  # [M, width, rows, cols]
        return torch.einsum("mwhc,wd->mdhc", tokens, visual.proj)


def _check_token_grid(visual, name: str) -> None:
    """The tower :meth:`ClipBackbone.embed_map` reads: ``forward_intermediates`` (open_clip 3 has it; older
    versions may not), class-token pooling with the final layer norm on every token, a projection. Raises
    ValueError naming the fix for another layout."""
    layout = (hasattr(visual, "forward_intermediates"), getattr(visual, "attn_pool", None),
              getattr(visual, "pool_type", None), getattr(visual, "final_ln_after_pool", False),
              getattr(visual, "proj", None) is not None)
    if layout != (True, None, "tok", False, True):
        raise ValueError(f"{name} cannot keep a grid with this open_clip: its image tower lacks forward_intermediates "
                         "or pools other than by the class token; pip install 'open_clip_torch>=3', or extract "
                         f"{name} without `grids`")


def _library_download(model_name: str):
    """open_clip's own download of the OpenAI weights into the project's weights cache (needs network)."""
    import open_clip

    cfg = open_clip.pretrained.get_pretrained_cfg(model_name, PRETRAINED_TAG)
    return open_clip.pretrained.download_pretrained(cfg, cache_dir=str(W.weights_dir() / "open_clip"))


def _bad_checkpoint_reason(exc: BaseException, name: str, model_name: str, path) -> str:
    """Why open_clip could not build ``model_name`` from a weights file: unreadable, or other tensors."""
    message = str(exc)
    if "Error(s) in loading state_dict" in message or isinstance(exc, (KeyError, StopIteration)):
        return f"the {name} weights are not an open_clip {model_name} checkpoint ({one_line(message) or 'empty'})"
    return f"cannot read the {name} weights: {describe_load_error(exc, path)}"


def build(weights: str | None = None, *, name: str = "clip", crops: int = 1, frames: int = DEFAULT_FRAMES,
          device="cpu") -> ClipBackbone:
    """weights: None (OpenAI weights through open_clip's download, cached), ``"random"``, or a path to an
    open_clip checkpoint of the same model (e.g. ``open_clip_pytorch_model.bin``)."""
    import open_clip

    model_name = MODELS[name]
    how = (f"or run once with network access so open_clip downloads {model_name} '{PRETRAINED_TAG}' weights "
           f"into {W.weights_dir() / 'open_clip'}")
    if weights is None:
        try:
            weights = _library_download(model_name)
        except Exception as exc:  # offline: huggingface_hub / urllib errors of many kinds
            raise W.WeightsNotFound(f"weights for {name} not found and open_clip's download failed "
                                    f"({type(exc).__name__}): pass --weights {name}=PATH, {how}") from exc
    choice = W.resolve(name, weights, [], how_to_get=how)
    # The OpenAI weights were trained with QuickGELU; without forcing it a local file would silently run GELU.
    try:
        with quiet_pickle_warnings():
            model = open_clip.create_model(model_name, pretrained=None if choice.is_random else str(choice.path),
                                           force_quick_gelu=True)
    except Exception as exc:  # noqa: BLE001 - torch.load's and load_state_dict's many types for a bad file
        if choice.is_random:
            raise
        raise BadFile(choice.path, _bad_checkpoint_reason(exc, name, model_name, choice.path),
                      f"delete it and run once with network access so open_clip downloads it again, or pass "
                      f"--weights {name}=PATH with an open_clip {model_name} checkpoint") from None
    return ClipBackbone(name, model.visual, PREPROCESSING, crops=crops, frame_indices=centre_frames(frames),
                        weights_id=choice.id, device=device)
