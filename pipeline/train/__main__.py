"""``python -m pipeline.train``: ``dakd train`` (:mod:`pipeline.cli.train`)."""

import sys

from pipeline.cli.train import main

sys.exit(main())
