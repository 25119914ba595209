"""``python -m pipeline.demo``: ``dakd demo`` (:mod:`pipeline.cli.demo`)."""

import sys

from pipeline.cli.demo import main

sys.exit(main())
