"""Find a dataset's features in the store: dataset list names -> video keys -> one feature per backbone.

A name can have several candidates (self-extracted and imported, 1 and 10 crops, ...); a damaged feature file is
no candidate (``FeatureStore.get_feature`` checks each file's header and size and names a damaged one), so it is
reported missing, with the extract command that recomputes it. Every video of a
dataset must use the same extractor settings for a backbone, so one fingerprint is chosen per backbone: the one
the user names (``--fingerprint BACKBONE=PREFIX``), else the one that covers the most videos; a tie is an error
that lists the candidates.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from data.datasets import DATASETS, VideoEntry
from data.layout import ALIAS_SEP, name_matches
from pipeline.errors import UserError
from pipeline.keys import feature_key
from pipeline.store import FeatureRecord, FeatureStore


class FeatureLookupError(UserError):
    """The store cannot give a consistent feature set; the message says what to pass."""


@dataclass
class VideoFeatures:
    entry: VideoEntry
    records: dict[str, FeatureRecord]  # backbone -> its feature record

    def load(self, backbone: str) -> np.ndarray:
        """float32 ``[T, crops, D]``, checked (header, size, finite values: :meth:`FeatureRecord.read`). A grid
        feature gives its global feature, the mean of its cells, ``[T, 1, D]``: one grid extraction serves the
        global models too. Raises DamagedFeature, naming the video, backbone and file, rather than hand damaged
        values to training or scoring."""
        array = self.records[backbone].read()
        if self.records[backbone].grid is not None:
            return array.mean(axis=1, keepdims=True, dtype=np.float32)
        return array.astype(np.float32, copy=False)

    def grid(self, backbone: str) -> tuple[int, int]:
        """(rows, cols) of the backbone's feature grid: ``(1, 1)`` for a global feature."""
        return self.records[backbone].grid or (1, 1)

    def load_cells(self, backbone: str) -> np.ndarray:
        """float32 ``[T, cells, D]``, the cells of :meth:`grid` row-major, checked like :meth:`load`. A global
        feature is a 1 x 1 grid: its crops averaged, ``[T, 1, D]``, so that imported community features (global
        only) train and score every spatial model too."""
        record = self.records[backbone]
        array = record.read()
        if record.grid is None:
            return array.mean(axis=1, keepdims=True, dtype=np.float32)
        return array.astype(np.float32, copy=False)

    def open(self, backbone: str) -> np.ndarray:
        """The stored array ``[T, crops, D]`` in its stored dtype, memory-mapped (read-only): for inputs too large
        to hold for a whole dataset, such as the lightning student's low-resolution frames. Checked at open: header
        and size; finite values once, a chunk at a time, for float files (integer files such as lowres' uint8
        cannot hold NaN or inf). Raises DamagedFeature."""
        return self.records[backbone].read(mmap=True)


@dataclass
class FeatureSet:
    found: list[VideoFeatures] = field(default_factory=list)  # in the order of the entries asked for
    missing: list[tuple[VideoEntry, list[str]]] = field(default_factory=list)  # entry, backbones without features
    fingerprints: dict[str, str] = field(default_factory=dict)  # backbone -> chosen fingerprint

    def keys(self) -> list[str]:
        """Every feature key used, in order: what a run key is made of."""
        return [vf.records[b].key for vf in self.found for b in sorted(vf.records)]


def extraction_candidates(store: FeatureStore, video: VideoEntry | str, backbone: str) -> dict[str, FeatureRecord]:
    """fingerprint -> the most recent record of ``video`` for it. ``video``: a dataset entry, looked up by its
    name and then by its aliases, the first under which the store holds features of ``backbone`` (UCSD's
    ``Train001`` is stored as ``train_01`` when extracted from a converted ``train_01.mp4``); or a bare name."""
    names = (video,) if isinstance(video, str) else (video.name, *video.aliases)
    for name in names:
        found: dict[str, FeatureRecord] = {}
        for video_key in _video_keys(store, name):  # most recently seen first
            for record in store.features_of_video(video_key, backbone):
                found.setdefault(record.fingerprint, record)
        if found:
            return found
    return {}


def _video_keys(store: FeatureStore, name: str) -> list[str]:
    """Video keys stored under ``name``. A name with folders (``testing_videos/01``) keeps the keys stored under
    its last part whose video was read from such folders (:func:`data.layout.name_matches`)."""
    base = name.rsplit(ALIAS_SEP, 1)[-1]
    keys = store.video_keys_for(base)
    if base == name:
        return keys
    return [k for k in keys if (info := store.video(k)) is not None and name_matches(info["first_path"], name)]


DESCRIBED = ("source", "imported", "crops", "dim", "weights", "dtype", "version", "decode")  # tells them apart


