"""Import the community's pre-extracted features (RTFM / UR-DMU / XDVioDet / VadCLIP lists) into a feature store.

    python -m pipeline.import_features LIST [LIST ...] --backbone NAME --store DIR [--root DIR]
                                       [--source LABEL] [--force] [--quiet]

Each video of the lists becomes one ``[T, crops, D]`` float32 feature of backbone ``NAME``:

- video key ``hash_json({"imported_video": name})``: no video file exists, so the key comes from the name; the
  same name imported for other backbones joins the same video;
- extractor fingerprint ``hash_json({"backbone": NAME, "imported": True, "source": SOURCE})``, registered with
  these parameters. ``SOURCE`` is ``--source``, else the first list's file name without its extension and without
  the words train / training / test / testing (standing alone, or ``test`` / ``train`` glued to the end):
  ``ucf-i3d.list`` and ``ucf-i3d-test.list`` -> ``ucf-i3d``; VadCLIP's ``ucf_CLIP_rgb.csv`` and
  ``ucf_CLIP_rgbtest.csv`` -> ``ucf_CLIP_rgb``; UR-DMU's ``UCF_Train.list`` and ``UCF_Test.list`` -> ``UCF``;
  ``shanghai-i3d-test-10crop.list`` -> ``shanghai-i3d-10crop``; a list named by the split alone (``test.list``)
  takes its folder's name. So the train and the test list of one release, imported in one call or two, share a
  fingerprint, and the test videos are scored with the features the run was trained on. Stores imported before
  this rule (SOURCE = the list's file name, e.g. ``ucf-i3d.list``) keep their fingerprints: a list whose
  derived name matches such an earlier source joins it;
- every feature of a fingerprint must have the same crops and dim: a list that adds features of another shape
  to an existing source is refused (exit 2; two releases with the same list names need their own ``--source``);
- feature key ``feature_key(video_key, fingerprint)``; an existing feature is skipped unless ``--force``;
- ``store.record_name(name, video_key)`` so that datasets find the feature by the name in their lists.

A file that cannot be imported (missing, unreadable, wrong shape) is recorded as a failure of stage ``import``
and the rest continue; the exit status is then 1 and the failures are listed. ``--root`` is the folder holding
the downloaded files: the lists carry the authors' absolute paths, so files are looked up below it by file name.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from data.community_features import (CommunityFeature, FeatureFileError, load_community_feature,
                                     read_feature_list)
from pipeline.errors import UserError
from pipeline.keys import feature_key, hash_json
from pipeline.store import FeatureStore, NonFiniteFeature

STAGE = "import"
BACKBONE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # becomes a folder name in the store
# The split words a list's name drops to give its default source: standing alone between separators
# (ucf-i3d-test, UCF_Train), or test / train glued to the end of the name (VadCLIP's ucf_CLIP_rgbtest).
SPLIT_WORD = re.compile(r"(?:^|[-_. ]+)(?:training|testing|train|test)(?=[-_. ]|$)", re.IGNORECASE)
GLUED_SPLIT_WORD = re.compile(r"(?<=[a-z])(?:train|test)$", re.IGNORECASE)
NAME_SEPARATORS = "-_. "
UNNAMED_SOURCE = "imported"  # the default source when neither the list's name nor its folder says more


def imported_video_key(name: str) -> str:
    """Video key of an imported feature: from the video's name, since there is no video file to hash."""
    return hash_json({"imported_video": name})


def import_params(backbone: str, source: str) -> dict:
    """Extractor parameters of imported features; their hash is the fingerprint."""
    return {"backbone": backbone, "imported": True, "source": source}


def list_source(list_file: str | Path) -> str:
    """The default source of a list: its name without extension and split words (module docstring)."""
    path = Path(list_file)
    name = GLUED_SPLIT_WORD.sub("", SPLIT_WORD.sub("", path.stem)).strip(NAME_SEPARATORS)
    return name or path.absolute().parent.name or UNNAMED_SOURCE


