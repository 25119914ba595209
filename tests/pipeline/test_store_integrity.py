"""A store never uses damaged data (issue 12, deliverables 1 and 2): what is recorded at write, the cheap check on
every read (header, shape, dtype, size), finite values on load, ``--verify``'s hashes, a backbone's NaN as a failure
of its video, schema 1 stores, and ``--repair`` of a damaged manifest named by every stage. Real stores through the
CLIs: lowres features of real videos (no weights), imported float features, EfficientNet-Lite0 runs."""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from store_stages import EXTRACT, copy_store, every_stage, small_store, write_videos

from extractors.base import Backbone
from pipeline.cli import extract, import_features, train
from pipeline.cli import store as store_command
from pipeline.features import VideoFeatures
from pipeline.store import SCHEMA_VERSION, DamagedFeature, FeatureStore, NonFiniteFeature

LOWRES = ["--backbones", "lowres", "--quiet"]
FEATURE_COLUMNS = "key, video_key, backbone, fingerprint, file, n_snippets, crops, dim, dtype, nbytes, hash"
ALL_STAGES = ("store", "extract", "import_features", "train", "evaluate", "detect", "export", "grid")


def _lowres_store(tmp_path: Path, n: int = 3) -> tuple[Path, Path]:
    videos = tmp_path / "in"
    write_videos(videos, [f"v{i}" for i in range(n)], frames=32)
    store = tmp_path / "store"
    assert extract.main([str(videos), "--store", str(store), *LOWRES]) == 0
    return videos, store


def _rows(store: Path, table: str = "features", columns: str = FEATURE_COLUMNS) -> list[tuple]:
    with sqlite3.connect(store / "manifest.sqlite") as conn:
        return conn.execute(f"SELECT {columns} FROM {table} ORDER BY 1").fetchall()


def _one_file(store: Path, backbone: str = "lowres") -> tuple[dict, Path]:
    row = sorted(FeatureStore(store).features(backbone), key=lambda r: r["first_path"] or "")[0]
    return row, store / row["file"]


# -- what a write records ------------------------------------------------------------------------------------------
def test_a_write_records_shape_dtype_size_and_hash_in_the_row_and_the_sidecar(tmp_path):
    store = FeatureStore(tmp_path / "s")
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    path = store.put_feature("ab" * 32, "vid", "i3d", "fp", array)
    data = path.read_bytes()
    digest = "blake2b:" + hashlib.blake2b(data, digest_size=16).hexdigest()
    (row,) = _rows(tmp_path / "s")
    assert row[5:] == (2, 3, 4, "float32", len(data), digest)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["shape"] == [2, 3, 4] and sidecar["feature"]["hash"] == digest
    assert sidecar["feature"]["nbytes"] == len(data) and sidecar["feature"]["fingerprint"] == "fp"
    np.testing.assert_array_equal(np.load(path), array)  # a plain .npy, byte for byte what np.save writes


# -- the cheap check on every read ---------------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1000])


def _garble_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[10:40] = (b"\x80\x04garbled-pickle-like-bytes" + b"!" * 30)[:30]  # the size stays right
    path.write_bytes(bytes(data))


DAMAGE = {"truncated": (_truncate, "truncated"), "garbled header": (_garble_header, "not a readable .npy header"),
          "deleted": (Path.unlink, "the file is missing")}


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_feature_file_is_a_named_miss_that_extract_recomputes(tmp_path, capsys, caplog, kind):
    videos, store = _lowres_store(tmp_path)
    row, path = _one_file(store)
    original = path.read_bytes()
    damage, reason = DAMAGE[kind]
    damage(path)
    capsys.readouterr()
    with caplog.at_level(logging.WARNING, logger="pipeline.store"):
        assert extract.main([str(videos), "--store", str(store), *LOWRES]) == 0
    assert "1 extracted, 2 cached, 0 failed" in capsys.readouterr().out
    warning = caplog.text
    assert f"the lowres feature of {row['first_path']} ({path}) is damaged (" in warning and reason in warning
    assert "pickle" not in warning.lower().replace("pickle-like", "")
    assert path.read_bytes() == original  # recomputed, byte for byte
    failures = FeatureStore(store).failures()
    assert [f["path"] for f in failures] == [str(path)] and reason in failures[0]["reason"]
    assert store_command.main([str(store), "--verify", "--quiet"]) == 0


