"""Training configuration: dataclasses whose defaults are the papers' values (method.md §3-§9).

Precedence: dataclass defaults < an optional YAML file (``--config``) < ``--set section.key=value`` flags <
the dedicated CLI flags (``--epochs``, ``--seed``, ...). Unknown sections or keys are errors, and so is a value
outside its range (``RANGES``: every number finite, learning rates in (0, 1000], dropouts and shares in [0, 1),
sizes and counts at least 1, ...; the error names the key, the value and the range). The resolved
config is saved in every run folder and inside every checkpoint, and its canonical JSON enters the run key.

YAML layout (every key optional)::

    model: {k: 25, n_heads: 8, temporal: tam, ...}    # models.vad_model.ModelConfig (teacher, student)
    train: {epochs: 100, min_steps: 300, ...}          # TrainConfig (every stage)
    mil: {pairing: one-to-one, topk: 3}                # MILConfig (teacher)
    distill: {alpha: 7.5, tau: 10.0, delta: 0.9}       # DistillConfig (student)
    lanet: {d_model: 512, classifier_kernel: 9, ...}   # models.lanet.LANetConfig (lanet)
    ddl: {rank_weight: 0.1, align_weight: 0.1, ...}    # DDLConfig (lanet)
    lightning: {frames: 8, size: 64, ...}              # models.lightning_student.LightningConfig (lightning)
    adversarial: {adversarial_weight: 0.1, ...}        # AdversarialConfig (lightning)
    spatial: {cells: auto, k: 3, temporal: pooled, ...} # models.spatial.SpatialConfig (teacher, student, lanet;
                                                        #   lightning: cells and k, distilling maps)

The defaults are the papers' except for the choices measured on real footage (UCSD Ped1, README): input
standardisation, top-3 MIL, a floor of training steps, short videos kept unstretched, the validation fallback, and
the lightning student's normalisation, pooling and augmentation. ``--config paper`` (``presets/paper.yaml``) switches
them back.

Each stage reads only its own sections (its row's ``sections`` in ``pipeline.methods``): only those are saved and
enter the run key. Other stages' sections are still checked (unknown keys, types), so one YAML file can serve the
teacher and the student. The ``spatial`` section is saved and keyed, with the run's ``grid``, only when the run is
spatial (:attr:`RunConfig.spatial_active`: a method whose row is ``spatial``, ``spatial.cells = auto`` and features
of more than one cell; or :attr:`RunConfig.map_student`: the lightning student of spatial teachers), so a run on
global features keeps its key.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from extractors.registry import REGISTRY
from models import dynamics, losses
from models import lightning_student as lightning
from models.lanet import LANetConfig
from models.lightning_student import LightningConfig
from models.spatial import CELLS_OF_ALL_BACKBONES, CELLS_OF_VIDEO_BACKBONES, SpatialConfig
from models.vad_model import CONTRASTIVE_HIDDEN, CONTRASTIVE_OUT, ModelConfig
from pipeline import methods
# Defined with the command line's defaults (pipeline.defaults imports nothing heavy, for a fast --help).
from pipeline.defaults import CROP_MODES, PRECISIONS
from pipeline.errors import UserError
from pipeline.methods import LOWRES, METHODS as STAGES  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and data (method.md §2, §6)."""

    epochs: int = 100  # an epoch = one pass over the anomalous training videos
    # Training length floor in optimizer steps: a run trains max(epochs x batches per epoch, min_steps) steps, in
    # whole epochs. The paper's 100 epochs are 2,700 steps on UCF-Crime (27 batches of 30 anomalous videos), but one
    # step each on a set of a few dozen clips. MIN_STEPS is set from the learning curves on UCSD Ped1 (README).
    min_steps: int = 300
    batch_anomalous: int = 30
    batch_normal: int = 30
    lr_temporal: float = 1e-4  # the temporal module (attention + FFN)
    lr_other: float = 1e-3  # projections, classifier, contrastive heads
    weight_decay: float = 1e-3
    adagrad_eps: float = 1e-10  # torch's Adagrad default, named so that it is recorded
    n_segments: int = 32
    # A video shorter than n_segments snippets keeps its snippets as its segments (False) or is stretched to
    # n_segments by repeating them (True, method.md §2 read literally); measured on UCSD Ped1 in the README.
    stretch_short_videos: bool = False
    crops: str = "mean"
    val_fraction: float = 0.1  # stratified validation split carved from the training videos
    # Fallback for small sets: when the split would hold fewer than this many videos of either label, no split is
    # made, every video trains and the last step is kept (selection on 2 validation videos picks noise).
    min_val_videos: int = 5
    split_seed: int = 0  # the validation split: the same for every training seed, so seeds compare
    seed: int = 0
    precision: str = "auto"  # auto: fp32 on CPU (reproducible), bf16 on GPUs that have it, else fp16


