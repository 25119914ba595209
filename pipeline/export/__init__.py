"""``dakd export``: a single-backbone run as ONNX graphs + TorchScript.

- :mod:`~pipeline.export.exporter`: the graphs traced, checked against the eager model and written (the reader
  is :mod:`pipeline.detect.onnx_scorer`).

The command line is :mod:`pipeline.cli.export`; this file imports nothing, so ``python -m pipeline.export --help``
answers without loading torch.
"""
