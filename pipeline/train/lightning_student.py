"""Training data and objective of the lightning student (method.md §9).

The student sees each snippet's low-resolution grey frames (``extractors.lowres``, stored uint8 ``[T, 1, F*S*S]``)
and learns every teacher's **snippet** score sequence: the teachers (TAM teacher, student, LA-Net runs) score
every snippet of every training video once, on their own stored features, exactly as evaluation does. A training
sample is a window of consecutive snippets of one video, so the per-teacher discriminators judge real temporal
score sequences.

The map student (``RunConfig.map_student``: every teacher spatial, ``spatial.cells = auto``) also learns every
teacher's anomaly maps, ``[T, rows, cols]`` from the same scoring, on the first teacher's grid (:func:`map_grid`;
a teacher on another grid is brought to it by ``models.spatial.to_grid``), with one map discriminator per teacher
(``models.lightning_student.map_distillation_loss``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.lightning_student import (LightningConfig, adversarial_distillation_loss, make_discriminators,
                                      make_map_discriminators, map_distillation_loss, regression_loss)
from models.spatial import to_grid
from pipeline.config import LOWRES, AdversarialConfig, RunConfig
from pipeline.features import VideoFeatures
from pipeline.precision import autocast
from pipeline.runs import LoadedRun
from pipeline.evaluate.scoring import score_video

VALIDATION_ROWS = 32  # videos per validation forward pass (32 x 32 snippets x 32768 pixels: 128 MiB as float)


@dataclass
class SnippetWindows:
    """One row per training video.

    frames[v]: uint8 ``[T_v, F*S*S]`` (memory-mapped from the store); targets[v]: float32 ``[T_v, K]``, the K
    teachers' snippet scores; labels, video: int64 ``[V]`` (``video`` is ``arange(V)``, as ``SegmentData``'s).
    ``truncated``: snippets cut from videos whose teachers and frames disagree on T (mixed sources). A map
    student's ``maps[v]``: float32 ``[T_v, K, rows * cols]``, the K teachers' anomaly maps on ``grid`` (cells
    row-major); None for the score-sequence student.
    """

    frames: list[np.ndarray]
    targets: list[torch.Tensor]
    labels: torch.Tensor
    video: torch.Tensor
    videos: list[VideoFeatures]
    window: int
    truncated: int = 0
    maps: list[torch.Tensor] | None = None
    grid: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def rows_of(self, video_indices: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(self.video.numpy(), video_indices))

    def input_dims(self) -> list[int]:
        return [int(self.frames[0].shape[-1])]

    def gather(self, rows: np.ndarray, positions: list[np.ndarray], device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``[R, W, F*S*S]`` (float, pixel values) and targets ``[R, W, K]`` at ``positions[i]`` of row i."""
        frames = np.stack([self.frames[r][p] for r, p in zip(rows, positions)])
        targets = torch.stack([self.targets[r][torch.from_numpy(p)] for r, p in zip(rows, positions)])
        x = torch.from_numpy(frames)
        if device.type == "cuda":
            x = x.pin_memory()
        return x.to(device, non_blocking=True).float(), targets.to(device)

    def gather_maps(self, rows: np.ndarray, positions: list[np.ndarray], device: torch.device) -> torch.Tensor:
        """A map student's target maps ``[R, W, K, rows * cols]`` at ``positions[i]`` of row i."""
        return torch.stack([self.maps[r][torch.from_numpy(p)] for r, p in zip(rows, positions)]).to(device)


def window_positions(length: int, window: int, start: int, *, stretch: bool = False) -> np.ndarray:
    """Snippet indices of a training window: ``window`` consecutive snippets from ``start``. A video shorter than
    the window is the whole video (``stretch`` False: the windows of a batch then differ in length and are
    trained a length at a time), or is stretched over the window, snippets repeated in order (``stretch``)."""
    if length >= window:
        return np.arange(start, start + window)
    if not stretch:
        return np.arange(length)
    return np.arange(window) * length // window


def augment(x: torch.Tensor, config: LightningConfig, adversarial: AdversarialConfig) -> torch.Tensor:
    """Training augmentation of windows ``[R, W, F*S*S]`` (float pixels), each window as a whole, drawn from
    torch's generator: a horizontal flip with probability 1/2 (``adversarial.flip``) and a translation by up to
    ``adversarial.shift`` pixels in each direction, wrapping around (``torch.roll``). The translation is what made
    the student generalise on UCSD Ped1 (test AUC 0.70 -> 0.80 at 200 steps, README): without it the network
    memorised where things are in the training clips."""
    return augment_with_maps(x, None, None, config, adversarial)[0]


