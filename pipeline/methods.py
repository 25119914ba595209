"""Every training method in one table (:data:`REGISTRY`): one :class:`MethodRow` per stage of ``dakd train``
(teacher, student, lanet, lightning) saying what the stage reads, builds, optimises and needs.

The config (the sections a stage saves and keys, its default backbones, its checks), the run (its network, its
attention heads), the training loop (its objective, its data, its teachers), live scoring (its window), the grid's
"methods" rows, ``pipeline.api.train`` and the ``train`` command's choices and help all read this table; nothing
else switches on a stage's name.

Adding a method is a network under ``models/`` with a builder ``build(config, input_dims, n_teachers) -> nn.Module``
and one row in :data:`_BUILT_IN`, or, at run time (a site's own method, a test), :func:`register` with a row and
:func:`unregister` to take it out again. The network maps a list of ``[N, L, D_b]`` tensors (one per backbone) to
an output with ``.scores`` ``[N, L]`` and ``.h`` ``[N, L, d]``; an objective over segments needs it to name its
``temporal_parameters()`` and ``other_parameters()`` (``pipeline.train.objectives.ModelObjective``).

Like ``extractors.registry``, this module imports neither torch nor any network or objective until one is built:
builders and objectives are ``"module:attribute"`` strings resolved on first use, so the command line lists the
stages and their default backbones without loading torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

LOWRES = "lowres"  # the lightning student's input: low-resolution grey frames from extractors.lowres

# What a method trains on (``data``): the stored features pooled into segments (pipeline.train.data), or windows of
# consecutive snippets' low-resolution frames with the teachers' scores (pipeline.train.lightning_student).
SEGMENTS = "segments"
FRAME_WINDOWS = "frame windows"
DATA_KINDS = (SEGMENTS, FRAME_WINDOWS)

# How many teacher runs a method distills (``teachers``): none; one, of the stage ``teacher_stage``, whose outputs on
# every training segment reach the objective (pipeline.train.objectives.TeacherTargets); or several, of any stage
# whose row ``teaches``.
NO_TEACHER, ONE_TEACHER, SEVERAL_TEACHERS = "none", "one", "several"
TEACHER_KINDS = (NO_TEACHER, ONE_TEACHER, SEVERAL_TEACHERS)

# The live window (``window``) of a model without attention over time: each snippet is scored from its own input.
# None in a row means the run's training sequence length, train.n_segments (pipeline.watch.scoring).
LIGHTNING_WINDOW = 1
# The learning rates a diverged run is told to lower: the train section's two Adagrad rates (method.md §6).
ADAGRAD_RATES = ("train.lr_temporal", "train.lr_other")


@dataclass(frozen=True)
class MethodRow:
    """One training method (a ``dakd train`` stage).

    ``sections``: the config sections it reads (``pipeline.config``): only these are saved and enter its run key;
    ``backbones``: its default backbones (``fixed_backbones``: always these, ``--backbones`` is not taken);
    ``single_backbone``: it takes exactly one; ``network``: ``"module:function"``, ``function(config, input_dims,
    n_teachers) -> nn.Module``; ``objective``: ``"module:Class"``, ``Class(model, data, config, device, precision)``
    (a one-teacher method's also gets the teacher's targets), see ``pipeline.train.objectives``; ``data``: one of
    :data:`DATA_KINDS`; ``teachers``: one of :data:`TEACHER_KINDS` (``teacher_stage``: the one teacher's stage);
    ``teaches``: whether its runs may teach a several-teacher method; ``heads``: its attention heads (what bounds
    scoring memory), ``"section.key"`` of the run's config or a number; ``window``: its default live window in
    snippets, None for the run's ``train.n_segments``; ``learning_rates``: the config keys a diverged run is told to
    lower; ``spatial``: on grid features (more than one cell) its network is wrapped in ``models.spatial.SpatialMIL``
    and it reads the ``spatial`` section, which is saved and keyed only then (a run on global features keeps the key
    it had before grids); ``maps``: a several-teacher method that distils its teachers' anomaly maps when every
    teacher is spatial and ``spatial.cells`` is ``auto`` (the lightning student, method.md §9): its run then records
    the first teacher's grid and reads the ``spatial`` section (saved and keyed only then, as a spatial run's).
    """

    name: str
    description: str
    sections: tuple[str, ...]
    backbones: tuple[str, ...]
    network: str
    objective: str
    heads: str | int = "model.n_heads"
    window: int | None = None
    data: str = SEGMENTS
    teachers: str = NO_TEACHER
    teacher_stage: str | None = None
    teaches: bool = True
    single_backbone: bool = False
    fixed_backbones: bool = False
    learning_rates: tuple[str, ...] = ADAGRAD_RATES
    spatial: bool = False
    maps: bool = False

    def __post_init__(self) -> None:
        checks = [(self.data in DATA_KINDS, f"data must be one of {DATA_KINDS}"),
                  (self.teachers in TEACHER_KINDS, f"teachers must be one of {TEACHER_KINDS}"),
                  ((self.teachers == ONE_TEACHER) == (self.teacher_stage is not None),
                   "teacher_stage names the stage of a one-teacher method's teacher, and only then"),
                  ("train" in self.sections, "every method reads the train section"),
                  (bool(self.backbones), "at least one default backbone"),
                  (":" in self.network and ":" in self.objective, "network and objective are 'module:attribute'")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"method {self.name!r}: {message}")

    def build_network(self, config, input_dims: list[int], n_teachers: int = 1):
        """The run's network (``torch.nn.Module``) from ``network``, imported now."""
        return resolve(self.network)(config, input_dims, n_teachers)

    def objective_class(self) -> Callable[..., Any]:
        """The objective's class from ``objective``, imported now."""
        return resolve(self.objective)

    def attention_heads(self, config) -> int:
        """Heads of a run's attention maps: ``heads`` read from the run's ``config`` (a ``RunConfig``)."""
        if isinstance(self.heads, int):
            return self.heads
        section, _, key = self.heads.partition(".")
        return int(getattr(getattr(config, section), key))

    def live_window(self, n_segments: int | None, fallback: int) -> int:
        """The live window: ``window``, else the run's ``n_segments``, else ``fallback`` (not recorded)."""
        return int(self.window or n_segments or fallback)


