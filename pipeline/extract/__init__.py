"""Stage 1, ``dakd extract``: videos -> per-snippet backbone features in the store.

- :mod:`~pipeline.extract.extractor`: the local extractor (claiming, decoding, batching, writing) and the
  fingerprints of an extraction.
- :mod:`~pipeline.extract.ray_engine`: the same extractor in one worker per GPU of a Ray cluster (``--engine ray``).

The command line is :mod:`pipeline.cli.extract`; this file imports nothing, so ``python -m pipeline.extract --help``
answers without loading torch.
"""
