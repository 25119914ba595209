"""ShanghaiTech Campus in Zhong et al.'s weakly-supervised split (2019), ``shanghaitech``: 437 campus videos.

``train_order.txt`` (238, 63 anomalous first) and ``test_order.txt`` (199, 44 anomalous first). A video is
anomalous iff the official per-frame mask ``test_frame_mask/<name>.npy`` exists: the 107 masks are those of all
anomalous videos of the original ShanghaiTech test set, which Zhong et al. split into 63 train + 44 test videos
(they are also exactly the ``XX_XXXX`` ids; the normal ones are ``XX_XXX``). Test anomalous entries carry the mask
as ``mask_file``.
"""

from __future__ import annotations

from data.datasets.base import (ANOMALY_CLASS, NORMAL_CLASS, SPLITS, DatasetSpec, VideoEntry, check_unique,
                                split_lines, split_where, splits_resource)
from data.layout import video_name

NAME = "shanghaitech"
SH_DIR = "shanghaitech"
SH_TRAIN = f"{SH_DIR}/train_order.txt"
SH_TEST = f"{SH_DIR}/test_order.txt"
SPLIT_FILES = (SH_TRAIN, SH_TEST)
SH_MASK_DIR = f"{SH_DIR}/test_frame_mask"
SH_MASK_SUFFIX = ".npy"


def _masks() -> set[str]:
    folder = splits_resource(SH_MASK_DIR)
    return {p.name[:-len(SH_MASK_SUFFIX)] for p in folder.iterdir() if p.name.endswith(SH_MASK_SUFFIX)}


def load() -> DatasetSpec:
    """Zhong et al.'s split in list order; a video is anomalous iff its official frame mask ships."""
    masks = _masks()
    entries: list[VideoEntry] = []
    for split, rel in zip(SPLITS, SPLIT_FILES):
        for _, line in split_lines(rel):
            name = video_name(line)
            if name in masks:
                mask = f"{SH_MASK_DIR}/{name}{SH_MASK_SUFFIX}" if split == "test" else None
                entries.append(VideoEntry(name, 1, ANOMALY_CLASS, split, mask_file=mask))
            else:
                entries.append(VideoEntry(name, 0, NORMAL_CLASS, split))
    check_unique(entries, split_where(SH_DIR))
    return DatasetSpec(NAME, entries, split_where(SH_DIR))
