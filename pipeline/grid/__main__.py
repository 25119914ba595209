"""``python -m pipeline.grid``: ``dakd grid`` (:mod:`pipeline.cli.grid`)."""

import sys

from pipeline.cli.grid import main

sys.exit(main())
