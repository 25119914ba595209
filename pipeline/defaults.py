"""Every default and choice list the command line shows, in a module that imports nothing but the standard
library and the method registry (``pipeline.methods``, itself torch-free), so that ``dakd --help`` and
``dakd STAGE --help`` start in well under a second (``pipeline.cli.parser``).

The stage modules import their defaults from here (one definition each; the watch modules' own defaults refer to
these). The backbone and view names are the registry's (``extractors.registry``, torch-free), the dataset names
the dataset registry's (``data.datasets.registry``): no copies.
"""

from __future__ import annotations

from pipeline.methods import DEFAULT_BACKBONES as METHOD_BACKBONES
from pipeline.methods import LOWRES, METHODS  # noqa: F401 (LOWRES: the lightning student's input, re-exported)

STORE_ENV = "DAKD_STORE"  # the environment variable whose value is --store's default, in every subcommand

# Exit codes, the same in every subcommand (README "Command line").
EXIT_OK = 0
EXIT_SOME_FAILED = 1  # some inputs of a batch failed (named on stderr); the rest went through
EXIT_USER_ERROR = 2  # a bad flag, config, store or file: one line "error: ..." on stderr, nothing done

# -- extract --------------------------------------------------------------------------------------------------
EXTRACT_BACKBONES = "i3d,s3d,clip"  # the paper's teacher backbones
EXTRACT_BATCH_SIZE = 8  # snippets per forward pass (across videos)
DEFAULT_CROPS = 1
# Frames per snippet that image backbones (clip, effnet_lite0) embed and average; 1 is the centre frame.
DEFAULT_FRAMES_PER_SNIPPET = 1
# Videos decoded at once when every backbone is decode-bound (lowres: no network, decoding is all the work): one
# per core up to this many. Otherwise one: on a CPU the models' own threads already use every core.
MAX_DECODE_WORKERS = 4
DTYPES = ("float32", "float16")
ENGINES = ("local", "ray")
DEFAULT_DEVICE = "auto"  # CUDA when present, else the CPU

# -- train ----------------------------------------------------------------------------------------------------
# The stages and their default backbones are the method registry's (pipeline.methods, torch-free), read at each
# use so that a method registered at run time is a choice too.
TRAIN_STAGES = METHODS
STAGE_BACKBONES = METHOD_BACKBONES
CROP_MODES = ("mean", "samples")  # average the crops (default) or make each crop its own training sample
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_SEEDS = 1
DEFAULT_CHECKPOINT_EVERY = 10  # epochs between resumable state saves (the last epoch is always saved) ...
CHECKPOINT_MIN_STEPS = 500  # ... and, by default, at least this many steps: a small set's epoch is one step

# -- evaluate -------------------------------------------------------------------------------------------------
SCORING_PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_SCORING_PRECISION = "fp32"  # the reference
# Test-time smoothing (method.md §7.3): a centred moving mean over this many snippets of a video's scores, reported
# beside the protocol's unsmoothed metrics as auc_smoothed / ap_smoothed (1: none). 3 = one snippet each side.
SMOOTHING_SNIPPETS = 3

# -- detect ---------------------------------------------------------------------------------------------------
DETECT_STAGE = "student"  # the model used when --model is not given: the store's most recent one
DETECT_OUT = "detections"
DETECT_BATCH_SIZE = 8  # snippets per backbone forward pass (eager, and the backbone graph with --onnx)
# detect's scores (its events, plots, CSV and JSON) and calibrate's offline threshold: each video's snippet scores
# smoothed by a centred moving mean over this many snippets (method.md §7.1, §7.3; 1: the model's own scores).
# Offline only: watch's live scores are causal and never smoothed.
DETECT_SMOOTHING_SNIPPETS = SMOOTHING_SNIPPETS
FALSE_ALARM_THRESHOLD = 0.5  # a normal-video frame with score >= this counts as a false alarm (and detect marks it)

# -- calibrate ------------------------------------------------------------------------------------------------
CALIBRATE_FALSE_ALARMS_PER_HOUR = 1.0  # the target: hysteresis events per hour of normal footage
CALIBRATE_SPLITS = ("val",)  # --split: the normal videos of the run's own validation split
CALIBRATE_BATCH_SIZE = DETECT_BATCH_SIZE  # snippets per backbone forward pass when --normal videos are extracted

# -- watch --------------------------------------------------------------------------------------------------
# The watch modules' defaults (clips, score_log, sources, watcher) refer to these.
WATCH_OUT = "watch"  # folder of events.jsonl, scores/, clips/, summary.json
WATCH_PRE_ROLL_S = 5.0  # seconds of frames before an event's start kept and written first
WATCH_POST_ROLL_S = 5.0  # seconds written after the event closed
WATCH_KEEP_DAYS = 30  # days of score files kept per camera (today's included)
WATCH_STALL_TIMEOUT_S = 10.0  # no packet for this long: the stream is lost, reconnect
WATCH_BATCH_SIZE = 16  # snippets of any cameras embedded in one forward pass: amortises the model
WATCH_QUEUE_SIZE = 64  # snippets waiting to be scored, all cameras; beyond it the oldest is dropped

# -- export ---------------------------------------------------------------------------------------------------
EXPORT_FOLDER = "export"  # an export's default folder below its run folder (the run's calibration updates it)
EXPORT_JSON = "export.json"  # in an export folder: the export's settings and its run's calibration
# Longest video (in snippets) an export accepts: above UCF-Crime's longest test video (6750 snippets).
DEFAULT_MAX_SNIPPETS = 8192

# -- grid -----------------------------------------------------------------------------------------------------
GRID_TABLES = ("methods", "table1", "table4", "table5")
GRID_SEEDS = 5  # as the paper reports

# -- demo -----------------------------------------------------------------------------------------------------
DEMO_OUT = "dakd-demo"
