"""The dataset registry (data/datasets/registry.py) is the one table of the datasets known by name: a dataset added
to it is seen by load_dataset, discovery, the command line's choices and help and the train error, and taken out
again without a trace; every shipped row's split files exist and list what its loader loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from videos import encode, pattern_frames

from data.datasets import (ANOMALY_CLASS, DATASETS, NORMAL_CLASS, REGISTRY, SPLITS, DatasetRow, DatasetSpec,
                           VideoEntry, dataset_entries, load_dataset, register, registry, split_file, unregister)
from data.datasets.base import split_lines, splits_resource
from data.discover import find_videos
from data.layout import video_name
from pipeline.cli import commands as parsers

TOY = "toy-set"
TOY_FOLDER = "toyset"  # its official folder: discovery never takes a video below it for another dataset
TOY_DESCRIPTION = "a toy set: two anomalous and two normal clips"
TOY_TRAIN = ("anom_01", "norm_01")  # anomalous first, the canonical order of the shipped lists
TOY_TEST = ("anom_02", "norm_02")
ANOMALOUS_PREFIX = "anom_"


def _toy_loader(split_files: tuple[str, str]):
    """What a dataset module's ``load`` does: read the split lists, label each name (here by its prefix)."""

    def load() -> DatasetSpec:
        names = [(split, video_name(line)) for split, rel in zip(SPLITS, split_files) for _, line in split_lines(rel)]
        entries = [VideoEntry(name, int(name.startswith(ANOMALOUS_PREFIX)),
                              ANOMALY_CLASS if name.startswith(ANOMALOUS_PREFIX) else NORMAL_CLASS, split)
                   for split, name in names]
        return DatasetSpec(TOY, entries, str(Path(split_files[0]).parent))

    return load


@pytest.fixture
def toy_row(tmp_path):
    """A toy dataset's row: split lists in a tmp folder (absolute paths), real videos under ``root/toyset/``."""
    lists = tmp_path / "lists"
    lists.mkdir()
    files = []
    for split, names in zip(SPLITS, (TOY_TRAIN, TOY_TEST)):
        (lists / f"{split}.txt").write_text("".join(f"{n}.mp4\n" for n in names))
        files.append(str(lists / f"{split}.txt"))
    videos = tmp_path / "root" / TOY_FOLDER
    videos.mkdir(parents=True)
    for seed, name in enumerate(TOY_TRAIN + TOY_TEST + ("stray",)):  # stray: listed nowhere, never taken
        encode(videos / f"{name}.mp4", pattern_frames(4, 16, 16, seed=seed))
    row = DatasetRow(TOY, tuple(files), TOY_DESCRIPTION, _toy_loader(tuple(files)), folder=TOY_FOLDER)
    yield row
    REGISTRY.pop(TOY, None)  # a failed test leaves no registered toy behind


def _help(stage: str) -> str:
    return " ".join(parsers.stage_parser(stage).format_help().split())  # argparse wraps lines: compare words


def test_every_row_names_split_files_that_ship_and_list_what_it_loads():
    assert len(REGISTRY) == len(DATASETS) >= 6
    for row in REGISTRY.values():
        assert len(row.split_files) == len(SPLITS), row.name
        for rel in row.split_files:
            assert splits_resource(rel).is_file(), f"{row.name}: data/splits/{rel} does not ship"
            assert split_file(rel).strip(), f"{row.name}: data/splits/{rel} is empty"
        spec = row.load()
        assert spec.name == row.name
        listed = dataset_entries(row.name)  # what discovery looks for (UCF-Crime's loader reorders them)
        assert len(spec.entries) == len(listed) and {e.name for e in spec.entries} == set(listed), row.name
        assert row.description and "\n" not in row.description
        assert row.folder is None or row.folder == row.folder.lower()