def stored_shapes(store: FeatureStore, backbone: str) -> dict[str, set[tuple[int, int]]]:
    """fingerprint -> the (crops, dim) of its stored features, for every extraction of ``backbone``."""
    shapes: dict[str, set[tuple[int, int]]] = {}
    for row in store.features(backbone):
        if (record := store.get_feature(row["key"])) is not None:
            shapes.setdefault(record.fingerprint, set()).add((row["crops"], row["dim"]))
    return shapes


def default_source(store: FeatureStore, lists: Sequence[Path], fingerprints: Iterable[str]) -> str:
    """``list_source`` of the first list, unless the store holds an import made with the rule before (source =
    a list's file name) that derives to the same name: then that import's source, so that its features are
    joined rather than imported a second time under another fingerprint."""
    source = list_source(lists[0])
    earlier = {store.extractor_params(fp).get("source") for fp in fingerprints}
    if source in earlier:
        return source
    before = sorted(s for s in earlier if s and Path(s).suffix and list_source(s) == source)
    if Path(lists[0]).name in before:
        return Path(lists[0]).name
    return before[0] if len(before) == 1 else source


class ShapeMismatch(UserError):
    """A list would add features of another crops x dim to an existing source; the message names ``source``."""


@dataclass
class ImportOutcome:
    source: str
    fingerprint: str
    imported: int = 0
    existing: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (where, reason, fix)


def import_lists(store: FeatureStore, lists: Sequence[Path], backbone: str, *, root: Path | None = None,
                 source: str | None = None, force: bool = False, progress: bool = False) -> ImportOutcome:
    """Import every feature named by ``lists`` (in list order) into ``store`` as backbone ``backbone``. Raises
    ShapeMismatch before storing a feature whose crops x dim differ from those already under its fingerprint."""
    existing_shapes = stored_shapes(store, backbone)
    source = source or default_source(store, lists, existing_shapes)
    params = import_params(backbone, source)
    fingerprint = hash_json(params)
    store.register_extractor(fingerprint, backbone, params)
    shapes = existing_shapes.get(fingerprint, set())  # (crops, dim) of the source: one, once a feature is in
    outcome = ImportOutcome(source, fingerprint)

    def fail(exc: FeatureFileError) -> None:
        store.record_failure(exc.path, STAGE, f"{exc.where}: {exc.reason}", exc.fix)
        outcome.failures.append((exc.where, exc.reason, exc.fix))

    jobs: list[tuple[Path, CommunityFeature]] = []
    for list_file in lists:
        try:
            jobs += [(Path(list_file), f) for f in read_feature_list(list_file, root=root)]
        except FeatureFileError as exc:
            fail(exc)
    for list_file, feature in tqdm(jobs, desc=f"import {backbone}", unit="video", disable=not progress):
        video_key = imported_video_key(feature.name)
        key = feature_key(video_key, fingerprint)
        if not force and store.get_feature(key) is not None:
            outcome.existing += 1
        else:
            try:
                array = load_community_feature(feature)
            except FeatureFileError as exc:
                fail(exc)
                continue
            if shapes and array.shape[1:] not in shapes:
                raise ShapeMismatch(_mismatch_message(feature, array.shape[1:], shapes, backbone, source))
            shapes.add(array.shape[1:])
            store.record_name(feature.name, video_key, source=str(list_file))  # first: the feature's sidecar has it
            try:
                store.put_feature(key, video_key, backbone, fingerprint, array)
            except NonFiniteFeature as exc:
                fail(FeatureFileError(feature.files[0], exc.reason, exc.fix, where=feature.where()))
                continue
            outcome.imported += 1
        store.record_name(feature.name, video_key, source=str(list_file))
    return outcome


def _mismatch_message(feature: CommunityFeature, shape: tuple[int, int], shapes: set[tuple[int, int]],
                      backbone: str, source: str) -> str:
    have = " or ".join(f"{c} crops x {d}" for c, d in sorted(shapes))
    crops, dim = shape
    return (f"{feature.where()}: {feature.name} has {crops} crops x {dim} features, but the {backbone} features of "
            f"source {source!r} have {have}: they are another extraction. Import this list under its own source: "
            f"pass `source` {shlex.quote(f'{source}-{crops}x{dim}')} (any name not used yet)")
