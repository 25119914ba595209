"""References that every accuracy table of the benchmarks carries beside the trained models, on the same features.

- ``lr-video``: a logistic regression trained on every training snippet with its video's label (the weak labels):
  what any weakly supervised method must beat.
- ``lr-frame``: the same regression trained with the frame labels of the training videos (a snippet is anomalous
  when most of its 16 frames are): a fully supervised ceiling for a linear read-out of the global features. A
  ceiling near 0.5 says the features do not see the anomalies at all.
- ``cells-frame``: a ceiling for a linear read-out of the grid's cells: one linear scorer shared by every cell,
  a snippet's score the mean of its ``CELL_TOPK`` highest cells (or of all its cells), trained with the training
  videos' frame labels per snippet. Against ``lr-frame`` it says what keeping space can give at best.
- ``motion``: no learning: a snippet's score is a high percentile of the absolute differences of its consecutive
  64 x 64 grey frames (the ``lowres`` backbone's frames). What fast-moving objects alone give.

Scores are spread over the 16 frames of each snippet and measured as the evaluation does (pooled frame AUC, AP;
and the frame AUC of the scores smoothed over ``pipeline.defaults.SMOOTHING_SNIPPETS`` snippets, ``auc_smoothed``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

LR_C = 0.01  # inverse L2 strength of both logistic regressions (standardised features), chosen on UCSD's i3d
LR_MAX_ITER = 5000
MOTION_PERCENTILE = 99.9  # the motion reference: this percentile of a snippet's |frame differences|
FRAME_LABEL_THRESHOLD = 0.5  # a training snippet is anomalous for the ceiling when most of its 16 frames are
SNIPPET = 16
CELL_TOPK = 3  # the cells ceiling's snippet score: mean of this many highest cells
CELL_STEPS = 300  # full-batch Adam steps of the cells ceiling's linear scorer
CELL_LR = 1e-2
CELL_WEIGHT_DECAY = 1e-3
CELL_SEED = 0
# The localisation metrics reported per row with maps (keys of pipeline.evaluate.localization.localization_report)
LOCALIZATION = ("pointing_game", "pointing_game_chance", "pixel_auc", "rbdc", "tbdc")


def _row(name: str, what: str, gt: np.ndarray, snippet_scores: Sequence[np.ndarray]) -> dict:
    """A reference row from the test videos' snippet scores (``[T]`` each, in ``gt``'s order): the frame AUC and
    AP of the scores spread over their 16 frames, and of the same scores smoothed as the evaluation smooths
    (``auc_smoothed``, :data:`pipeline.defaults.SMOOTHING_SNIPPETS`)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from pipeline.defaults import SMOOTHING_SNIPPETS
    from pipeline.evaluate.metrics import smooth_snippet_scores

    def frames(per_video):
        return np.concatenate([np.repeat(s, SNIPPET) for s in per_video])

    scores = frames(snippet_scores)
    smooth = frames([smooth_snippet_scores(s, SMOOTHING_SNIPPETS) for s in snippet_scores])
    one = {"std": 0.0, "n": 1}
    return {"name": name, "group": "reference", "what": what,
            "auc": {"mean": float(roc_auc_score(gt, scores)), **one},
            "ap": {"mean": float(average_precision_score(gt, scores)), **one},
            "auc_smoothed": {"mean": float(roc_auc_score(gt, smooth)), **one}}


