"""Finding a run without torch, through the store's manifest (its ``runs`` table, :meth:`FeatureStore.runs`), the
one way every command finds one: :func:`find_run_folder` resolves a reference (a key prefix of
:data:`MIN_PREFIX`+ characters, or a run folder or its checkpoint.pt) and :func:`latest_run` names the store's
latest finished run of a stage (detect's and watch's default model). A run is *finished* when its row is ``done``
and its folder holds its checkpoint (:func:`finished_runs`). The commands resolve ``--store`` and the run
references here first, so a missing store or an unknown run key is named at once, before torch and the checkpoint
are loaded (:mod:`pipeline.runs` loads them and re-exports these names)."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import InputError, UserError
from pipeline.store import FeatureStore
from pipeline.store.layout import RUN_CHECKPOINT  # its presence (and a done row) marks a run finished

MIN_PREFIX = 6  # shortest key prefix taken as a run reference (shorter ones match too many runs by chance)


class RunNotFound(UserError):
    """The run reference matches no finished run (or several); the message says what exists."""


def finished_runs(store: FeatureStore, stage: str | None = None) -> list[dict]:
    """The manifest rows (:meth:`FeatureStore.runs`, oldest first) of the store's finished runs of ``stage`` (None:
    every stage): status ``done`` and a checkpoint in the run's folder."""
    return [r for r in store.runs(stage)
            if r["status"] == "done" and (store.root / r["folder"] / RUN_CHECKPOINT).is_file()]


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def find_run_folder(store: FeatureStore, ref: str, stage: str | None = None) -> Path:
    """The folder of the finished run (of ``stage``, None: any) that ``ref`` names in the store's manifest: a run
    folder (or its checkpoint.pt) or a unique key prefix of at least :data:`MIN_PREFIX` characters. Raises
    :class:`RunNotFound` listing the store's finished runs."""
    path = Path(ref)
    if path.name == RUN_CHECKPOINT and path.is_file():
        path = path.parent
    runs = finished_runs(store, stage)
    if path.is_dir():
        matches = [r for r in runs if _same_folder(store.root / r["folder"], path)]
    else:
        matches = [r for r in runs if r["key"].startswith(ref)] if len(ref) >= MIN_PREFIX else []
    if len(matches) == 1:
        return store.root / matches[0]["folder"]
    finished = [f"{r['stage']} {r['key'][:12]}" for r in runs]
    what = "several runs" if matches else "no finished run"
    where = f" among the {stage} runs" if stage else ""
    raise RunNotFound(f"{ref!r} matches {what}{where} in {store.root} (give a run folder of this store or a unique "
                      f"key prefix of {MIN_PREFIX}+ characters; dakd store {store.root} --runs lists them); finished "
                      f"runs: {', '.join(finished) or 'none'}")


def latest_run(store: FeatureStore, stage: str) -> str:
    """The key of the store's most recent finished run of ``stage`` (the default of ``run``). Raises
    :class:`RunNotFound` when there is none."""
    done = finished_runs(store, stage)
    if not done:
        raise RunNotFound(f"{store.root} holds no finished {stage} run: pass `run` (a run key prefix or "
                          f"folder; dakd store {store.root} --runs lists them) or train one")
    return done[-1]["key"]


def open_run_store(path) -> FeatureStore:
    """The existing store a run is loaded from (never created). Raises InputError naming the flag to fix."""
    from pipeline.store import open_store

    try:
        return open_store(path, create=False)
    except UserError as exc:
        raise InputError(f"{exc} (pass the `store` the run was trained in)") from exc
