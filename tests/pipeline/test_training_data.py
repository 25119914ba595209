"""Validation split and the epoch schedule of method.md §6."""

import numpy as np
import pytest

from pipeline.train.data import epoch_batches, validation_split


def test_validation_split_is_stratified_and_reproducible():
    labels = np.array([1] * 40 + [0] * 60)
    train, val = validation_split(labels, 0.1, seed=3)
    assert len(val) == 10 and (labels[val] == 1).sum() == 4 and (labels[val] == 0).sum() == 6
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    np.testing.assert_array_equal(val, validation_split(labels, 0.1, seed=3)[1])
    assert not np.array_equal(val, validation_split(labels, 0.1, seed=4)[1])


def test_validation_split_keeps_one_video_of_each_label_for_training():
    labels = np.array([1, 0, 0])
    train, val = validation_split(labels, 0.5, seed=0)
    assert 0 in train and (labels[train] == 0).any()
    assert validation_split(labels, 0.0, seed=0)[1].size == 0


def test_epoch_passes_over_every_anomalous_video_once_with_normals_without_replacement():
    anomalous, normal = np.arange(0, 70), np.arange(100, 145)
    batches = epoch_batches(anomalous, normal, batch_anomalous=30, batch_normal=30, rng=np.random.default_rng(0))
    assert [len(a) for a, _ in batches] == [30, 30, 10]
    assert [len(n) for _, n in batches] == [30, 30, 10]
    assert sorted(np.concatenate([a for a, _ in batches]).tolist()) == anomalous.tolist()
    drawn = np.concatenate([n for _, n in batches])
    # 70 draws from 45 normals: the first 45 are a permutation, then a fresh shuffle
    assert sorted(drawn[:45].tolist()) == normal.tolist()
    assert len(set(drawn[45:].tolist())) == 25


def test_epoch_needs_both_labels():
    with pytest.raises(ValueError, match="anomalous and normal"):
        epoch_batches(np.arange(3), np.array([], dtype=int), batch_anomalous=2, batch_normal=2,
                      rng=np.random.default_rng(0))


def test_placement_of_the_training_set():
    import torch

    from pipeline.train.data import placement

    assert placement(10**12, torch.device("cpu")) == "host"
    assert placement(2**20, torch.device("cuda"), limit_bytes=2**30) == "device"  # one on-device gather a batch
    assert placement(2**31, torch.device("cuda"), limit_bytes=2**30) == "pinned"  # async copies from host
