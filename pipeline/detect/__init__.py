"""``dakd detect``: new videos scored with a trained run or an ONNX export.

- :mod:`~pipeline.detect.detector`: videos -> per-frame scores, events and files (CSV, JSON, PNG).
- :mod:`~pipeline.detect.onnx_scorer`: an export folder read back in onnxruntime (no torch), and its file names.
- :mod:`~pipeline.detect.overlay`: the optional overlay video with the score drawn on the frames.
- :mod:`~pipeline.detect.maps`: a spatial run's anomaly maps: event boxes, heatmaps, the maps file and snapshots.

The command line is :mod:`pipeline.cli.detect`; this file imports nothing, so ``python -m pipeline.detect --help``
answers without loading torch.
"""