def linear_references(store, spec, fingerprints: dict[str, str], feature_sets: Sequence[tuple[str, ...]],
                      train_frame_labels: Callable) -> list[dict]:
    """The ``lr-video`` and ``lr-frame`` rows for each feature set (backbone names, concatenated).

    ``fingerprints``: backbone -> the extraction to read; ``train_frame_labels(found_video, n_snippets)``: uint8
    ``[16 * n_snippets]`` frame labels of a training video (for the ceiling); test ground truth is
    ``spec.frame_labels``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from pipeline.features import resolve_features

    rows = []
    for names in feature_sets:
        chosen = {b: fingerprints[b] for b in names}

        def snippets(split):
            found = resolve_features(store, spec.split(split), names, chosen).found
            return found, [np.concatenate([vf.load(b).mean(axis=1) for b in names], axis=1) for vf in found]

        train, x_train = snippets("train")
        test, x_test = snippets("test")
        scaler = StandardScaler().fit(np.concatenate(x_train))
        video_y = np.concatenate([[vf.entry.label] * len(x) for vf, x in zip(train, x_train)])
        frame_y = np.concatenate([train_frame_labels(vf, len(x)).reshape(-1, SNIPPET).mean(1) > FRAME_LABEL_THRESHOLD
                                  for vf, x in zip(train, x_train)]).astype(int)
        gt = np.concatenate([spec.frame_labels(vf.entry, len(x)) for vf, x in zip(test, x_test)])
        for kind, y in (("video labels", video_y), ("frame labels", frame_y)):
            clf = LogisticRegression(C=LR_C, max_iter=LR_MAX_ITER).fit(scaler.transform(np.concatenate(x_train)), y)
            scores = [clf.predict_proba(scaler.transform(x))[:, 1] for x in x_test]
            rows.append(_row(f"lr-{kind.split()[0]}-{'+'.join(names)}",
                             f"logistic regression, {kind}, {' + '.join(names)}", gt, scores))
    return rows


def cell_ceiling(store, spec, fingerprints: dict[str, str], names: tuple[str, ...],
                 train_frame_labels: Callable, pixel_masks: dict[str, np.ndarray] | None = None) -> list[dict]:
    """The ``cells-frame`` rows for one feature set: a linear scorer of standardised cells (backbones
    concatenated per cell on the first's grid), trained with snippet frame labels, the snippet score being the mean of
    all cells (``cells-mean``) or of the ``CELL_TOPK`` highest (``cells-top``). With ``pixel_masks`` (test video
    name -> bool ``[T, H, W]``) the ``cells-top`` row also carries the localisation of its cell maps (the
    sigmoid of each cell's score; :func:`pipeline.evaluate.localization.localization_report`): how well frame
    labels localise on these cells, a ceiling for the weakly trained maps."""
    import torch

    from models.spatial import to_grid
    from pipeline.evaluate.localization import localization_report
    from pipeline.features import resolve_features

    chosen = {b: fingerprints[b] for b in names}

    def cells(split):  # every backbone on the first's grid (models.spatial.to_grid), concatenated per cell
        found = resolve_features(store, spec.split(split), names, chosen).found
        return found, [np.concatenate([to_grid(torch.from_numpy(vf.load_cells(b)), vf.grid(b), vf.grid(names[0]))
                                       .numpy() for b in names], axis=2) for vf in found]  # [T, C, D]

    train, x_train = cells("train")
    test, x_test = cells("test")
    flat = np.concatenate([x.reshape(-1, x.shape[-1]) for x in x_train])
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    del flat
    y = torch.tensor(np.concatenate([train_frame_labels(vf, len(x)).reshape(-1, SNIPPET).mean(1)
                                     > FRAME_LABEL_THRESHOLD for vf, x in zip(train, x_train)]), dtype=torch.float32)
    xs = torch.tensor(np.concatenate([(x - mean) / std for x in x_train]), dtype=torch.float32)  # [S, C, D]
    test_labels = {vf.entry.name: spec.frame_labels(vf.entry, len(x)) for vf, x in zip(test, x_test)}
    gt = np.concatenate(list(test_labels.values()))
    x_test = [torch.tensor((x - mean) / std, dtype=torch.float32) for x in x_test]  # standardised once, [T, C, D]
    grid = test[0].grid(names[0])
    rows = []
    for pool, k in (("mean", None), ("top", CELL_TOPK)):
        torch.manual_seed(CELL_SEED)
        head = torch.nn.Linear(xs.shape[-1], 1)
        opt = torch.optim.Adam(head.parameters(), lr=CELL_LR, weight_decay=CELL_WEIGHT_DECAY)

        def pooled(cell, k=k):  # [S, C] cell scores -> [S] snippet scores
            return cell.mean(1) if k is None else cell.topk(min(k, cell.shape[1]), dim=1).values.mean(1)

        for _ in range(CELL_STEPS):
            loss = torch.nn.functional.binary_cross_entropy(pooled(torch.sigmoid(head(xs).squeeze(-1))), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            cell_maps = [torch.sigmoid(head(x).squeeze(-1)) for x in x_test]  # per video [T, C]
        scores = [pooled(c).numpy() for c in cell_maps]
        what = "all cells' mean" if k is None else f"mean of the {k} highest cells"
        rows.append(_row(f"cells-frame-{pool}-{'+'.join(names)}", f"linear cell scorer, frame labels, "
                         f"{' + '.join(names)} {grid[0]}x{grid[1]} cells, snippet = {what}", gt, scores))
        if k is not None and pixel_masks:
            maps = {vf.entry.name: c.numpy().reshape(len(c), *grid) for vf, c in zip(test, cell_maps)}
            report = localization_report(maps, pixel_masks, test_labels)
            rows[-1]["localization"] = {key: {"mean": report[key], "std": 0.0, "n": 1} for key in LOCALIZATION}
    return rows


def motion_reference(store, spec, fingerprint: str) -> dict:
    """No learning at all: a snippet's score is the MOTION_PERCENTILE-th percentile of the absolute differences
    of its consecutive 64 x 64 grey frames (the lightning student's input). What fast-moving objects alone give."""
    from extractors.lowres import lowres_frames
    from pipeline.features import resolve_features

    scores, gt = [], []
    for vf in resolve_features(store, spec.split("test"), ("lowres",), {"lowres": fingerprint}).found:
        frames = lowres_frames(vf.open("lowres")).astype(np.float32)  # [T, 8, 64, 64]
        motion = np.abs(np.diff(frames, axis=1)).reshape(len(frames), -1)
        scores.append(np.percentile(motion, MOTION_PERCENTILE, axis=1))
        gt.append(spec.frame_labels(vf.entry, len(frames)))
    return _row("motion", f"no learning: {MOTION_PERCENTILE}th percentile of |frame difference| of the 64x64 grey "
                "frames", np.concatenate(gt), scores)