def resolve(reference: str) -> Any:
    """``"module:attribute"`` -> the attribute, its module imported now."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


_ADAGRAD = "pipeline.train.objectives"
_BUILT_IN = (
    MethodRow("teacher", "DAKD Teacher (TAM, MIL)", ("model", "train", "mil"), ("i3d", "s3d", "clip"),
              "pipeline.runs:vad_network", f"{_ADAGRAD}:TeacherObjective", spatial=True),
    MethodRow("student", "DAKD Student (bi-level distillation)", ("model", "train", "distill"), ("clip",),
              "pipeline.runs:vad_network", f"{_ADAGRAD}:StudentObjective", teachers=ONE_TEACHER,
              teacher_stage="teacher", single_backbone=True, spatial=True),
    MethodRow("lanet", "LA-Net + DDL", ("lanet", "train", "ddl"), ("i3d",), "pipeline.runs:lanet_network",
              f"{_ADAGRAD}:LANetObjective", heads="lanet.n_heads", spatial=True),
    MethodRow("lightning", "lightning student (adversarial, from several teachers)",
              ("lightning", "train", "adversarial"), (LOWRES,), "pipeline.runs:lightning_network",
              "pipeline.train.lightning_student:LightningObjective", heads=1, window=LIGHTNING_WINDOW,
              data=FRAME_WINDOWS, teachers=SEVERAL_TEACHERS, teaches=False, fixed_backbones=True,
              learning_rates=("adversarial.lr",), maps=True),
)

REGISTRY: dict[str, MethodRow] = {row.name: row for row in _BUILT_IN}  # in the order of the help


class _Backbones(Mapping):
    """Method name -> its default backbones, read from :data:`REGISTRY` at each use."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return REGISTRY[name].backbones

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(REGISTRY))

    def __len__(self) -> int:
        return len(REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


METHODS = REGISTRY.keys()  # the names, in order: a live view, so a registered one shows
DEFAULT_BACKBONES: Mapping[str, tuple[str, ...]] = _Backbones()


def get(name: str) -> MethodRow:
    """The row of ``name``; ValueError naming the registered methods if there is none."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    return REGISTRY[name]


def register(row: MethodRow) -> MethodRow:
    """Add ``row`` to :data:`REGISTRY` (after the others); ValueError if its name is taken."""
    if row.name in REGISTRY:
        raise ValueError(f"method {row.name!r} is already registered ({REGISTRY[row.name].description}); "
                         f"unregister it first or choose another name")
    REGISTRY[row.name] = row
    return row


def unregister(name: str) -> MethodRow:
    """Take the method ``name`` out of :data:`REGISTRY` and return its row."""
    return REGISTRY.pop(get(name).name)


def with_teachers(kind: str) -> tuple[str, ...]:
    """The methods whose ``teachers`` is ``kind`` (the ``--teacher`` and ``--teachers`` flags' stages)."""
    return tuple(name for name, row in REGISTRY.items() if row.teachers == kind)