@dataclass(frozen=True)
class MILConfig:
    """Sultani's ranking loss (method.md §3); the defaults are the loss functions' own (``models.losses``)."""

    pairing: str = losses.MIL_PAIRING
    smoothness: float = losses.MIL_SMOOTHNESS
    sparsity: float = losses.MIL_SPARSITY
    topk: int = losses.MIL_TOPK  # bag score = mean of the k highest segment scores (1: Sultani's max)


@dataclass(frozen=True)
class DistillConfig:
    """Bi-level distillation (method.md §5); the defaults are those of ``models.losses`` and ``models.vad_model``."""

    alpha: float = losses.DISTILL_ALPHA
    tau: float = losses.DISTILL_TAU
    delta: float = losses.TEACHER_DELTA  # teacher score threshold for anomalous segments (InfoNCE labels)
    smoothing_e: int = losses.MOVING_AVERAGE_E  # moving-average half window: window 2e + 1
    flat_eps: float = losses.FLAT_EPS  # below this max - min the smoothed scores are kept as they are
    head_hidden: int = CONTRASTIVE_HIDDEN
    head_dim: int = CONTRASTIVE_OUT
    bce_weight: float = losses.DISTILL_BCE_WEIGHT  # 0: Table 4's "w/o L_bce" (alpha = 0 is "w/o L_nce")
    min_max: bool = True  # False: Table 4's "w/o min-max normalisation" (smoothing_e = 0: "w/o moving average")


@dataclass(frozen=True)
class DDLConfig:
    """LA-Net's losses (method.md §8): top-k BCE plus the two Discriminative Dynamics Learning terms."""

    topk_divisor: int = dynamics.TOPK_DIVISOR  # top-k BCE over k = L // topk_divisor + 1 snippets
    k_dynamics: int = dynamics.DDL_TOPK  # the ranking loss compares the mean of the k largest |score dynamics|
    margin: float = dynamics.DDL_MARGIN
    rank_weight: float = dynamics.RANK_WEIGHT
    align_weight: float = dynamics.ALIGN_WEIGHT


@dataclass(frozen=True)
class AdversarialConfig:
    """The lightning student's distillation (method.md §9)."""

    regression: str = lightning.REGRESSION  # l2 | l1 distance to each teacher's snippet scores
    adversarial_weight: float = lightning.ADVERSARIAL_WEIGHT  # generator term, per teacher
    window: int = 32  # consecutive snippets per training sequence (what the discriminators see)
    # Adam for the student and the discriminators (the common choice for adversarial training; beta1 = 0.5 as
    # DCGAN's); the train section's Adagrad learning rates do not apply to this stage.
    lr: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.999
    # Training augmentation of the student's windows (pipeline.train.lightning_student.augment): horizontal flips,
    # and translations by up to `shift` pixels of the 64 x 64 frames (0: none).
    flip: bool = True
    shift: int = 8


