"""The main job on a small real default: extract -> train the teacher -> distill the student -> evaluate.

    dakd demo [--out dakd-demo] [--device auto] [--quiet]      (the command line: pipeline.cli.demo)

Real weights that a package registry carries (DeepMind's Kinetics-400 I3D) on a small synthetic surveillance
dataset with known anomaly intervals (vehicles, fights, falls, crowds scattering, fire), written with real
encoders. The teacher is the Temporal Aggregation Module trained with MIL from video labels; the student is distilled
from it. Everything lands in ``<out>/store``; running it again is all cache hits. The paper's CLIP and S3D backbones
need weights from the network (open_clip and torchvision download them when online).
"""

from __future__ import annotations

from pathlib import Path

from data.synthetic import GENERATOR_VERSION, generate_dataset
from pipeline.defaults import DEMO_OUT

DEFAULT_OUT = DEMO_OUT
# The demo's models: the teacher and the student on DeepMind's I3D, whose weights a package registry carries. On
# the demo's world EfficientNet-Lite0 hurt: a teacher over i3d + effnet_lite0 scored 0.83 frame AUC against 0.90 on
# i3d alone, and an effnet_lite0 student 0.63 (its frame-label ceiling is 0.79: single images barely show a fall or
# a fight); 3 seeds, benchmarks/demo.py, README "The demo's numbers".
TEACHER_BACKBONES = "i3d"
STUDENT_BACKBONE = "i3d"
# The demo's world: 40 short videos (8 s) rather than 24 long ones, for the same frames to extract: MIL learns from
# bags, and 12 anomalous videos left one or two training videos per anomaly class (teacher 0.74 with them, 0.90
# with 40 videos). 3 cameras (every camera films normal and anomalous footage, as a site's cameras do), close enough
# that a person is a quarter of the frame high: on the generator's defaults (every video its own scene, people a
# tenth of the frame high) the teacher scored 0.69 and ranked falls below normal footage (benchmarks/demo.py).
SYNTHETIC_NORMAL = 20
SYNTHETIC_ANOMALOUS = 20
SYNTHETIC_SEED = 0
SYNTHETIC_FRAMES = 192  # per video, at 25 fps: 12 snippets
SYNTHETIC_SCENES = 3
SYNTHETIC_FIGURE_HEIGHT = 0.25
WORLD_FILE = "world.json"  # beside labels.csv: the world the videos were written with
# What a user should see, measured by benchmarks/demo.py (3 seeds; README "The demo's numbers").
EXPECTED = ("On this world both score about 0.9 frame AUC or more (benchmarks/demo.py, 3 seeds); real footage is "
            "harder (README, \"The demo's numbers\").")
# The paper's batches (30 + 30) would make one step per epoch on this small set; smaller batches give the
# optimiser enough steps in 100 epochs. Every other value is the project's default (pipeline.config).
DEMO_OVERRIDES = {"train.batch_anomalous": 4, "train.batch_normal": 4}


def write_world(folder: Path, *, figure_height: float = SYNTHETIC_FIGURE_HEIGHT, scenes: int = SYNTHETIC_SCENES,
                normal: int = SYNTHETIC_NORMAL, anomalous: int = SYNTHETIC_ANOMALOUS, frames: int = SYNTHETIC_FRAMES,
                seed: int = SYNTHETIC_SEED, progress: bool = False) -> Path:
    """The synthetic dataset under ``folder`` (written unless ``folder`` already holds this world, as its
    ``world.json`` says; a folder of another world is written anew). ``scenes`` 0: every video its own scene.
    Returns ``folder``."""
    import json
    import shutil

    world = {"figure_height": figure_height, "scenes": scenes, "normal": normal, "anomalous": anomalous,
             "frames": frames, "seed": seed, "generator": GENERATOR_VERSION}
    record = folder / WORLD_FILE
    if (folder / "labels.csv").is_file() and record.is_file() and json.loads(record.read_text()) == world:
        return folder
    if folder.exists():
        shutil.rmtree(folder)  # another world's videos: none of them may stay behind under the new labels
    generate_dataset(folder, n_normal=normal, n_anomalous=anomalous, seed=seed, n_frames=frames,
                     n_scenes=scenes or None, figure_height=figure_height, progress=progress)
    record.write_text(json.dumps(world, indent=1) + "\n")
    return folder
