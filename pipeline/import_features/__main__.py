"""``python -m pipeline.import_features``: ``dakd import`` (:mod:`pipeline.cli.import_features`)."""

import sys

from pipeline.cli.import_features import main

sys.exit(main())
