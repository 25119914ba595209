"""``dakd calibrate``: the alert threshold of a target false-alarm rate on normal footage.

- :mod:`~pipeline.calibrate.calibrator`: normal footage scored as ``watch`` scores it, the threshold chosen.

The command line is :mod:`pipeline.cli.calibrate`; this file imports nothing, so ``python -m pipeline.calibrate --help``
answers without loading torch.
"""