def test_listing_names_a_damaged_file(tmp_path, capsys):
    _, store = _lowres_store(tmp_path)
    _, path = _one_file(store)
    _truncate(path)
    assert store_command.main([str(store)]) == 1
    captured = capsys.readouterr()
    assert f"{path.relative_to(store)}  DAMAGED (" in captured.out
    assert "1 feature files are damaged" in captured.err


def test_a_truncated_feature_is_not_counted_as_cached_by_import(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.random.default_rng(0).standard_normal((5, 1, 8)).astype(np.float32))
    listing = tmp_path / "i3d.list"
    listing.write_text(f"{tmp_path / 'a.npy'}\n")
    store = tmp_path / "store"
    assert import_features.main([str(listing), "--backbone", "i3d", "--store", str(store), "--quiet"]) == 0
    _, path = _one_file(store, "i3d")
    original = path.read_bytes()
    _truncate(path)
    assert import_features.main([str(listing), "--backbone", "i3d", "--store", str(store), "--quiet"]) == 0
    assert "1 imported, 0 already there" in capsys.readouterr().out
    assert path.read_bytes() == original


def test_a_spurious_systemerror_from_the_header_parser_is_retried_never_called_damage(tmp_path, monkeypatch):
    """CPython 3.11's AST constructor can raise "AST constructor recursion depth mismatch" when two threads parse at
    once (numpy parses .npy headers with ast.literal_eval): CI once saw a sound feature marked damaged and
    re-extracted. Here every other parse fails as the bug does, in the cheap check and in np.load alike."""
    store = FeatureStore(tmp_path / "s")
    array = np.ones((2, 3, 4), dtype=np.float32)
    store.put_feature("ab" * 32, "vid", "i3d", "fp", array)
    literal_eval, calls = ast.literal_eval, []

    def flaky(text):
        calls.append(text)
        if len(calls) % 2:
            raise SystemError("AST constructor recursion depth mismatch (before=48, after=44)")
        return literal_eval(text)

    monkeypatch.setattr(ast, "literal_eval", flaky)
    record = store.get_feature("ab" * 32)  # the cheap check: not a miss
    assert record is not None and len(calls) == 2
    np.testing.assert_array_equal(record.read(), array)  # the check again, then np.load's own parse
    assert len(calls) == 6
    assert store.feature_damage("ab" * 32) is None and len(calls) == 8


def test_header_parses_from_several_threads_take_turns(tmp_path, monkeypatch):
    store = FeatureStore(tmp_path / "s")
    keys = [f"{i:02d}" * 32 for i in range(6)]
    for key in keys:
        store.put_feature(key, "vid" + key, "i3d", "fp", np.zeros((2, 3, 4), dtype=np.float32))
    parse, active, most = np.lib.format.read_array_header_1_0, [0], [0]

    def watched(f, *args, **kwargs):
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.005)  # long enough for another thread to enter if nothing stops it
        try:
            return parse(f, *args, **kwargs)
        finally:
            active[0] -= 1

    monkeypatch.setattr(np.lib.format, "read_array_header_1_0", watched)
    with ThreadPoolExecutor(max_workers=6) as pool:
        records = list(pool.map(lambda k: store.get_feature(k), keys * 3))
    assert all(r is not None for r in records)
    assert most[0] == 1


# -- values: never written non-finite, never read non-finite -------------------------------------------------------
def test_non_finite_features_are_never_written(tmp_path):
    store = FeatureStore(tmp_path / "s")
    for bad in (np.nan, np.inf):
        array = np.ones((3, 1, 4), np.float32)
        array[1, 0, 2] = bad
        with pytest.raises(NonFiniteFeature, match=r"the i3d backbone gave 1 NaN or inf values"):
            store.put_feature("ab" * 32, "vid", "i3d", "fp", array)
    assert store.features() == [] and not list((tmp_path / "s" / "features").rglob("*.npy"))


def test_a_backbone_giving_nan_fails_that_video_alone(tmp_path, capsys, monkeypatch):
    write_videos(tmp_path / "in", ["v0", "v1", "v2"], frames=16)
    real = Backbone.extract
    calls = []

    def nan_on_the_second_video(self, snippets):
        calls.append(1)
        out = real(self, snippets)
        return torch.full_like(out, float("nan")) if len(calls) == 2 else out

    monkeypatch.setattr(Backbone, "extract", nan_on_the_second_video)
    store = tmp_path / "store"
    assert extract.main([str(tmp_path / "in"), "--store", str(store), *EXTRACT, "--batch-size", "1"]) == 1
    captured = capsys.readouterr()
    assert "2 extracted, 0 cached, 1 failed" in captured.out
    assert f"FAILED {tmp_path / 'in' / 'v1.mkv'}: the effnet_lite0 backbone gave 1280 NaN or inf values" in captured.err
    assert sorted(Path(r["first_path"]).name for r in FeatureStore(store).features()) == ["v0.mkv", "v2.mkv"]