def _flat(params: dict, prefix: str = "") -> dict:
    """Nested extractor parameters as one level with dotted keys (``{"decode": {"short_side": 64}}`` ->
    ``{"decode.short_side": 64}``), so that one differing field of a nested entry can be named."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def describe_extraction(store: FeatureStore, fingerprint: str, among: list[str] | tuple[str, ...] = ()) -> str:
    """One extraction in a message: its fingerprint prefix and what tells it apart from the others (the import
    source, crops, feature dim, weights, ...). Imported features' parameters name no crops or dim: those are read
    from the stored features.

    among: the other candidates of the same message (this one may be in it). Then every parameter whose value
    differs between them is shown too, nested ones by dotted key (``"decode.short_side": 64``; null: the
    parameter is absent from this one), so that two candidates never read the same; the ``DESCRIBED`` entries
    that are dicts (``decode``) are shown only by their differing fields."""
    params = store.extractor_params(fingerprint)
    keep = {k: params[k] for k in DESCRIBED if k in params}
    shapes = {(r["crops"], r["dim"]) for r in store.features(params.get("backbone"))
              if r["key"] == feature_key(r["video_key"], fingerprint)}
    for axis, name in enumerate(("crops", "dim")):
        values = sorted({shape[axis] for shape in shapes})
        if values and name not in keep:
            keep[name] = values[0] if len(values) == 1 else values
    others = [fp for fp in among if fp != fingerprint]
    if others:
        keep = {k: v for k, v in keep.items() if not isinstance(v, dict)}
        mine = _flat(params)
        theirs = [_flat(store.extractor_params(fp)) for fp in others]
        for key in sorted(set(mine).union(*theirs)):
            if any(other.get(key) != mine.get(key) for other in theirs):
                keep[key] = mine.get(key)
    return f"{fingerprint[:12]} {json.dumps(keep, sort_keys=True)}"


def describe_candidates(store: FeatureStore, coverage: Counter) -> str:
    """``describe_extraction (N videos); ...`` for every candidate of ``coverage`` (fingerprint -> videos), most
    videos first, each showing what differs from the others ("none" when there are none)."""
    among = list(coverage)
    return "; ".join(f"{describe_extraction(store, fp, among)} ({n} videos)"
                     for fp, n in coverage.most_common()) or "none"


def resolve_features(store: FeatureStore, entries: list[VideoEntry], backbones: tuple[str, ...],
                     fingerprints: dict[str, str] | None = None) -> FeatureSet:
    """Features of ``entries`` for every backbone. ``fingerprints``: backbone -> fingerprint prefix to use."""
    fingerprints = fingerprints or {}
    candidates = {b: [extraction_candidates(store, e, b) for e in entries] for b in backbones}
    chosen: dict[str, str] = {}
    for b in backbones:
        coverage = Counter(fp for per_entry in candidates[b] for fp in per_entry)
        if b in fingerprints:
            matches = [fp for fp in coverage if fp.startswith(fingerprints[b])]
            if len(matches) != 1:
                raise FeatureLookupError(
                    f"`fingerprints` {b}={fingerprints[b]} matches {len(matches)} of the {len(coverage)} {b} "
                    f"extractions of these videos: {describe_candidates(store, coverage)}; pass a prefix of one of "
                    f"them")
            chosen[b] = matches[0]
            continue
        if not coverage:
            continue  # every video will be reported missing for this backbone
        ranked = coverage.most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            raise FeatureLookupError(
                f"the store holds {len(ranked)} {b} extractions covering these videos equally; choose one with "
                f"`fingerprints` {b}=PREFIX: {describe_candidates(store, coverage)}")
        chosen[b] = ranked[0][0]

    result = FeatureSet(fingerprints=chosen)
    for i, entry in enumerate(entries):
        records = {b: candidates[b][i][chosen[b]] for b in backbones if b in chosen and chosen[b] in candidates[b][i]}
        absent = [b for b in backbones if b not in records]
        if absent:
            result.missing.append((entry, absent))
        else:
            result.found.append(VideoFeatures(entry, records))
    return result


def missing_message(feature_set: FeatureSet, dataset: str, store: FeatureStore, limit: int = 10) -> str:
    """A user-facing account of missing features, with the fix."""
    shown = ", ".join(f"{e.name} ({','.join(bs)})" for e, bs in feature_set.missing[:limit])
    more = f" and {len(feature_set.missing) - limit} more" if len(feature_set.missing) > limit else ""
    how = f"ROOT --dataset {dataset}" if dataset in DATASETS else "VIDEOS"
    backbones = ",".join(sorted({b for _, bs in feature_set.missing for b in bs}))
    return (f"{len(feature_set.missing)} {dataset} videos have no features in {store.root}: {shown}{more}. "
            f"Extract them (dakd extract {how} --backbones {backbones} --store {store.root}) or import "
            f"the community's features (dakd import LIST --backbone NAME --store "
            f"{store.root}); `allow_missing` trains or evaluates on the videos that are there")
