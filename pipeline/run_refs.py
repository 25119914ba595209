"""Finding a run by reference without torch: the store it lives in, its folder from a key prefix or a path, and
the store's latest finished run of a stage. The commands resolve ``--store`` and the run references here first,
so a missing store or an unknown run key is named at once, before torch and the checkpoint are loaded
(:mod:`pipeline.runs` loads them and re-exports these names)."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import InputError, UserError
from pipeline.store import FeatureStore

CHECKPOINT_FILE = "checkpoint.pt"  # in a finished run's folder; its presence marks the run finished
MIN_PREFIX = 6  # shortest key prefix taken as a run reference (shorter ones match too many runs by chance)


class RunNotFound(UserError):
    """The run reference matches no finished run (or several); the message says what exists."""


def find_run_folder(store: FeatureStore, ref: str, stage: str | None = None) -> Path:
    """A run folder from a path (run folder or its checkpoint.pt) or a unique key prefix (at least
    :data:`MIN_PREFIX` characters). Raises :class:`RunNotFound` listing the store's finished runs."""
    path = Path(ref)
    if path.is_file() and path.name == CHECKPOINT_FILE:
        return path.parent
    if (path / CHECKPOINT_FILE).is_file():
        return path
    stages = [stage] if stage else [p.name for p in sorted((store.root / "runs").glob("*")) if p.is_dir()]
    matches = [folder for s in stages for folder in sorted((store.root / "runs" / s).glob(f"{ref}*"))
               if (folder / CHECKPOINT_FILE).is_file()] if len(ref) >= MIN_PREFIX else []
    if len(matches) == 1:
        return matches[0]
    finished = [f"{r['stage']} {r['key'][:12]}" for r in store.runs(stage) if r["status"] == "done"]
    what = "several runs" if matches else "no finished run"
    raise RunNotFound(f"{ref!r} matches {what} in {store.root} (give a run folder or a unique key prefix of "
                      f"{MIN_PREFIX}+ characters; dakd store {store.root} --runs lists them); finished runs: "
                      f"{', '.join(finished) or 'none'}")


def latest_run(store: FeatureStore, stage: str) -> str:
    """The key of the store's most recent finished run of ``stage`` (the default of ``--model``). Raises
    UserError when there is none."""
    done = [r for r in store.runs(stage) if r["status"] == "done"]
    if not done:
        raise UserError(f"{store.root} holds no finished {stage} run: pass --model RUN (a run key prefix or "
                        f"folder; dakd store {store.root} --runs lists them) or train one")
    return done[-1]["key"]


def open_run_store(path) -> FeatureStore:
    """The existing store a run is loaded from (never created). Raises InputError naming the flag to fix."""
    from pipeline.store import open_store

    try:
        return open_store(path, create=False)
    except UserError as exc:
        raise InputError(f"{exc} (pass the --store the run was trained in)") from exc
