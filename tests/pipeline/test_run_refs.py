"""Finding a run (``pipeline.run_refs``): through the store's manifest only. A key prefix or a run folder resolves
to the manifest's folder of a finished run (``done`` and its checkpoint present), the latest run of a stage is the
manifest's, and what the manifest does not list (a folder copied in by hand, another store's run) is not found,
with a message listing the finished runs.

Resolution reads the manifest rows and whether each run folder holds ``checkpoint.pt``, never the checkpoint's
content, so the runs here are manifest rows made with the store's own ``record_run`` and checkpoint files written
as bytes; loading a real checkpoint is covered by the stage tests (test_train, test_detect, test_calibrate)."""

from __future__ import annotations

import pytest

from pipeline.store.layout import RUN_CHECKPOINT
from pipeline.run_refs import RunNotFound, find_run_folder, finished_runs, latest_run
from pipeline.store import FeatureStore

TEACHER = "abcdef" + "1" * 58
TEACHER_2 = "abcdef" + "2" * 58  # shares TEACHER's first 6 characters
STUDENT = "0123ab" + "3" * 58


def _run(store: FeatureStore, key: str, stage: str, *, status: str = "done", checkpoint: bool = True):
    folder = store.run_folder(stage, key)
    folder.mkdir(parents=True)
    if checkpoint:
        (folder / RUN_CHECKPOINT).write_bytes(b"checkpoint")
    store.record_run(key, stage, dataset="d", backbones="clip", seed=0, status=status)
    return folder


@pytest.fixture
def store(tmp_path):
    s = FeatureStore(tmp_path / "store", create=True)
    yield s
    s.close()


def test_a_key_prefix_or_a_run_folder_resolves_through_the_manifest(store):
    teacher = _run(store, TEACHER, "teacher")
    student = _run(store, STUDENT, "student")
    assert find_run_folder(store, TEACHER[:12]) == teacher
    assert find_run_folder(store, STUDENT[:6], "student") == student
    assert find_run_folder(store, str(teacher)) == teacher
    assert find_run_folder(store, str(student / RUN_CHECKPOINT)) == student
    with pytest.raises(RunNotFound, match=r"'0123a' matches no finished run .*6\+ characters"):
        find_run_folder(store, STUDENT[:5])  # too short to be a reference
    with pytest.raises(RunNotFound, match="matches no finished run among the teacher runs"):
        find_run_folder(store, STUDENT[:12], "teacher")
    with pytest.raises(RunNotFound, match="matches no finished run among the teacher runs"):
        find_run_folder(store, str(student), "teacher")


def test_an_ambiguous_prefix_names_several_runs_and_lists_them(store):
    _run(store, TEACHER, "teacher")
    _run(store, TEACHER_2, "teacher")
    with pytest.raises(RunNotFound, match="'abcdef' matches several runs") as raised:
        find_run_folder(store, "abcdef")
    assert f"teacher {TEACHER[:12]}" in str(raised.value) and f"teacher {TEACHER_2[:12]}" in str(raised.value)
    assert find_run_folder(store, TEACHER_2[:7]) == store.run_folder("teacher", TEACHER_2)


def test_what_the_manifest_does_not_list_as_finished_is_not_found(store, tmp_path):
    _run(store, TEACHER, "teacher", status="running")  # killed before its row said done
    _run(store, TEACHER_2, "teacher", checkpoint=False)  # done, but its checkpoint was deleted
    copied = store.run_folder("student", STUDENT)  # a run folder copied in by hand: on disk, not in the manifest
    copied.mkdir(parents=True)
    (copied / RUN_CHECKPOINT).write_bytes(b"checkpoint")
    other = FeatureStore(tmp_path / "other", create=True)
    elsewhere = _run(other, STUDENT, "student")  # a run of another store
    other.close()
    assert finished_runs(store) == []
    for ref in (TEACHER[:12], TEACHER_2[:12], STUDENT[:12], str(copied), str(elsewhere)):
        with pytest.raises(RunNotFound, match="matches no finished run .*finished runs: none"):
            find_run_folder(store, ref)
    with pytest.raises(RunNotFound, match="holds no finished student run"):
        latest_run(store, "student")


def test_the_latest_run_of_a_stage_is_the_manifests_most_recent_finished_one(store):
    _run(store, TEACHER, "teacher")
    _run(store, TEACHER_2, "teacher")
    _run(store, STUDENT, "student", checkpoint=False)
    assert latest_run(store, "teacher") == TEACHER_2
    with pytest.raises(RunNotFound, match=f"{store.root} holds no finished student run: pass `run`"):
        latest_run(store, "student")
