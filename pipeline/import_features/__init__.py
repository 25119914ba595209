"""``dakd import``: the community's pre-extracted .npy feature lists into the store.

- :mod:`~pipeline.import_features.importer`: lists read, features checked and stored under an imported fingerprint.

The command line is :mod:`pipeline.cli.import_features`; this file imports nothing, so
``python -m pipeline.import_features --help`` answers without loading torch.
"""
