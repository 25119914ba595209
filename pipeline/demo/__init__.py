"""``dakd demo``: the main job on a small real default (synthetic world, real I3D weights).

- :mod:`~pipeline.demo.world`: the demo's synthetic world, its models' backbones and overrides.

The command line is :mod:`pipeline.cli.demo`; this file imports nothing, so ``python -m pipeline.demo --help``
answers without loading torch.
"""