def test_a_registered_dataset_is_seen_everywhere_and_unregistering_restores(toy_row, tmp_path):
    root = tmp_path / "root"
    names_before, help_before = tuple(DATASETS), _help("extract")
    early = parsers.stage_parser("extract")  # built before the dataset exists: its choices are read at parse time
    assert TOY not in DATASETS and TOY not in help_before
    with pytest.raises(ValueError, match="unknown dataset 'toy-set'"):
        load_dataset(TOY)
    with pytest.raises(SystemExit):
        early.parse_args([str(root), "--store", str(tmp_path / "s"), "--dataset", TOY])

    register(toy_row)
    assert tuple(DATASETS) == names_before + (TOY,)
    spec = load_dataset(TOY)
    assert [(e.name, e.label, e.split) for e in spec.entries] == [
        ("anom_01", 1, "train"), ("norm_01", 0, "train"), ("anom_02", 1, "test"), ("norm_02", 0, "test")]
    assert [e.name for e in load_dataset("Toy_Set").entries] == dataset_entries(TOY) == [e.name for e in spec.entries]
    found = find_videos([root], dataset=TOY)
    assert [p.name for p in found.videos] == [f"{n}.mp4" for n in TOY_TRAIN + TOY_TEST] and found.missing == []
    args = early.parse_args([str(root), "--store", str(tmp_path / "s"), "--dataset", TOY])
    assert args.dataset == TOY
    assert f"{TOY} ({TOY_DESCRIPTION})" in _help("extract")
    for stage in ("train", "grid"):
        assert f"avenue | {TOY} | a labels CSV" in _help(stage)
    dakd = parsers.dakd_parser().parse_args(["extract", str(root), "--store", "s", "--dataset", TOY])
    assert dakd.dataset == TOY
    # Its official folder: a UCSD Ped2 clip name below toyset/ is not taken for ucsd-ped2 while the toy is there.
    encode(root / TOY_FOLDER / "Train001.mp4", pattern_frames(4, 16, 16, seed=9))
    assert "Train001" in find_videos([root], dataset="ucsd-ped2").missing
    with pytest.raises(ValueError, match="already registered"):
        register(toy_row)

    assert unregister(TOY) is toy_row
    assert tuple(DATASETS) == names_before and _help("extract") == help_before
    assert "Train001" not in find_videos([root], dataset="ucsd-ped2").missing
    with pytest.raises(ValueError, match="unknown dataset 'toy-set'"):
        load_dataset(TOY)
    with pytest.raises(ValueError, match="unknown dataset 'toy-set'"):
        find_videos([root], dataset=TOY)
    with pytest.raises(SystemExit):
        early.parse_args([str(root), "--store", str(tmp_path / "s"), "--dataset", TOY])
    with pytest.raises(ValueError, match="unknown dataset 'toy-set'"):
        unregister(TOY)


def test_a_row_name_is_what_the_command_line_takes():
    load = REGISTRY["avenue"].load
    for bad in ("Toy_Set", "toy set", ""):
        with pytest.raises(ValueError, match="lower case with '-'"):
            DatasetRow(bad, ("avenue/train.txt", "avenue/test.txt"), "x", load)
    with pytest.raises(ValueError, match="split files"):
        DatasetRow("toy", (), "x", load)


def test_official_intervals_are_those_the_rows_ship():
    shipping = [row.name for row in REGISTRY.values() if row.intervals is not None]
    assert shipping == ["ucsd-ped1", "ucsd-ped2", "avenue"]
    for name in shipping:
        test = {e.name: e.intervals for e in load_dataset(name).split("test") if e.label}
        assert {n: v for n, v in registry.official_intervals(name).items() if n in test} == test
    with pytest.raises(ValueError, match="ship for ucsd-ped1, ucsd-ped2, avenue only"):
        registry.official_intervals("ucf-crime")


def test_the_train_error_names_every_registered_dataset(toy_row, tmp_path):
    from pipeline import api
    from pipeline.errors import UsageError
    from pipeline.store import FeatureStore

    store = tmp_path / "store"
    FeatureStore(store, create=True).close()
    register(toy_row)
    with pytest.raises(UsageError, match="`dataset` is required") as info:
        api.train("teacher", store=store)
    assert len(DATASETS) == 7
    for name in DATASETS:
        assert name in str(info.value)
    assert "a labels CSV" in str(info.value) and "a frame-label folder" in str(info.value)