@dataclass(frozen=True)
class RunConfig:
    stage: str
    backbones: tuple[str, ...]
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mil: MILConfig = field(default_factory=MILConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    lanet: LANetConfig = field(default_factory=LANetConfig)
    ddl: DDLConfig = field(default_factory=DDLConfig)
    lightning: LightningConfig = field(default_factory=LightningConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    spatial: SpatialConfig = field(default_factory=SpatialConfig)
    # (rows, cols) of the features the run trains on (pipeline.train.trainer.run_grid): (1, 1) for global features.
    # Not a section: set from the store's features, never by the user.
    grid: tuple[int, int] = (1, 1)

    @property
    def spatial_active(self) -> bool:
        """Whether the run is spatial MIL (``models.spatial``): its method reads cells, ``spatial.cells`` is
        ``auto`` and its grid has more than one cell."""
        return (methods.get(self.stage).spatial and self.spatial.cells == "auto"
                and self.grid[0] * self.grid[1] > 1)

    @property
    def cell_scored(self) -> tuple[bool, ...]:
        """Per backbone, whether the spatial cell scorer reads its cells (``spatial.cell_backbones``)."""
        chosen = self.spatial.cell_backbones
        if chosen == CELLS_OF_VIDEO_BACKBONES:
            video = tuple(b in REGISTRY and REGISTRY[b].kind == "video" for b in self.backbones)
            return video if any(video) else (True,) * len(self.backbones)
        if chosen == CELLS_OF_ALL_BACKBONES:
            return (True,) * len(self.backbones)
        names = self._cell_names()
        return tuple(b in names for b in self.backbones)

    @property
    def reads_cell_scorers(self) -> bool:
        """Whether ``spatial.cell_scorers`` decides the network: a pooled cell scorer of several backbones."""
        return self.spatial_active and self.spatial.temporal == "pooled" and sum(self.cell_scored) > 1

    def _cell_names(self) -> set[str]:
        return {n.strip() for n in self.spatial.cell_backbones.split(",") if n.strip()}

    @property
    def map_student(self) -> bool:
        """Whether the run distils its teachers' anomaly maps (the lightning student's map student, method.md §9):
        its method's row has ``maps``, ``spatial.cells`` is ``auto`` and its grid (its spatial teachers') has more
        than one cell."""
        return (methods.get(self.stage).maps and self.spatial.cells == "auto"
                and self.grid[0] * self.grid[1] > 1)

    def to_dict(self) -> dict:
        """The stage, its backbones and the stage's own sections (what a run saves and its key hashes); a spatial
        run or a map student adds its ``spatial`` section and its ``grid``. The fields of :data:`KEYED_WHERE_READ`
        are left out where the run does not read them, or where their value is the one runs saved before them had."""
        out = {"stage": self.stage, "backbones": list(self.backbones),
               **{name: dataclasses.asdict(getattr(self, name)) for name in methods.get(self.stage).sections}}
        if self.spatial_active or self.map_student:
            out.update(spatial=dataclasses.asdict(self.spatial), grid=list(self.grid))
        for conditional in KEYED_WHERE_READ:
            conditional.drop_unless_keyed(self, out)
        return out

    def validate(self) -> None:
        """Every field in its :data:`RANGES` range, then the checks that relate fields or name choices."""
        for section in RANGES:
            check_ranges(section, dataclasses.asdict(getattr(self, section)), f"config: {section}")
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {tuple(STAGES)}")
        method = methods.get(self.stage)
        frames = [name for name, row in methods.REGISTRY.items() if row.data == methods.FRAME_WINDOWS]
        checks = [
            (len(self.backbones) >= 1, "at least one backbone is needed"),
            (not method.single_backbone or len(self.backbones) == 1, f"the {self.stage} uses exactly one backbone"),
            (not method.fixed_backbones or self.backbones == method.backbones,
             f"the {self.stage} stage reads {','.join(method.backbones)} only (give no `backbones`)"),
            (method.data == methods.FRAME_WINDOWS or LOWRES not in self.backbones,
             f"{LOWRES} frames are the input of {', '.join(frames)}; give feature backbones"),
            (self.adversarial.regression in lightning.REGRESSIONS,
             f"adversarial.regression must be one of {lightning.REGRESSIONS}"),
            (0 <= self.adversarial.shift < self.lightning.size, "adversarial.shift must be in [0, lightning.size)"),
            (self.train.crops in CROP_MODES, f"train.crops must be one of {CROP_MODES}"),
            (self.mil.pairing in losses.MIL_PAIRINGS, f"mil.pairing must be one of {losses.MIL_PAIRINGS}"),
            (self.train.precision in PRECISIONS, f"train.precision must be one of {PRECISIONS}"),
            (self.spatial.cell_backbones in (CELLS_OF_VIDEO_BACKBONES, CELLS_OF_ALL_BACKBONES)
             or set() < self._cell_names() <= set(self.backbones),
             f"spatial.cell_backbones must be '{CELLS_OF_VIDEO_BACKBONES}', '{CELLS_OF_ALL_BACKBONES}' or names among "
             f"the run's backbones ({','.join(self.backbones)}), got {self.spatial.cell_backbones!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


class ConfigError(UserError):
    """A user mistake in a config file or flag; the message says what to change."""


@dataclass(frozen=True)
class Range:
    """The values a numeric config field may take: always finite (NaN and infinities are refused everywhere),
    from ``low`` to ``high``, each end included unless marked open. A tuple field's every item must lie in it."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self, integer: bool = False) -> str:
        """``a finite number in (0, inf)``, ``a finite number in [0, 1)``, ``an integer in [1, inf)``."""
        def end(v: float) -> str:
            if math.isinf(v):
                return "inf" if v > 0 else "-inf"
            return str(int(v)) if float(v).is_integer() else f"{v:g}"
        left = "(" if self.low_open or math.isinf(self.low) else "["
        right = ")" if self.high_open or math.isinf(self.high) else "]"
        return f"{'an integer' if integer else 'a finite number'} in {left}{end(self.low)}, {end(self.high)}{right}"


POSITIVE = Range(0.0, low_open=True)  # epsilons, temperatures
# Learning rates: > 0, and at most this. Far larger rates only diverge (the loop stops at the first non-finite
# loss); past float32's range (3.4e38) torch's optimisers fail outright instead of training.
MAX_LEARNING_RATE = 1e3
LEARNING_RATE = Range(0.0, MAX_LEARNING_RATE, low_open=True)
NON_NEGATIVE = Range(0.0)  # loss weights, decays, margins, step counts that may be 0
AT_LEAST_1 = Range(1)  # sizes and counts
FRACTION = Range(0.0, 1.0, high_open=True)  # dropouts, shares, Adam betas: [0, 1)
UNIT = Range(0.0, 1.0)  # thresholds on scores in [0, 1]
FINITE = Range()  # initial values that may have either sign
SEED = Range(0, 2**32 - 1)  # a 32-bit seed (numpy's generators refuse negative ones)

# Every numeric field of every section and the values it may take (bool and str fields are checked by their
# choices). `--set train.lr_temporal=nan` or `lr=-1` is refused with the key, the value and this range.
RANGES: dict[str, dict[str, Range]] = {
    "train": {"epochs": AT_LEAST_1, "min_steps": NON_NEGATIVE, "batch_anomalous": AT_LEAST_1,
              "batch_normal": AT_LEAST_1, "lr_temporal": LEARNING_RATE, "lr_other": LEARNING_RATE,
              "weight_decay": NON_NEGATIVE, "adagrad_eps": POSITIVE, "n_segments": AT_LEAST_1,
              "val_fraction": FRACTION, "min_val_videos": AT_LEAST_1, "split_seed": SEED, "seed": SEED},
    "mil": {"smoothness": NON_NEGATIVE, "sparsity": NON_NEGATIVE, "topk": AT_LEAST_1},
    # flat_eps divides (min-max normalisation's floor): 0 would turn a flat row into NaN
    "distill": {"alpha": NON_NEGATIVE, "tau": POSITIVE, "delta": UNIT, "smoothing_e": NON_NEGATIVE,
                "flat_eps": POSITIVE, "head_hidden": AT_LEAST_1, "head_dim": AT_LEAST_1, "bce_weight": NON_NEGATIVE},
    "ddl": {"topk_divisor": AT_LEAST_1, "k_dynamics": AT_LEAST_1, "margin": NON_NEGATIVE,
            "rank_weight": NON_NEGATIVE, "align_weight": NON_NEGATIVE},
    "adversarial": {"adversarial_weight": NON_NEGATIVE, "window": Range(2), "lr": LEARNING_RATE, "beta1": FRACTION,
                    "beta2": FRACTION, "shift": NON_NEGATIVE},
    "model": {"d_model": AT_LEAST_1, "projection_hidden": AT_LEAST_1, "n_heads": AT_LEAST_1, "k": AT_LEAST_1,
              "ffn_dim": AT_LEAST_1, "dropout": FRACTION, "attention_dropout": FRACTION, "layer_norm_eps": POSITIVE,
              "classifier_hidden": AT_LEAST_1, "classifier_bottleneck": AT_LEAST_1, "classifier_dropout": FRACTION,
              "conv_kernel": AT_LEAST_1, "backbone_dropout": FRACTION},
    "lanet": {"d_model": AT_LEAST_1, "n_heads": AT_LEAST_1, "ffn_dim": AT_LEAST_1, "dropout": FRACTION,
              "attention_dropout": FRACTION, "layer_norm_eps": POSITIVE, "locality_w_init": FINITE,
              "locality_b_init": FINITE, "classifier_hidden": AT_LEAST_1, "classifier_kernel": AT_LEAST_1,
              "classifier_dropout": FRACTION},
    "lightning": {"frames": AT_LEAST_1, "size": AT_LEAST_1, "channels": AT_LEAST_1, "stem_kernel": AT_LEAST_1,
                  "stem_stride": AT_LEAST_1, "head_hidden": AT_LEAST_1, "disc_channels": AT_LEAST_1,
                  "disc_kernel": AT_LEAST_1, "pool_fraction": Range(0.0, 1.0, low_open=True)},
    "spatial": {"k": AT_LEAST_1, "hidden": AT_LEAST_1, "reduce_dim": NON_NEGATIVE, "map_weight": NON_NEGATIVE,
                "dropout": FRACTION, "lr": LEARNING_RATE},
}


def check_ranges(section: str, values: dict, where: str) -> None:
    """Raise ConfigError for the first value of ``values`` (key -> typed value of ``section``) outside its
    :data:`RANGES` entry, naming ``where.key``, the value and the range."""
    for key, value in values.items():
        allowed = RANGES.get(section, {}).get(key)
        if allowed is None or isinstance(value, bool):
            continue
        items = value if isinstance(value, tuple) else (value,)
        if not all(isinstance(v, (int, float)) and v in allowed for v in items):
            shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in items)
            each = "each value " if isinstance(value, tuple) else ""
            raise ConfigError(f"{where}.{key}={shown}: out of range, {each}must be "
                              f"{allowed.describe(isinstance(items[0], int))}")


_SECTIONS = {"model": ModelConfig, "train": TrainConfig, "mil": MILConfig, "distill": DistillConfig,
             "lanet": LANetConfig, "ddl": DDLConfig, "lightning": LightningConfig, "adversarial": AdversarialConfig,
             "spatial": SpatialConfig}


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(value, kind: type, where: str):
    """A YAML or CLI value as the field's type ``kind`` (YAML 1.1 reads ``1e-4`` as a string: floats are parsed).
    ``tuple[int, ...]`` fields take a YAML list or a comma-separated string (``--set lightning.channels=8,16``)."""
    if typing.get_origin(kind) is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not items:
            raise ConfigError(f"{where}: expected a list of numbers, got {value!r}")
        return tuple(_coerce(item, typing.get_args(kind)[0], where) for item in items)
    try:
        if kind is bool and not isinstance(value, bool):
            text = str(value).strip().lower()
            if text not in _TRUE + _FALSE:
                raise ValueError
            return text in _TRUE
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}") from None


def _section(section: str, cls, values: dict, where: str):
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(names)}")
    hints = typing.get_type_hints(cls)  # every field is an int, float, bool, str or tuple of ints
    typed = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    check_ranges(section, typed, where)
    try:
        return dataclasses.replace(cls(), **typed)
    except ValueError as exc:  # a section's own checks (e.g. ModelConfig: d_model divisible by n_heads)
        raise ConfigError(f"{where}: {exc}") from None


def parse_assignments(items: list[str]) -> dict[str, dict]:
    """``["train.epochs=5", "model.k=10"]`` -> ``{"train": {"epochs": "5"}, "model": {"k": "10"}}``."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"`overrides` take SECTION.KEY=VALUE (sections: {', '.join(_SECTIONS)}), got {item!r}")
        out.setdefault(section, {})[name] = value.strip()
    return out


PRESETS = ("paper",)  # shipped configs (pipeline/presets/NAME.yaml): --config NAME


def load_yaml(path: str | Path) -> dict[str, dict]:
    """A config file, or a shipped preset by name (``paper``: the papers' recipe exactly)."""
    if str(path) in PRESETS and not Path(path).exists():
        path = resources.files("pipeline").joinpath("presets", f"{path}.yaml")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{path}: expected sections ({', '.join(_SECTIONS)}) each mapping keys to values")
    return data


def build_config(stage: str, backbones: tuple[str, ...] | None = None, *, layers: list[dict[str, dict]] = (),
                 where: str = "config") -> RunConfig:
    """The resolved config: defaults, then each layer of overrides in order (later wins)."""
    if stage not in STAGES:
        raise ConfigError(f"stage must be one of {tuple(STAGES)}, got {stage!r}")
    unknown = [name for name in methods.get(stage).sections if name not in _SECTIONS]
    if unknown:  # a method registered with a section this config does not have
        raise ConfigError(f"method {stage!r} reads unknown config section(s) {', '.join(unknown)}; known: "
                          f"{', '.join(_SECTIONS)}")
    merged: dict[str, dict] = {}
    for layer in layers:
        for section, values in layer.items():
            if section not in _SECTIONS:
                raise ConfigError(f"{where}: unknown section {section!r}; known: {', '.join(_SECTIONS)}")
            merged.setdefault(section, {}).update(values)
    sections = {name: _section(name, cls, merged.get(name, {}), f"{where}: {name}")
                for name, cls in _SECTIONS.items()}
    config = RunConfig(stage=stage, backbones=tuple(backbones or methods.get(stage).backbones), **sections)
    config.validate()
    return config


# Keys added after runs were first saved, with the value that reproduces such a run: a saved config without the
# key was trained (and is scored) the way it was then.
SAVED_BEFORE = {"model": {"input_norm": "none", "backbone_dropout": 0.0}, "lanet": {"input_norm": "none"},
                "mil": {"topk": 1}, "adversarial": {"flip": False, "shift": 0},
                "lightning": {"input_norm": False, "batch_norm": False, "pool": "avg"},
                "train": {"min_steps": 0, "stretch_short_videos": True, "min_val_videos": 1}}


@dataclasses.dataclass(frozen=True)
class KeyedWhereRead:
    """A field saved and keyed only where it decides the run (``reads``), so that adding it left the keys of the
    runs that do not read it unchanged. ``before``: the value that reproduces the runs saved before the field
    existed, for a field that some of those runs did read; such a value is not saved either, and a saved run that
    reads the field and lacks it loads with it. ``None``: every run that reads the field was saved with it."""

    section: str
    name: str
    reads: typing.Callable[["RunConfig"], bool]
    before: typing.Any = None

    def drop_unless_keyed(self, config: "RunConfig", saved: dict) -> None:
        """Remove the field from ``saved`` (``RunConfig.to_dict``'s dict) where it is not keyed."""
        if self.section not in saved:
            return
        if not self.reads(config) or (self.before is not None and saved[self.section][self.name] == self.before):
            del saved[self.section][self.name]

    def restore(self, config: "RunConfig", saved: dict) -> "RunConfig":
        """``config`` built from a saved dict: the field set to ``before`` where the run reads it and lacks it."""
        if self.before is None or not self.reads(config) or self.name in saved.get(self.section, {}):
            return config
        section = dataclasses.replace(getattr(config, self.section), **{self.name: self.before})
        return dataclasses.replace(config, **{self.section: section})


KEYED_WHERE_READ = (
    # Read by the lightning map student only: the score-sequence student's key stays what it was before the field.
    KeyedWhereRead("lightning", "map_scores", lambda c: c.map_student),
    # Read by a pooled cell scorer of several backbones; the first spatial runs were all "shared".
    KeyedWhereRead("spatial", "cell_scorers", lambda c: c.reads_cell_scorers, before="shared"),
    # spatial.map_weight is read by spatial students only, yet keyed for every spatial run: leaving it out of the
    # teachers' keys (one line here) would re-key every spatial teacher already trained.
)


def config_from_dict(data: dict) -> RunConfig:
    """Inverse of ``RunConfig.to_dict`` (checkpoints and run folders); keys a saved config lacks take their
    ``SAVED_BEFORE`` values, and the :data:`KEYED_WHERE_READ` fields their ``before`` values where the run reads
    them. A config without a ``grid`` is a global run's, ``(1, 1)``."""
    saved = {k: v for k, v in data.items() if k in _SECTIONS}
    layers = [{section: {k: v for k, v in values.items() if k not in saved.get(section, {})}
               for section, values in SAVED_BEFORE.items() if section in saved}, saved]
    config = build_config(data["stage"], tuple(data["backbones"]), layers=layers, where="saved config")
    grid = data.get("grid") or (1, 1)
    config = dataclasses.replace(config, grid=(int(grid[0]), int(grid[1])))
    for conditional in KEYED_WHERE_READ:
        config = conditional.restore(config, saved)
    return config
