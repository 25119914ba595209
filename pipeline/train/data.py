"""Training input: segment tensors in memory, the validation split, and the batch schedule (method.md §2, §6)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from data.segments import pool_segments, segment_count
from models.spatial import CellFeatures
from pipeline.features import VideoFeatures


DEVICE_DATA_LIMIT = 4 * 2**30  # bytes of segment tensors that are moved to the GPU whole (see SegmentData.place)


@dataclass
class SegmentData:
    """Pooled segments of a list of videos, one row per training sample.

    segments[b]: float32 ``[S, n_segments, D_b]`` per backbone (S = videos, or videos x crops when each crop is
    its own sample); labels: int64 ``[S]``; video: int64 ``[S]``, the row's index into ``videos``; lengths: int64
    ``[S]``, the row's segments (a short video that is not stretched has fewer than ``n_segments``; the rest of
    its row is zeros and never reaches a model: see ``pipeline.train.objectives.forward_by_length``).

    A spatial run's data (``pipeline.train.cells``) also holds ``cells[b]``, float32 ``[S, W, C_b, r_b]``: each
    segment's cells on the run's ``grid``, prepared for ``models.spatial.SpatialMIL`` (W: the longest row's
    segments), with the cells' statistics and principal components it was prepared with; its batches are then
    ``models.spatial.CellFeatures``.
    """

    backbones: tuple[str, ...]
    segments: dict[str, torch.Tensor]
    labels: torch.Tensor
    video: torch.Tensor
    videos: list[VideoFeatures]
    crops_per_sample: int  # crops a row averages over (1 unless crops are averaged in the features)
    lengths: torch.Tensor | None = None  # None: every row has all its segments
    # backbone -> (mean, std) float32 [D_b] over every snippet and crop of the videos (models.normalization)
    statistics: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    cells: dict[str, torch.Tensor] | None = None  # a spatial run's prepared cells (pipeline.train.cells)
    cell_statistics: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None  # backbone -> cells' (mean, std)
    components: dict[str, torch.Tensor | None] | None = None  # backbone -> the cells' principal components [D_b, r_b]
    grid: tuple[int, int] = (1, 1)

    def input_statistics(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per backbone, in backbone order, the snippets' ``(mean [D_b], std [D_b])`` (a network's
        ``set_input_statistics``)."""
        return [self.statistics[b] for b in self.backbones]

    def __len__(self) -> int:
        return len(self.labels)

    def rows_of(self, video_indices: np.ndarray) -> np.ndarray:
        """Rows belonging to the given videos."""
        return np.flatnonzero(np.isin(self.video.numpy(), video_indices))

    def nbytes(self) -> int:
        tensors = [*self.segments.values(), *(self.cells or {}).values()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def input_dims(self) -> list[int]:
        """Feature width per backbone, in backbone order (the network's ``input_dims``)."""
        return [int(self.segments[b].shape[-1]) for b in self.backbones]

    def place(self, device: torch.device, *, limit_bytes: int = DEVICE_DATA_LIMIT) -> str:
        """Where batches come from. On a GPU the whole set moves to device memory once when it is at most
        ``limit_bytes`` (UCF-Crime with 3 backbones, crops averaged: about 0.5 GiB), so a batch is one on-device
        gather; larger sets stay in pinned host memory and each batch is copied asynchronously.
        Returns ``"device"``, ``"pinned"`` or ``"host"`` (CPU training)."""
        where = placement(self.nbytes(), device, limit_bytes)
        if where == "device":
            self.segments = {b: t.to(device) for b, t in self.segments.items()}
            self.cells = self.cells and {b: t.to(device) for b, t in self.cells.items()}
        elif where == "pinned":
            self.segments = {b: t.pin_memory() for b, t in self.segments.items()}
            self.cells = self.cells and {b: t.pin_memory() for b, t in self.cells.items()}
        return where

    def row_lengths(self, rows: np.ndarray) -> torch.Tensor:
        """int64 ``[len(rows)]``: the segments of each row (on the CPU)."""
        if self.lengths is None:
            return torch.full((len(rows),), next(iter(self.segments.values())).shape[1], dtype=torch.int64)
        return self.lengths[torch.from_numpy(np.asarray(rows, dtype=np.int64))]

    def batch(self, rows: np.ndarray, device: torch.device) -> list[torch.Tensor] | CellFeatures:
        """Per backbone ``[len(rows), n_segments, D_b]`` on ``device``; a spatial run's, with its cells
        ``[len(rows), W, C_b, r_b]``, as ``CellFeatures``."""
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        pooled = [_gather(self.segments[b], index, device) for b in self.backbones]
        if self.cells is None:
            return pooled
        return CellFeatures(pooled, [_gather(self.cells[b], index, device) for b in self.backbones])


def _gather(source: torch.Tensor, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``index`` of ``source`` on ``device``."""
    x = source.index_select(0, index.to(source.device))
    if x.device != device:  # pinned host memory -> GPU: an asynchronous copy
        x = (x.pin_memory() if source.is_pinned() else x).to(device, non_blocking=True)
    return x


def placement(nbytes: int, device: torch.device, limit_bytes: int = DEVICE_DATA_LIMIT) -> str:
    """``host`` for CPU training; on a GPU ``device`` when the set fits under ``limit_bytes``, else ``pinned``."""
    if device.type != "cuda":
        return "host"
    return "device" if nbytes <= limit_bytes else "pinned"


def _pad(pooled: np.ndarray, n_segments: int) -> np.ndarray:
    """``[crops, L, D]`` -> ``[crops, n_segments, D]``, zeros after the first L segments."""
    missing = n_segments - pooled.shape[1]
    return np.pad(pooled, ((0, 0), (0, missing), (0, 0))) if missing else pooled


def build_segment_data(videos: list[VideoFeatures], backbones: tuple[str, ...], *, n_segments: int,
                       crops: str, stretch: bool = True) -> SegmentData:
    """Pool every video's features (crops averaged, or each crop a sample: ``crops`` = ``mean`` | ``samples``).
    ``stretch``: a video shorter than ``n_segments`` snippets is stretched to ``n_segments`` (True) or keeps its
    snippets, padded (False; ``data.segments``)."""
    per_backbone: dict[str, list[np.ndarray]] = {b: [] for b in backbones}
    moments = {b: _Moments() for b in backbones}
    labels, owner, lengths = [], [], []
    n_crops = None
    for i, vf in enumerate(videos):
        arrays = {b: vf.load(b) for b in backbones}
        for b, a in arrays.items():
            moments[b].add(a)
        shortest = min(a.shape[0] for a in arrays.values())  # sources may differ by a snippet (align_snippets)
        length = segment_count(shortest, n_segments, stretch=stretch)
        pooled = {b: _pad(pool_segments(a[:shortest] if length < n_segments else a, n_segments, stretch=stretch),
                          n_segments) for b, a in arrays.items()}  # [crops, n_segments, D]
        if crops == "mean":
            rows = {b: p.mean(axis=0, keepdims=True) for b, p in pooled.items()}
        else:
            counts = {p.shape[0] for p in pooled.values()}
            if len(counts) != 1:
                raise ValueError(f"{vf.entry.name}: backbones have different crop counts {sorted(counts)}; "
                                 "each crop can only be its own sample when every backbone has the same crops "
                                 "(use train.crops=mean)")
            rows = pooled
        n = next(iter(rows.values())).shape[0]
        n_crops = n_crops or next(iter(pooled.values())).shape[0]
        for b in backbones:
            per_backbone[b].append(rows[b])
        labels += [vf.entry.label] * n
        owner += [i] * n
        lengths += [length] * n
    if not videos:
        raise ValueError("no videos to train on")
    return SegmentData(
        backbones=tuple(backbones),
        segments={b: torch.from_numpy(np.concatenate(v)) for b, v in per_backbone.items()},
        labels=torch.tensor(labels, dtype=torch.int64),
        video=torch.tensor(owner, dtype=torch.int64),
        videos=videos,
        crops_per_sample=n_crops if crops == "mean" else 1,
        lengths=None if min(lengths) == n_segments else torch.tensor(lengths, dtype=torch.int64),
        statistics={b: m.mean_std() for b, m in moments.items()},
    )


class _Moments:
    """Running per-dimension sum and sum of squares of ``[T, crops, D]`` arrays (float64)."""

    def __init__(self) -> None:
        self.n, self.total, self.squares = 0, 0.0, 0.0

    def add(self, array: np.ndarray) -> None:
        x = array.reshape(-1, array.shape[-1]).astype(np.float64)
        self.n += len(x)
        self.total = self.total + x.sum(axis=0)
        self.squares = self.squares + np.square(x).sum(axis=0)

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.total / self.n
        std = np.sqrt(np.maximum(self.squares / self.n - np.square(mean), 0.0))
        return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def validation_split(labels: np.ndarray, fraction: float, seed: int, *,
                     min_videos: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of video indices: ``round(fraction * n)`` of each label's videos go to validation,
    leaving at least one of each label for training. When that is fewer than ``min_videos`` for either label, no
    split is made (every video trains, validation is empty). Returns (train, val), each sorted."""
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for label in (0, 1):
        members = np.flatnonzero(labels == label)
        n_val = min(int(round(fraction * len(members))), max(len(members) - 1, 0))
        if n_val < min_videos:
            return np.arange(len(labels), dtype=np.int64), np.zeros(0, dtype=np.int64)
        val += rng.permutation(members)[:n_val].tolist()
    val_set = set(val)
    train = np.array([i for i in range(len(labels)) if i not in val_set], dtype=np.int64)
    return train, np.array(sorted(val), dtype=np.int64)


def epoch_batches(anomalous: np.ndarray, normal: np.ndarray, *, batch_anomalous: int, batch_normal: int,
                  rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """One epoch: every anomalous row once, in ``batch_anomalous`` chunks, each with ``batch_normal`` normal rows
    drawn without replacement from a shuffled stream that is re-shuffled when exhausted. A last, smaller chunk
    of anomalous rows gets proportionally fewer normals (at least one)."""
    if len(anomalous) == 0 or len(normal) == 0:
        raise ValueError("training needs anomalous and normal videos")
    order = rng.permutation(anomalous)
    stream: list[int] = []
    batches = []
    for start in range(0, len(order), batch_anomalous):
        chunk = order[start:start + batch_anomalous]
        want = max(1, round(batch_normal * len(chunk) / batch_anomalous))
        drawn: list[int] = []
        while len(drawn) < want:
            if not stream:
                stream = rng.permutation(normal).tolist()
            drawn.append(stream.pop())
        batches.append((chunk, np.array(drawn, dtype=np.int64)))
    return batches