def augment_with_maps(x: torch.Tensor, maps: torch.Tensor | None, grid: tuple[int, int] | None,
                      config: LightningConfig, adversarial: AdversarialConfig
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`augment` (the same draws), also moving a map student's target maps ``[R, W, K, rows * cols]`` on
    ``grid`` with their frames: flipped with them, and shifted by the same fraction of the frame, a shift of
    ``d`` pixels being ``d * rows / size`` cells (``d * cols / size`` across), fractional shifts linear between
    the two nearest whole-cell rolls (the frames' wrap-around included). ``maps`` None: returns (frames, None)."""
    frames = x.reshape(*x.shape[:2], config.frames, config.size, config.size)
    cells = None if maps is None else maps.reshape(*maps.shape[:3], *grid)
    if adversarial.flip:
        flip = torch.rand(len(x)) < 0.5
        frames = torch.where(flip.to(x.device)[:, None, None, None, None], frames.flip(-1), frames)
        if cells is not None:
            cells = torch.where(flip.to(x.device)[:, None, None, None, None], cells.flip(-1), cells)
    if adversarial.shift > 0:
        shifts = torch.randint(-adversarial.shift, adversarial.shift + 1, (len(x), 2))
        frames = torch.stack([torch.roll(f, (int(dy), int(dx)), dims=(-2, -1)) for f, (dy, dx) in zip(frames, shifts)])
        if cells is not None:
            cells = torch.stack([_shift_cells(c, float(dy) * grid[0] / config.size, float(dx) * grid[1] / config.size)
                                 for c, (dy, dx) in zip(cells, shifts)])
    return frames.reshape(x.shape), (None if cells is None else cells.reshape(maps.shape))


def _shift_cells(cells: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """``[..., rows, cols]`` rolled by ``dy`` rows and ``dx`` columns (fractions: linear between whole rolls)."""
    for shift, dim in ((dy, -2), (dx, -1)):
        whole = math.floor(shift)
        part = shift - whole
        rolled = torch.roll(cells, whole, dims=dim)
        cells = rolled if part == 0 else (1 - part) * rolled + part * torch.roll(cells, whole + 1, dims=dim)
    return cells


def spread_positions(length: int, count: int) -> np.ndarray:
    """``count`` snippet indices spread evenly over a video (the centres of ``count`` equal parts)."""
    return np.minimum(((np.arange(count) + 0.5) * length / count).astype(np.int64), length - 1)


def map_grid(teachers: list[LoadedRun]) -> tuple[int, int]:
    """The grid a map student learns its teachers' maps on: the first teacher's when every teacher is spatial
    (``LoadedRun.spatial``), else ``(1, 1)`` (the score-sequence student)."""
    if teachers and all(t.spatial for t in teachers):
        return teachers[0].grid
    return (1, 1)


@torch.no_grad()
def teacher_snippet_scores(teacher: LoadedRun, videos: list[VideoFeatures], device: torch.device,
                           precision: str, grid: tuple[int, int] | None = None
                           ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """A frozen teacher's float32 ``[T]`` scores of every snippet of each video, on its own stored features
    (evaluation's own scoring: full length, crops averaged), and with ``grid`` its anomaly maps float32
    ``[T, rows * cols]`` on ``grid`` (its own maps brought there by ``to_grid``; None without ``grid``)."""
    teacher.model.to(device).eval()
    scores, maps = [], []
    for vf in videos:  # a spatial teacher scores its cells (its snippet scores: the top-k cells')
        s, m, _ = score_video(teacher, vf, device, precision)
        scores.append(s)
        if grid is not None:  # [T, r, c] as a one-dimensional feature of r * c cells -> [T, rows * cols]
            cells = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)).reshape(len(m), -1, 1)
            maps.append(to_grid(cells, m.shape[1:], grid)[..., 0].numpy())
    teacher.model.cpu()
    return scores, (maps if grid is not None else None)


def build_snippet_windows(videos: list[VideoFeatures], teachers: list[LoadedRun],
                          teacher_videos: list[list[VideoFeatures]], *, window: int,
                          device: torch.device, precision: str,
                          grid: tuple[int, int] | None = None) -> SnippetWindows:
    """Open every video's low-resolution frames and score its snippets with every teacher (once: the teachers
    are frozen, so the targets are the same for every seed); with ``grid`` (a map student) also keep every
    teacher's maps on it."""
    scored = [teacher_snippet_scores(t, tv, device, precision, grid) for t, tv in zip(teachers, teacher_videos)]
    frames, targets, maps, truncated = [], [], [], 0
    for i, vf in enumerate(videos):
        pixels = vf.open(LOWRES)[:, 0]  # [T, F*S*S] uint8
        per_teacher = [s[i] for s, _ in scored]
        length = min(len(pixels), *(len(s) for s in per_teacher))
        truncated += max(len(pixels), *(len(s) for s in per_teacher)) - length
        frames.append(pixels[:length])
        targets.append(torch.from_numpy(np.stack([s[:length] for s in per_teacher], axis=1)))
        if grid is not None:
            maps.append(torch.from_numpy(np.stack([m[i][:length] for _, m in scored], axis=1)))  # [T, K, C]
    labels = torch.tensor([vf.entry.label for vf in videos], dtype=torch.int64)
    return SnippetWindows(frames, targets, labels, torch.arange(len(videos)), videos, window, truncated,
                          maps if grid is not None else None, None if grid is None else tuple(grid))


class LightningObjective:
    """The student and one discriminator per teacher, trained together: the loss is built so that one backward
    pass and one optimiser step update both players in their own direction (``models.lightning_student``)."""

    def __init__(self, model: nn.Module, data: SnippetWindows, config: RunConfig, device: torch.device,
                 precision: str):
        self.model, self.data, self.config, self.device, self.precision = model, data, config, device, precision
        n_teachers = data.targets[0].shape[1]
        # a map student's discriminators judge map sequences, the score-sequence student's score sequences
        make = make_map_discriminators if data.maps is not None else make_discriminators
        self.discriminators = make(n_teachers, config.lightning).to(device)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "discriminators": self.discriminators}

    def optimizer(self) -> torch.optim.Optimizer:
        """Adam for both players (a conv net trained from scratch against adversaries: Adagrad's decaying steps
        left it predicting a constant), at ``adversarial.lr`` with ``adversarial.betas``."""
        a = self.config.adversarial
        params = list(self.model.parameters()) + list(self.discriminators.parameters())
        return torch.optim.Adam(params, lr=a.lr, betas=(a.beta1, a.beta2),
                                weight_decay=self.config.train.weight_decay)

    def loss(self, anomalous: np.ndarray, normal: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        rows = np.concatenate([anomalous, normal])
        w = self.data.window
        stretch = self.config.train.stretch_short_videos
        # torch's generator, seeded by the loop per epoch, so a resumed run draws the same windows.
        positions = []
        for r in rows:
            length = len(self.data.frames[r])
            start = int(torch.randint(0, max(length - w, 0) + 1, ()).item())
            positions.append(window_positions(length, w, start, stretch=stretch))
        a = self.config.adversarial
        lengths = np.array([len(p) for p in positions])
        total, parts = None, {}
        for length in np.unique(lengths):  # windows of one length at a time (short videos are not stretched)
            group = np.flatnonzero(lengths == length)
            x, targets = self.data.gather(rows[group], [positions[i] for i in group], self.device)
            maps = None
            if self.data.maps is not None:
                maps = self.data.gather_maps(rows[group], [positions[i] for i in group], self.device)
            x, maps = augment_with_maps(x, maps, self.data.grid, self.config.lightning, a)
            with autocast(self.device, self.precision):
                out = self.model([x])
            if maps is None:
                loss, terms = adversarial_distillation_loss(out.head_scores, targets, self.discriminators,
                                                            regression=a.regression,
                                                            adversarial_weight=a.adversarial_weight)
            else:
                loss, terms = map_distillation_loss(out.head_maps, out.head_scores, maps, targets,
                                                    self.discriminators, self.data.grid, regression=a.regression,
                                                    adversarial_weight=a.adversarial_weight)
            share = len(group) / len(rows)
            total = loss * share if total is None else total + loss * share
            for name, value in terms.items():
                parts[name] = parts.get(name, 0.0) + value * share
        return total, parts

    @torch.no_grad()
    def validate(self, rows: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        """Scores ``[R, n]`` at ``n = train.n_segments`` snippets spread over each video (a cheap, deterministic
        stand-in for the full video), and the mean regression loss to the teachers there."""
        n = self.config.train.n_segments
        scores, total = [], 0.0
        for start in range(0, len(rows), VALIDATION_ROWS):
            chunk = rows[start:start + VALIDATION_ROWS]
            positions = [spread_positions(len(self.data.frames[r]), n) for r in chunk]
            x, targets = self.data.gather(chunk, positions, self.device)
            with autocast(self.device, self.precision):
                out = self.model([x])
            kind = self.config.adversarial.regression
            loss = regression_loss(out.head_scores.float().flatten(1), targets.flatten(1), kind=kind)
            if self.data.maps is not None:  # as the training regression: the maps' term and the scores'
                maps = self.data.gather_maps(chunk, positions, self.device)
                loss = loss + regression_loss(out.head_maps.float().flatten(1), maps.flatten(1), kind=kind)
            total += float(loss) * len(chunk)
            scores.append(out.scores.float().cpu())
        return torch.cat(scores), {"loss": total / max(len(rows), 1)}
