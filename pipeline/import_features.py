"""Import the community's pre-extracted features (RTFM / UR-DMU / XDVioDet / VadCLIP lists) into a feature store.

    python -m pipeline.import_features LIST [LIST ...] --backbone NAME --store DIR [--root DIR]
                                       [--source LABEL] [--force] [--quiet]

Each video of the lists becomes one ``[T, crops, D]`` float32 feature of backbone ``NAME``:

- video key ``hash_json({"imported_video": name})``: no video file exists, so the key comes from the name; the
  same name imported for other backbones joins the same video;
- extractor fingerprint ``hash_json({"backbone": NAME, "imported": True, "source": SOURCE})`` (``SOURCE``
  defaults to the first list's file name), registered with these parameters;
- feature key ``feature_key(video_key, fingerprint)``; an existing feature is skipped unless ``--force``;
- ``store.record_name(name, video_key)`` so that datasets find the feature by the name in their lists.

A file that cannot be imported (missing, unreadable, wrong shape) is recorded as a failure of stage ``import``
and the rest continue; the exit status is then 1 and the failures are listed. ``--root`` is the folder holding
the downloaded files: the lists carry the authors' absolute paths, so files are looked up below it by file name.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from data.community_features import (CommunityFeature, FeatureFileError, load_community_feature,
                                     read_feature_list)
from pipeline.keys import feature_key, hash_json
from pipeline.store import FeatureStore

STAGE = "import"
BACKBONE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # becomes a folder name in the store


def imported_video_key(name: str) -> str:
    """Video key of an imported feature: from the video's name, since there is no video file to hash."""
    return hash_json({"imported_video": name})


def import_params(backbone: str, source: str) -> dict:
    """Extractor parameters of imported features; their hash is the fingerprint."""
    return {"backbone": backbone, "imported": True, "source": source}


@dataclass
class ImportOutcome:
    imported: int = 0
    existing: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (where, reason, fix)


def import_lists(store: FeatureStore, lists: Sequence[Path], backbone: str, *, root: Path | None = None,
                 source: str | None = None, force: bool = False, progress: bool = False) -> ImportOutcome:
    """Import every feature named by ``lists`` (in list order) into ``store`` as backbone ``backbone``."""
    source = source or Path(lists[0]).name
    params = import_params(backbone, source)
    fingerprint = hash_json(params)
    store.register_extractor(fingerprint, backbone, params)
    outcome = ImportOutcome()

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
            store.put_feature(key, video_key, backbone, fingerprint, array)
            outcome.imported += 1
        store.record_name(feature.name, video_key, source=str(list_file))
    return outcome


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.import_features",
        description="Import pre-extracted community features (RTFM / UR-DMU / XDVioDet / VadCLIP .npy lists) into "
                    "a feature store, keyed by video name.")
    parser.add_argument("lists", nargs="+", metavar="LIST",
                        help="feature lists: one .npy path per line, or a VadCLIP 'path,label' CSV")
    parser.add_argument("--backbone", required=True,
                        help="backbone name to file the features under (e.g. i3d, clip); a folder name in the store")
    parser.add_argument("--store", required=True, help="feature store folder (created if missing)")
    parser.add_argument("--root", help="folder holding the downloaded .npy files; each listed file is looked up "
                                       "below it by file name (the lists carry the authors' paths)")
    parser.add_argument("--source", help="label of where the features came from; enters the fingerprint "
                                         "(default: the first list's file name)")
    parser.add_argument("--force", action="store_true", help="import again features that are already stored")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not BACKBONE_NAME.match(args.backbone):
        print(f"error: --backbone {args.backbone!r} must be letters, digits, '_', '.' or '-' (it names a folder "
              f"in the store), e.g. i3d", file=sys.stderr)
        return 2
    lists = [Path(p) for p in args.lists]
    missing = [str(p) for p in lists if not p.is_file()]
    if missing:
        print(f"error: feature list(s) not found: {', '.join(missing)} (pass the .list / .csv files that name "
              f"the .npy features)", file=sys.stderr)
        return 2
    root = Path(args.root) if args.root else None
    if root is not None and not root.is_dir():
        print(f"error: --root {root} is not a folder (pass the folder that holds the downloaded .npy files)",
              file=sys.stderr)
        return 2
    store = FeatureStore(args.store)
    start = time.perf_counter()
    outcome = import_lists(store, lists, args.backbone, root=root, source=args.source, force=args.force,
                           progress=not args.quiet)
    print(f"import: {outcome.imported} imported, {outcome.existing} already there, {len(outcome.failures)} failed "
          f"({args.backbone}, {len(lists)} list(s), {time.perf_counter() - start:.1f} s); store {args.store}")
    for where, reason, fix in outcome.failures:
        print(f"  FAILED {where}: {reason}" + (f" ({fix})" if fix else ""), file=sys.stderr)
    store.close()
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