def _float_feature_store(tmp_path: Path) -> tuple[Path, Path, VideoFeatures]:
    np.save(tmp_path / "a.npy", np.random.default_rng(0).standard_normal((40, 1, 256)).astype(np.float32))
    listing = tmp_path / "i3d.list"
    listing.write_text(f"{tmp_path / 'a.npy'}\n")
    store = tmp_path / "store"
    assert import_features.main([str(listing), "--backbone", "i3d", "--store", str(store), "--quiet"]) == 0
    s = FeatureStore(store)
    (row,) = s.features("i3d")
    return store, listing, VideoFeatures(None, {"i3d": s.get_feature(row["key"])})


def _ff_bytes_inside(path: Path) -> None:
    """The issue's case: 4 KiB of 0xFF bytes inside a float feature (header and size intact: 1024 NaNs)."""
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(b"\xff" * 4096)


def test_0xff_bytes_inside_a_float_feature_are_caught_on_load_and_on_open(tmp_path):
    store, _, vf = _float_feature_store(tmp_path)
    _ff_bytes_inside(vf.records["i3d"].file)
    assert vf.records["i3d"].problem() is None  # the cheap check cannot see it: header and size are right
    for load in (vf.load, vf.open):
        with pytest.raises(DamagedFeature, match=r"the i3d feature of a \(.*a\w*\.npy\) is damaged \(1024 of its "
                                                 r"10240 values are NaN or inf"):
            load("i3d")
    assert FeatureStore(store).get_feature(vf.records["i3d"].key) is None  # marked: a miss from now on


def test_0xff_bytes_in_a_feature_stop_training_by_name_and_reimport_fixes_it(tmp_path, capsys):
    """The issue: train exited 0 and saved a run with train_loss_last NaN under the key a clean run gets."""
    from feature_sets import TINY_MODEL, feature_store

    store, labels = feature_store(tmp_path, dims={"i3d": 64}, signal={"i3d": 2.0}, n_train=(4, 4), n_test=(1, 1),
                                  snippets=(70, 80))
    args = ["teacher", "--store", str(store), "--dataset", str(labels), "--backbones", "i3d", "--quiet",
            "--epochs", "1", "--set", "train.val_fraction=0", *TINY_MODEL]
    row = next(r for r in FeatureStore(store).features("i3d") if r["n_snippets"] * 64 * 4 > 8192)
    _ff_bytes_inside(store / row["file"])
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert f"({store / row['file']}) is damaged (1024 of its" in err and "import it again" in err
    assert FeatureStore(store).runs() == []  # no run saved, none left running
    lists = tmp_path / "features" / "i3d.list"
    assert import_features.main([str(lists), "--backbone", "i3d", "--store", str(store), "--quiet"]) == 0
    assert "1 imported" in capsys.readouterr().out
    assert train.main(args) == 0
    (run,) = FeatureStore(store).runs("teacher")
    assert np.isfinite(json.loads(run["summary"])["train_loss_last"])


def test_integer_features_need_no_value_check_on_open(tmp_path, monkeypatch):
    _, store = _lowres_store(tmp_path, n=1)
    s = FeatureStore(store)
    (row,) = s.features()
    vf = VideoFeatures(None, {"lowres": s.get_feature(row["key"])})
    monkeypatch.setattr(np, "isfinite", lambda *a: pytest.fail("a uint8 file cannot hold NaN: nothing to check"))
    assert vf.open("lowres").dtype == np.uint8


