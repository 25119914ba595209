"""``dakd grid``: baselines and ablations, a grid of variants trained and evaluated over seeds.

- :mod:`~pipeline.grid.runner`: the variants, one cell per variant and seed, the table.

The command line is :mod:`pipeline.cli.grid`; this file imports nothing, so ``python -m pipeline.grid --help``
answers without loading torch.
"""