# -- --verify: the hashes -------------------------------------------------------------------------------------------
def test_verify_finds_damage_the_cheap_check_cannot_see_and_extract_recomputes_it(tmp_path, capsys):
    videos, store = _lowres_store(tmp_path)
    row, path = _one_file(store)
    original = path.read_bytes()
    with open(path, "r+b") as f:  # uint8 grey levels: still finite, header and size intact
        f.seek(1000)
        f.write(bytes(255 - b for b in original[1000:1100]))
    assert FeatureStore(store).get_feature(row["key"]) is not None  # only the hash tells
    assert store_command.main([str(store), "--verify", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert f"DAMAGED lowres        {row['first_path']}  {path}: its content hash" in captured.err
    assert "3 feature files checked, 1 damaged" in captured.out and "extract it again" in captured.err
    assert extract.main([str(videos), "--store", str(store), *LOWRES]) == 0
    assert "1 extracted, 2 cached" in capsys.readouterr().out
    assert path.read_bytes() == original
    assert store_command.main([str(store), "--verify", "--quiet"]) == 0


def test_verify_of_a_file_restored_by_hand_clears_its_mark(tmp_path):
    _, store = _lowres_store(tmp_path, n=1)
    row, path = _one_file(store)
    original = path.read_bytes()
    _truncate(path)
    assert store_command.main([str(store), "--verify", "--quiet"]) == 1
    path.write_bytes(original)
    assert store_command.main([str(store), "--verify", "--quiet"]) == 0
    assert FeatureStore(store).get_feature(row["key"]) is not None


V1_FEATURES = """CREATE TABLE features (
    key TEXT PRIMARY KEY, video_key TEXT NOT NULL, backbone TEXT NOT NULL, fingerprint TEXT NOT NULL,
    file TEXT NOT NULL, n_snippets INTEGER NOT NULL, crops INTEGER NOT NULL, dim INTEGER NOT NULL,
    dtype TEXT NOT NULL, created_at REAL NOT NULL)"""


def test_a_schema_1_store_is_migrated_checked_and_hashed_by_verify(tmp_path, capsys):
    """A store written before integrity columns: readable (read-only too), its files checked from their headers,
    and ``--verify`` records the hashes once it has checked their values."""
    root = tmp_path / "old"
    (root / "features" / "i3d" / "ab").mkdir(parents=True)
    arrays = {"ab" * 32: np.ones((3, 1, 4), np.float32), "ab" + "c" * 62: np.ones((2, 1, 4), np.float32)}
    arrays["ab" + "c" * 62][0, 0, 0] = np.nan  # written by an older version that did not refuse it
    with sqlite3.connect(root / "manifest.sqlite") as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute(V1_FEATURES)
        for key, array in arrays.items():
            np.save(root / "features" / "i3d" / "ab" / f"{key}.npy", array)
            conn.execute("INSERT INTO features VALUES (?, 'vid', 'i3d', 'fp', ?, ?, 1, 4, 'float32', 0)",
                         (key, f"features/i3d/ab/{key}.npy", len(array)))
    conn.close()
    store = FeatureStore(root)
    version = store._conn().execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()[0]
    assert version == str(SCHEMA_VERSION)
    assert store.get_feature("ab" * 32).hash is None  # not hashed until --verify
    _truncate_to = root / "features" / "i3d" / "ab" / f"{'ab' * 32}.npy"
    assert store.get_feature("ab" * 32).problem() is None
    assert store_command.main([str(root), "--verify", "--quiet"]) == 1  # the NaN file: named
    captured = capsys.readouterr()
    assert "2 feature files checked, 1 damaged; 1 hashes recorded" in captured.out
    assert "1 of its values are NaN or inf" in captured.err
    assert FeatureStore(root).get_feature("ab" * 32).hash.startswith("blake2b:")
    data = _truncate_to.read_bytes()
    _truncate_to.write_bytes(data[:-4])
    assert FeatureStore(root).get_feature("ab" * 32) is None


# -- a damaged manifest: named by every stage, rebuilt by --repair -------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return small_store(tmp_path_factory.mktemp("integrity"))


def _truncate_manifest(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


MANIFEST_DAMAGE = {
    "truncated": (_truncate_manifest, "database disk image is malformed"),
    "random bytes": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(65536)), "not an SQLite database"),
    "zero bytes": (lambda p: p.write_bytes(b""), "it is empty: zero bytes"),
    "deleted": (Path.unlink, "it is missing, while"),
}
SNAPSHOT = {"features": FEATURE_COLUMNS, "videos": "*", "extractors": "*", "names": "name, video_key, source",
            "runs": "key, stage, dataset, backbones, seed, status, folder, summary"}


def _snapshot(store: Path) -> dict:
    return {table: _rows(store, table, columns) for table, columns in SNAPSHOT.items()}


def _checkpointed(store: Path) -> None:
    """Fold the write-ahead log into the manifest, so that damaging the file damages everything."""
    with sqlite3.connect(store / "manifest.sqlite") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.mark.parametrize("kind", MANIFEST_DAMAGE)
def test_a_damaged_manifest_is_named_by_every_stage_and_repair_rebuilds_it(built, tmp_path, capsys, kind):
    s = copy_store(built, tmp_path)
    _checkpointed(s.store)
    before = _snapshot(s.store)
    damage, why = MANIFEST_DAMAGE[kind]
    manifest = s.store / "manifest.sqlite"
    damage(manifest)
    damaged_bytes = manifest.read_bytes() if manifest.exists() else None
    for name, stage in every_stage(s, out=tmp_path).items():
        assert stage() == 2, name
        err = capsys.readouterr().err
        assert f"the store's manifest {manifest} is damaged ({why}" in err, (name, err)
        assert f"run dakd store {s.store} --repair" in err and "Traceback" not in err, name
    assert (manifest.read_bytes() if manifest.exists() else None) == damaged_bytes, "no stage may overwrite it"

    assert store_command.main([str(s.store), "--repair"]) == 0
    out = capsys.readouterr().out
    assert f"Rebuilt {manifest} from the store's files: 7 features, 2 runs" in out
    if kind != "deleted":
        (aside,) = s.store.glob("manifest.sqlite.damaged-*")
        assert aside.read_bytes() == damaged_bytes  # moved aside, not lost
    assert _snapshot(s.store) == before
    assert store_command.main([str(s.store), "--verify", "--quiet"]) == 0
    assert every_stage(s, out=tmp_path)["extract"]() == 0
    assert "0 extracted, 6 cached" in capsys.readouterr().out
    assert every_stage(s, out=tmp_path)["evaluate"]() == 0
    assert "(cached)" in capsys.readouterr().out


def test_repair_rebuilds_runs_recorded_before_run_json_from_their_files(built, tmp_path, capsys):
    s = copy_store(built, tmp_path)
    before = _snapshot(s.store)["runs"]
    for sidecar in s.store.glob("runs/*/*/run.json"):
        sidecar.unlink()
    (s.store / "manifest.sqlite").write_bytes(b"")
    assert store_command.main([str(s.store), "--repair"]) == 0
    after = _snapshot(s.store)["runs"]
    assert [r[:7] for r in after] == [r[:7] for r in before]  # key, stage, dataset, backbones, seed, status, folder
    teacher = next(r for r in after if r[1] == "teacher")
    assert json.loads(teacher[7])["train_loss_last"] == json.loads(before[[r[1] for r in before].index("teacher")][7])[
        "train_loss_last"]


def test_repair_leaves_a_sound_manifest_alone(built, tmp_path, capsys):
    s = copy_store(built, tmp_path)
    before = (s.store / "manifest.sqlite").read_bytes()
    assert store_command.main([str(s.store), "--repair"]) == 0
    assert "needs no repair" in capsys.readouterr().out
    assert (s.store / "manifest.sqlite").read_bytes() == before
    assert not list(s.store.glob("manifest.sqlite.damaged-*"))


def test_a_feature_whose_file_does_not_match_its_sidecar_is_not_reindexed(built, tmp_path, capsys):
    s = copy_store(built, tmp_path)
    row, path = _one_file(s.store, "effnet_lite0")
    _ff_bytes_inside(path)
    (s.store / "manifest.sqlite").write_bytes(b"")
    assert store_command.main([str(s.store), "--repair"]) == 0
    captured = capsys.readouterr()
    assert "6 features" in captured.out and f"NOT INDEXED {path}: its content hash" in captured.err
    assert FeatureStore(s.store).get_feature(row["key"]) is None
    assert every_stage(s, out=tmp_path)["extract"]() == 0  # recomputed
    assert "1 extracted, 5 cached" in capsys.readouterr().out


def test_detect_recomputes_a_truncated_feature_and_fails_a_nan_one_alone(built, tmp_path, capsys):
    """The issue: a damaged feature failed the intact video next to it too."""
    s = copy_store(built, tmp_path)
    files = {Path(r["first_path"]).stem: s.store / r["file"] for r in FeatureStore(s.store).features("effnet_lite0")}
    _truncate(files["v0"])
    _ff_bytes_inside(files["v1"])
    detect = every_stage(s, out=tmp_path)["detect"]
    assert detect() == 1
    captured = capsys.readouterr()
    assert "6 videos with teacher" in captured.out and "5 scored, 1 failed" in captured.out
    assert f"FAILED {s.videos / 'v1.mkv'}: " in captured.err and f"({files['v1']}) is damaged (" in captured.err
    assert "v0.mkv" not in captured.err  # truncated: a miss, recomputed on the way
    assert detect() == 0  # v1 was marked damaged: recomputed now
    assert "6 scored, 0 failed" in capsys.readouterr().out
    assert store_command.main([str(s.store), "--verify", "--quiet"]) == 0
